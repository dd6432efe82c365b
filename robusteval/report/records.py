"""Reading a run: score records (runs/<NAME>/records.jsonl), their per-image predictions, set facts.

A run directory holds ``records.jsonl`` (one JSON object per scored cell, append-only; a resumed
cell may appear twice and the last line wins) and ``preds/<cell>.npz``. Set facts that records do
not carry (level labels, the study's severity) come from the set specs when they are installed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from robusteval.errors import UserError

SCHEMA = 1
#: Suites in the order the report presents them; unknown suites follow alphabetically.
SUITE_ORDER = ("clean", "study21", "imagenet-c", "frequency", "ood-parametric", "ood", "modelvshuman16")
#: Suites whose sets are transformations of the clean images, laddered by severity.
CORRUPTION_SUITES = ("study21", "imagenet-c")
#: Suites plotted as accuracy-vs-level curves (model-vs-human style).
CURVE_SUITES = ("frequency", "ood-parametric")
#: Suites of out-of-distribution datasets, scored beside a clean baseline on the same label space.
OOD_SUITES = ("ood", "modelvshuman16")
MAIN_LABEL_SPACE = "imagenet1k"


@dataclass(frozen=True)
class SetInfo:
    """What the report needs to know about a set beyond its records.

    ``values`` maps severity → the level's ``value`` (σ, contrast, noise width...) for parametric
    sets; ``study_level`` is the severity the seed study used, when known.
    """

    suite: str
    level_label: str = "severity"
    study_level: int | None = None
    values: Mapping[int, Any] = field(default_factory=dict)


def spec_info() -> dict[str, SetInfo]:
    """Set facts from the installed set specs (``robusteval.corrupt.spec.load_specs``)."""
    from robusteval.corrupt.spec import load_specs

    out: dict[str, SetInfo] = {}
    for name, spec in load_specs().items():
        values = {i + 1: lvl["value"] for i, lvl in enumerate(spec.levels) if "value" in lvl}
        out[name] = SetInfo(
            suite=spec.suite, level_label=spec.level_label, study_level=spec.study_level, values=values
        )
    return out


@dataclass(frozen=True)
class Preds:
    """Per-image predictions of one cell: ``ids`` str [n], ``labels`` int64 [n] (-1 unknown),
    ``top5`` int [n, 5] class indices, ``top5_prob`` float64 [n, 5] softmax probabilities."""

    ids: np.ndarray
    labels: np.ndarray
    top5: np.ndarray
    top5_prob: np.ndarray


@dataclass
class Run:
    """One run's records (deduplicated, sorted), model kinds and set facts."""

    name: str
    dir: Path
    records: list[dict[str, Any]]
    kinds: dict[str, str]
    sets: dict[str, SetInfo]

    @property
    def models(self) -> list[str]:
        return sorted({r["model"] for r in self.records})

    def set_info(self, name: str, suite: str) -> SetInfo:
        return self.sets.get(name) or SetInfo(suite=suite)

    def preds(self, record: Mapping[str, Any]) -> Preds | None:
        """The cell's per-image predictions, or ``None`` when its npz is missing or unreadable.

        Read on each call, not cached: a full study run holds hundreds of 15,000-image cells.
        """
        rel = record.get("preds")
        return _read_preds(self.dir / str(rel)) if rel else None


def _read_preds(path: Path) -> Preds | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            return Preds(
                ids=np.asarray(z["ids"]).astype(str),
                labels=np.asarray(z["labels"], dtype=np.int64),
                top5=np.asarray(z["top5"], dtype=np.int64),
                top5_prob=np.asarray(z["top5_prob"], dtype=np.float64),
            )
    except (OSError, KeyError, ValueError):
        return None


def suite_rank(suite: str) -> tuple[int, str]:
    return (SUITE_ORDER.index(suite), "") if suite in SUITE_ORDER else (len(SUITE_ORDER), suite)


def is_clean(record: Mapping[str, Any]) -> bool:
    """A clean-images cell: the main clean val or a clean baseline on a subset's label space."""
    name = str(record.get("set", ""))
    return record.get("suite") == "clean" or name == "clean" or name.startswith("clean@")


