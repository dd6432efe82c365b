"""What a transfer method's trainer receives (:class:`MethodJob`) and how it builds its records."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robusteval.transfer.datasets import Splits
from robusteval.transfer.protocol import ProtocolCard
from robusteval.transfer.records import TransferRecord, transfer_cell


@dataclass(frozen=True)
class MethodJob:
    """All unfinished cells of one (model, dataset, method).

    ``cells``: ``(shots, seed)`` pairs (shots ``None`` = full). ``build(scan_backend)`` returns the
    model (a ``LoadedModel``, freshly built: trainers that change weights own it). ``emit`` appends
    finished records to the run (call it as soon as a cell is done). ``epochs``: the card's unless
    overridden. ``cache_dir``: a folder of the run for reusable intermediates (LP features).
    """

    run: str
    model: str
    weights: str
    card: ProtocolCard
    splits: Splits
    cells: list[tuple[int | None, int]]
    epochs: int
    device: str
    device_label: str
    amp: bool
    workers: int
    feature_batch: int
    cache_dir: Path
    build: Callable[[str], Any]
    emit: Callable[[list[TransferRecord]], None]
    scan_backend: str | None
    progress: Callable[[int], None] | None = None

    @property
    def amp_label(self) -> str:
        return "bf16" if self.amp and self.device.startswith("cuda") else "off"

    def record(
        self,
        *,
        shots: int | None,
        seed: int,
        n_train: int,
        top1: list[float],
        ece: list[float],
        seconds: float,
        params_m: float,
        weights_source: str,
        top1_init: float | None = None,
        feature_seconds: float = 0.0,
        frozen_fraction: float | None = None,
    ) -> TransferRecord:
        """The record of one finished cell of this job."""
        return TransferRecord(
            run=self.run,
            cell=transfer_cell(
                model=self.model, dataset=self.splits.name, method=self.card.method, shots=shots, seed=seed
            ),
            model=self.model,
            dataset=self.splits.name,
            method=self.card.method,
            shots=shots,
            seed=seed,
            epochs=self.epochs,
            batch_size=self.card.batch_size(shots),
            top1=[float(v) for v in top1],
            ece=[float(v) for v in ece],
            final_top1=float(top1[-1]) if top1 else float("nan"),
            final_ece=float(ece[-1]) if ece else float("nan"),
            top1_init=None if top1_init is None else float(top1_init),
            seconds=float(seconds),
            feature_seconds=float(feature_seconds),
            n_train=int(n_train),
            n_test=int(self.splits.test_labels.size),
            n_classes=len(self.splits.classes),
            scan_backend=self.scan_backend,
            card=self.card.digest(),
            params_m=float(params_m),
            weights=weights_source,
            device=self.device_label,
            amp=self.amp_label,
            frozen_fraction=frozen_fraction,
            created=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        )


def param_count_m(module: Any) -> float:
    """Parameters of ``module`` in millions."""
    return sum(p.numel() for p in module.parameters()) / 1e6
