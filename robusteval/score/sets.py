"""The score stage's own sets: clean val corrupted on the fly, and ``NAME=VALUE`` option pairs.

Clean val, trees and OOD sets are read by :mod:`robusteval.datasets.items`,
:mod:`robusteval.corrupt.trees` and :mod:`robusteval.datasets.ood`.
"""

from __future__ import annotations

from robusteval.datasets.items import Head, OnTheFly, ScoreSet
from robusteval.errors import UserError


def onthefly_sets(
    clean: ScoreSet, *, transforms: list[str], severities: list[int] | None, seed: int, impl: str
) -> list[ScoreSet]:
    """One set per (transformation, severity) corrupting the clean items while scoring."""
    from robusteval.corrupt.spec import resolve_sets
    from robusteval.score.onthefly import resolve_impl

    out = []
    for spec, sevs in resolve_sets(transforms=transforms, suite=None, severities=severities):
        chosen = resolve_impl(spec.op, impl)
        for sev in sevs:
            out.append(ScoreSet(
                name=spec.name, suite=spec.suite, items=list(clean.items), source_space=clean.source_space,
                heads=[Head(clean.source_space)], mode="resize", severity=sev, params=spec.params(sev),
                spec_hash=spec.spec_hash(sev), onthefly=OnTheFly(spec.name, sev, seed, chosen),
            ))  # fmt: skip
    return out


def parse_pairs(values: list[str] | None, *, option: str, example: str) -> list[tuple[str, str]]:
    """``NAME=VALUE`` strings → pairs, with a one-line error (showing ``example``) on anything else."""
    out = []
    for v in values or []:
        name, sep, rest = v.partition("=")
        if not sep or not name or not rest:
            raise UserError(f"{option} {v!r}: expected NAME=VALUE", hint=f"e.g. {option} {example}")
        out.append((name.strip(), rest.strip()))
    return out