def num(value: Any) -> float:
    """A record's number as float; ``None`` / missing / non-numeric become ``nan``."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _cell_key(record: Mapping[str, Any]) -> str:
    if record.get("cell"):
        return str(record["cell"])
    parts = (record.get(k) for k in ("model", "set", "severity", "label_space", "subset"))
    return "|".join("" if p is None else str(p) for p in parts)


def _sort_key(record: Mapping[str, Any]) -> tuple:
    sev = record.get("severity")
    return (
        suite_rank(str(record.get("suite"))),
        str(record["set"]),
        -1 if sev is None else int(sev),
        str(record.get("label_space") or ""),
        str(record.get("subset") or ""),
        str(record["model"]),
    )


def parse_records(lines: Iterable[str], *, source: str) -> list[dict[str, Any]]:
    """Records from JSONL text: the last line of each cell wins; sorted by suite, set, severity, model.

    A final line without a newline that does not parse (a write cut short) is ignored; any other
    unreadable line (garbage, binary, NUL padding) is skipped with one :class:`DataWarning`.
    """
    lines = list(lines)
    by_cell: dict[str, dict[str, Any]] = {}
    garbage: list[int] = []
    for i, line in enumerate(lines, 1):
        text = line.strip("\x00 \t\r\n")  # NUL padding a crash can leave around a record
        if not text:
            if line.strip(" \t\r\n"):  # a line of only NULs
                garbage.append(i)
            continue
        line = text
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            if i != len(lines) or lines[i - 1].endswith("\n"):  # a torn last line is expected
                garbage.append(i)
            continue
        if not isinstance(rec, dict) or "model" not in rec or "set" not in rec:
            raise UserError(f"{source}:{i} is not a score record (needs model and set)")
        if rec.get("schema", SCHEMA) != SCHEMA:
            raise UserError(
                f"{source}:{i} has record schema {rec.get('schema')!r}; this robusteval reads schema {SCHEMA}",
                hint="upgrade robusteval or re-score the run",
            )
        rec.setdefault("suite", "clean" if is_clean(rec) else "other")
        by_cell[_cell_key(rec)] = rec
    if garbage:
        import warnings

        from robusteval.errors import DataWarning

        warnings.warn(
            f"{source}: skipped {len(garbage)} line(s) that are not JSON records (line {garbage[0]})",
            DataWarning,
            stacklevel=2,
        )
    return sorted(by_cell.values(), key=_sort_key)


def _registry_kind(model: str) -> str | None:
    """The model card's kind when the name is registered (model modules are imported lazily)."""
    try:
        from robusteval.models import resolve

        card = resolve(model).meta.get("card")
    except (UserError, ImportError):
        return None
    return getattr(card, "kind", None)


def model_kinds(records: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Model → ``"classifier"`` or ``"clip"``: a record's ``model_kind``, else the model card's."""
    kinds: dict[str, str] = {}
    for rec in records:
        if rec.get("model_kind"):
            kinds.setdefault(rec["model"], str(rec["model_kind"]))
    for rec in records:
        if rec["model"] not in kinds:
            kinds[rec["model"]] = _registry_kind(rec["model"]) or "classifier"
    return kinds


def load_run(*, run_dir: Path, sets: Mapping[str, SetInfo] | None = None) -> Run:
    """Read ``run_dir/records.jsonl``; ``sets`` defaults to the installed set specs."""
    path = run_dir / "records.jsonl"
    if not path.is_file():
        raise UserError(
            f"no records at {path}",
            hint="score first: `robusteval score --run NAME ...`, or pass --runs-dir",
        )
    # bytes a crash or a bad disk left (binary, NUL runs) decode to replacement characters and
    # are skipped as garbage lines, never a UnicodeDecodeError
    text = path.read_bytes().decode("utf-8", errors="replace")
    records = parse_records(text.splitlines(keepends=True), source=str(path))
    if not records:
        raise UserError(
            f"{path} holds no score records", hint="score first: `robusteval score --run NAME ...`"
        )
    return Run(
        name=run_dir.name,
        dir=run_dir,
        records=records,
        kinds=model_kinds(records),
        sets=dict(spec_info() if sets is None else sets),
    )
