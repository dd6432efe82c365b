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

from robusteval.errors import UserError
from robusteval.runs import Preds, Record
from robusteval.suites import all_suites, suite_rank, suites_of

#: Suite kinds, from the suite table (robusteval/assets/suites.toml): the report's sections follow them.
SUITE_ORDER = tuple(all_suites())
#: Suites whose sets are transformations of the clean images, laddered by severity.
CORRUPTION_SUITES = suites_of("corruption")
#: Suites plotted as accuracy-vs-level curves (model-vs-human style).
CURVE_SUITES = suites_of("curve")
#: Suites of out-of-distribution datasets, scored beside a clean baseline on the same label space.
OOD_SUITES = suites_of("ood")
#: Suites scored for OOD detection (AUROC/AUPR against the clean val), not for accuracy.
DETECTION_SUITES = suites_of("detection")
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
        return Preds.read(self.dir / str(rel)) if rel else None


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
        rec = Record.from_json(rec, where=f"{source}:{i}").to_json()
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


def model_kinds(records: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Model → ``"classifier"`` or ``"clip"``, as the score engine recorded it (first record wins)."""
    kinds: dict[str, str] = {}
    for rec in records:
        kinds.setdefault(str(rec["model"]), str(rec.get("model_kind") or "classifier"))
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
