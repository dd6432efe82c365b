"""Export registry, the run as writers see it, and the one library call (``export_run``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from robusteval.errors import UserError
from robusteval.jsonl import read_records
from robusteval.registry import Registry
from robusteval.runs import RECORDS, Preds

EXPORTS: Registry = Registry("export format", list_command="robusteval export --help")
MAIN_LABEL_SPACE = "imagenet1k"


def register_export(name: str, *, description: str, files: str):
    """Decorator: ``fn(*, run: ExportRun, out: Path) -> list[Path]`` writes format ``name``.

    ``description``: one line for ``--help``; ``files``: the paths it writes, relative to ``--out``.
    """
    return EXPORTS.register(name, description=description, files=files)


@dataclass
class ExportRun:
    """A run's final records (one per cell, file order of first appearance) and their predictions."""

    name: str
    dir: Path
    records: list[dict[str, Any]]

    def preds(self, record: dict[str, Any]) -> Preds | None:
        """The cell's per-image predictions (``robusteval.runs.Preds``), ``None`` when not saved."""
        rel = record.get("preds")
        path = self.dir / str(rel) if rel else None
        if path is None or not path.is_file():
            return None
        try:
            return Preds.load(path)
        except (OSError, KeyError, ValueError):
            return None

    @cached_property
    def models(self) -> list[str]:
        return sorted({str(r["model"]) for r in self.records})

    def is_clean(self, record: dict[str, Any]) -> bool:
        name = str(record.get("set", ""))
        return record.get("suite") == "clean" or name == "clean" or name.startswith("clean@")

    def label_space(self, record: dict[str, Any]) -> str:
        return str(record.get("label_space") or MAIN_LABEL_SPACE)


def load_export_run(run_dir: Path) -> ExportRun:
    path = run_dir / RECORDS
    if not path.is_file():
        raise UserError(
            f"no records at {path}", hint="score first: `robusteval score --run NAME ...`, or pass --runs-dir"
        )
    by_cell: dict[str, dict[str, Any]] = {}
    for rec in read_records(path):
        if isinstance(rec, dict) and "model" in rec and "set" in rec:
            key = str(
                rec.get("cell")
                or json.dumps([rec.get(k) for k in ("model", "set", "severity", "label_space", "subset")])
            )
            by_cell.pop(key, None)
            by_cell[key] = rec
    if not by_cell:
        raise UserError(
            f"{path} holds no score records", hint="score first: `robusteval score --run NAME ...`"
        )
    return ExportRun(name=run_dir.name, dir=run_dir, records=list(by_cell.values()))


def export_run(*, run_dir: Path, fmt: str, out_dir: Path) -> list[Path]:
    """Write run ``run_dir`` in format ``fmt`` (an :data:`EXPORTS` name) under ``out_dir``; returns the
    files written. A run with nothing the format can express is a :class:`UserError`."""
    import robusteval.export.formats  # noqa: F401  (registers the writers)

    entry = EXPORTS.get(fmt)
    run = load_export_run(run_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = entry.fn(run=run, out=out_dir)
    if not written:
        raise UserError(
            f"run {run.name} has no cells that the {fmt} format can express", hint=entry.meta["files"]
        )
    return written


def balanced_accuracy(preds: Preds) -> float:
    """Mean per-class recall of top-1 over the classes present among known labels (sklearn's
    ``balanced_accuracy_score``, CLIP_benchmark's ``mean_per_class_recall``); fraction."""
    known = preds.labels >= 0
    labels, top1 = preds.labels[known], np.asarray(preds.top5)[known, 0]
    classes = np.unique(labels)
    if classes.size == 0:
        return float("nan")
    return float(np.mean([np.mean(top1[labels == c] == c) for c in classes]))
