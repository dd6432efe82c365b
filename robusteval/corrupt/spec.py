"""Set specs as data: which op, which parameters at each severity, which suite.

The TOML files in the top-level ``transforms/`` folder (installed as ``robusteval/spec``) hold one
table per set::

    [perspective]
    op = "perspective"            # name in robusteval.corrupt.reference.OPS
    suite = "study21"             # suites group sets for `--suite`
    study_level = 3               # severity the seed study used, if known
    description = "..."
    levels = [ {scale = [0.0, 0.02]}, ... ]   # one param table per severity (1-based)

A set with one level (fliplr, invert, grayscale) is single-level: it has severity 1 only.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from robusteval.errors import UnknownName, UserError

_SPEC_PACKAGE = "robusteval.corrupt.specs"

#: Every corrupted image starts as this crop of the clean image: short side resized to
#: ``BASE_RESIZE`` (PIL bilinear), centre crop ``BASE_CROP`` x ``BASE_CROP`` (pixels).
BASE_RESIZE, BASE_CROP = 256, 224


@dataclass(frozen=True)
class SetSpec:
    """One transformation set: ``levels[s-1]`` are the op's params at severity ``s``."""

    name: str
    op: str
    suite: str
    levels: tuple[dict[str, Any], ...]
    study_level: int | None = None
    description: str = ""
    level_label: str = "severity"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def severities(self) -> list[int]:
        return list(range(1, len(self.levels) + 1))

    @property
    def single_level(self) -> bool:
        return len(self.levels) == 1

    def params(self, severity: int) -> dict[str, Any]:
        if not 1 <= severity <= len(self.levels):
            raise UnknownName(
                f"{self.name} has severities {self.severities[0]}..{self.severities[-1]}, not {severity}"
            )
        return dict(self.levels[severity - 1])

    def spec_hash(self, severity: int) -> str:
        """Hash of (op, params, variant): changes whenever what the severity means changes.

        ``variant`` is the op's registered ``variant`` (a string, or a callable for what depends on
        installed data): what else decides the bytes, e.g. frost's photographs vs procedural
        textures, or the parametric ops' uint8 truncation. Ops without one, and frost's
        procedural fallback (its ``legacy_variant``), hash (op, params) as before.
        """
        from robusteval.corrupt.reference import OPS, load_ops

        load_ops()
        payload: dict[str, Any] = {"op": self.op, "params": self.params(severity)}
        variant = OPS.get(self.op).meta.get("variant") if self.op in OPS else None
        variant = variant() if callable(variant) else variant
        if variant and variant != OPS.get(self.op).meta.get("legacy_variant"):
            payload["variant"] = variant
        blob = json.dumps(payload, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def apply(self, image: np.ndarray, *, severity: int, seed: int) -> np.ndarray:
        """Run the op at ``severity`` on uint8 HWC ``image`` with integer ``seed``."""
        from robusteval.corrupt.reference import OPS, load_ops

        load_ops()
        out = OPS.get(self.op).fn(image, seed=seed, **self.params(severity))
        if out.dtype != np.uint8 or out.shape != image.shape:
            raise RuntimeError(f"op {self.op} returned {out.dtype} {out.shape} for {image.shape}")
        return out


def base_crop(image: np.ndarray) -> np.ndarray:
    """uint8 HWC RGB image of any size → the 224x224 crop every transformation is applied to."""
    from robusteval.datasets.decode import resize_center_crop

    return resize_center_crop(image, resize=BASE_RESIZE, crop=BASE_CROP)


@dataclass(frozen=True)
class Corruption:
    """One set at one severity under one run seed, resolved once.

    The tree writer (:mod:`robusteval.corrupt.stage`), the decode workers and the batched device
    path all take this value, so they agree on the op, its parameters, the spec hash and the
    per-image seed ``derive_seed(seed, set, severity, image id)``.
    """

    spec: SetSpec
    severity: int
    seed: int = 0

    @property
    def set_name(self) -> str:
        return self.spec.name

    @property
    def params(self) -> dict[str, Any]:
        return self.spec.params(self.severity)

    @property
    def spec_hash(self) -> str:
        return self.spec.spec_hash(self.severity)

    def image_seed(self, image_id: str) -> int:
        """The 32-bit seed of one output (stable across processes and worker counts)."""
        from robusteval.seeding import derive_seed

        return derive_seed(self.seed, self.spec.name, self.severity, image_id)

    def apply(self, crop: np.ndarray, *, image_id: str) -> np.ndarray:
        """The reference op on a uint8 HWC :func:`base_crop` → uint8 HWC of the same shape."""
        return self.spec.apply(crop, severity=self.severity, seed=self.image_seed(image_id))


def corruption(set_name: str, *, severity: int, seed: int = 0) -> Corruption:
    """:class:`Corruption` of a registered set (one-line error for unknown names or levels)."""
    spec = get_spec(set_name)
    spec.params(severity)  # checks the level
    return Corruption(spec, severity, seed)


def _spec_root() -> Any:
    try:
        return resources.files(_SPEC_PACKAGE)
    except ModuleNotFoundError:  # a source checkout on sys.path, not installed: read transforms/ itself
        return Path(__file__).resolve().parents[2] / "transforms"


def _spec_files() -> list[Any]:
    root = _spec_root()
    return sorted((p for p in root.iterdir() if p.name.endswith(".toml")), key=lambda p: p.name)


@cache
def load_specs() -> dict[str, SetSpec]:
    """All set specs from every ``transforms/*.toml``, by set name."""
    specs: dict[str, SetSpec] = {}
    for path in _spec_files():
        for name, table in tomllib.loads(path.read_text()).items():
            if name in specs:
                raise ValueError(f"set {name!r} defined twice ({path.name})")
            known = {"op", "suite", "levels", "study_level", "description", "level_label"}
            specs[name] = SetSpec(
                name=name,
                op=table.get("op", name),
                suite=table["suite"],
                levels=tuple(table["levels"]),
                study_level=table.get("study_level"),
                description=table.get("description", ""),
                level_label=table.get("level_label", "severity"),
                extra={k: v for k, v in table.items() if k not in known},
            )
    return specs


def get_spec(name: str) -> SetSpec:
    specs = load_specs()
    if name not in specs:
        import difflib

        close = difflib.get_close_matches(name, list(specs), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownName(
            f"unknown transform {name!r}{hint} Type `robusteval list transforms` to see them all."
        )
    return specs[name]


def suites() -> dict[str, list[str]]:
    """Suite name → its set names, in file order."""
    out: dict[str, list[str]] = {}
    for spec in load_specs().values():
        out.setdefault(spec.suite, []).append(spec.name)
    return out


def suite_sets(suite: str) -> list[SetSpec]:
    table = suites()
    if suite not in table:
        raise UnknownName(
            f"unknown suite {suite!r}; known: {', '.join(table)}. Type `robusteval list suites`."
        )
    return [load_specs()[n] for n in table[suite]]


def spec_dir() -> Path:
    """Folder of the spec TOML files (for provenance in manifests)."""
    return Path(str(_spec_root()))


def resolve_sets(
    *, transforms: list[str] | None, suite: str | list[str] | None, severities: list[int] | None
) -> list[tuple[SetSpec, list[int]]]:
    """Which (set, severities) to produce. Single-level sets always give their one level.

    ``suite``: one suite name or several (every set of each).
    """
    suites_ = [suite] if isinstance(suite, str) else list(suite or [])
    if not transforms and not suites_:
        raise UserError(
            "nothing to do", hint="pass --transform NAME or --suite NAME (see `robusteval list transforms`)"
        )
    specs = [get_spec(t) for t in transforms or []]
    for name in suites_:
        specs += [s for s in suite_sets(name) if s.name not in {x.name for x in specs}]
    out = []
    for spec in specs:
        if spec.single_level:
            levels = [1]
        elif severities:
            bad = [s for s in severities if s not in spec.severities]
            if bad:
                raise UserError(
                    f"{spec.name} has {spec.level_label} levels {spec.severities[0]}..{spec.severities[-1]}, not {bad[0]}",
                    hint=f"use --severity between 1 and {spec.severities[-1]}",
                )
            levels = list(severities)
        else:
            levels = spec.severities
        out.append((spec, levels))
    return out
