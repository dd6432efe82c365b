"""Suite semantics as data (``assets/suites.toml``): each suite's title, kind and report order."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources


@dataclass(frozen=True)
class Suite:
    """``kind``: clean, corruption, released-corruption, curve, ood or detection (see the TOML)."""

    name: str
    title: str
    kind: str
    order: int


@cache
def all_suites() -> dict[str, Suite]:
    """Suite name → :class:`Suite`, in report order (file order)."""
    text = resources.files("robusteval").joinpath("assets/suites.toml").read_text(encoding="utf-8")
    table = tomllib.loads(text)
    return {
        name: Suite(name, str(t["title"]), str(t["kind"]), i) for i, (name, t) in enumerate(table.items())
    }


def suites_of(kind: str) -> tuple[str, ...]:
    """Names of the suites of one kind, in report order."""
    return tuple(s.name for s in all_suites().values() if s.kind == kind)


def suite_title(name: str) -> str:
    """How the report names a suite (``suite NAME`` for one the table does not know)."""
    known = all_suites().get(name)
    return known.title if known else f"suite {name}"


def suite_rank(name: str) -> tuple[int, str]:
    """Sort key: known suites in report order, then unknown ones alphabetically."""
    known = all_suites().get(name)
    return (known.order, "") if known else (len(all_suites()), name)
