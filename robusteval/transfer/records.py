"""The transfer record: one JSON line per finished (model, dataset, method, shots, seed) cell."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robusteval.jsonl import read_records

SCHEMA = 1
FILE = "transfer.jsonl"


def shots_label(shots: int | None) -> str:
    """``"1"``, ``"10"``, ... or ``"full"`` (``None``)."""
    return "full" if shots is None else str(shots)


def parse_shots(value: str) -> int | None:
    """``"full"`` → None, ``"10"`` → 10 (a positive int)."""
    if value == "full":
        return None
    n = int(value)
    if n < 1:
        raise ValueError(value)
    return n


def transfer_cell(*, model: str, dataset: str, method: str, shots: int | None, seed: int) -> str:
    """Stable, file-name-safe id of a cell."""
    raw = f"{model}__{dataset}__{method}__k{shots_label(shots)}__seed{seed}"
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", raw)
    if safe != raw:  # keep ids unique when sanitising merged two names
        safe += "_" + hashlib.sha256(raw.encode()).hexdigest()[:8]
    return safe


@dataclass(frozen=True)
class TransferRecord:
    """One finished cell.

    ``shots``: images per class (``None`` = full training split). ``top1``/``ece``: test top-1
    accuracy and 15-bin ECE in [0, 1] at every epoch end (``top1[-1]`` is the final one).
    ``top1_init``: test top-1 before any training (ILM-VP: the un-prompted, mapped baseline; else
    None). ``seconds``: wall seconds of this cell's training and evaluation (LP: its share of the
    batched grid); ``feature_seconds``: LP's one feature pass (0 when read from the cache).
    ``n_train``/``n_test``: images. ``scan_backend``: VMamba selective-scan backend asked for
    (None for models without one). ``card``: the protocol card's digest; ``params_m``: model size,
    millions of parameters. ``frozen_fraction``: freeze: share of parameters frozen after warm-up.
    """

    run: str
    cell: str
    model: str
    dataset: str
    method: str
    shots: int | None
    seed: int
    epochs: int
    batch_size: int
    top1: list[float]
    ece: list[float]
    final_top1: float
    final_ece: float
    top1_init: float | None
    seconds: float
    feature_seconds: float
    n_train: int
    n_test: int
    n_classes: int
    scan_backend: str | None
    card: str
    params_m: float
    weights: str
    device: str
    amp: str
    frozen_fraction: float | None
    created: str
    schema: int = SCHEMA

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TransferRecord:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def load_transfer_records(run_dir: Path) -> list[TransferRecord]:
    """Every complete record of ``run_dir/transfer.jsonl`` (the last of a cell wins), in file order."""
    last: dict[str, TransferRecord] = {}
    for d in read_records(Path(run_dir) / FILE):
        try:
            rec = TransferRecord.from_dict(d)
        except TypeError:
            continue
        last[rec.cell] = rec
    return list(last.values())
