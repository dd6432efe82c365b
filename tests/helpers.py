"""Helpers shared by several test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path
from typing import Any

from robusteval.runs import Record


def val_rows(val1300: Path) -> list[dict]:
    """The rows of val1300's labels.csv (path, class_index, wnid)."""
    with (val1300 / "labels.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def val_subset(val1300: Path, dst: Path, rows: list[dict]) -> Path:
    """A labels.csv val folder at ``dst`` holding copies of ``rows``' images."""
    (dst / "images").mkdir(parents=True, exist_ok=True)
    with (dst / "labels.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "class_index", "wnid"])
        for r in rows:
            shutil.copy(val1300 / r["path"], dst / r["path"])
            w.writerow([r["path"], r["class_index"], r["wnid"]])
    return dst


def make_record(**fields: Any) -> Record:
    """A score :class:`~robusteval.runs.Record` with plausible defaults for the required fields."""
    base: dict[str, Any] = {
        "run": "r", "cell": "c1", "model": "m", "set": "clean", "suite": "clean", "severity": None,
        "label_space": "imagenet1k", "n": 3, "top1": 0.5, "top5": 0.9, "ece": 0.1,
        "preds": f"preds/{fields.get('cell', 'c1')}.npz",
    }  # fmt: skip
    base.update(fields)
    return Record(**base)


def need_weights(name: str = "mobilenet_v2") -> None:
    """Skip the test when the real weights of ``name`` are not installed."""
    import pytest

    from robusteval.errors import UserError
    from robusteval.models.factory import create_model

    try:
        create_model(name)
    except UserError as err:
        pytest.skip(f"{name} weights absent: {err}")
