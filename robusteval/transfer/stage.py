"""``run_transfer``: models x datasets x methods x shots x seeds → ``runs/<NAME>/transfer.jsonl``.

One record line per finished (model, dataset, method, shots, seed) cell, appended with
:func:`robusteval.jsonl.append_records` (one write + fsync: a SIGKILL loses no finished cell); a
rerun skips the cells already in the file. The run is held with ``RunStore(...).lock()``.
Gradient methods (``ilm-vp``, ``finetune``, ``freeze``) build VMamba models with the differentiable
torch reference scan (``scan_backend="torch"``); LP builds them with ``auto`` (inference only).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from robusteval.errors import UserError
from robusteval.jsonl import append_records
from robusteval.runs import RunStore
from robusteval.transfer.datasets import get_dataset, open_dataset
from robusteval.transfer.job import MethodJob
from robusteval.transfer.protocol import METHODS, get_card
from robusteval.transfer.records import FILE, TransferRecord, load_transfer_records, transfer_cell

# the trainer modules register the methods on import
_TRAINERS = ("robusteval.transfer.lp", "robusteval.transfer.vp", "robusteval.transfer.finetune")


@dataclass(frozen=True)
class TransferRequest:
    """What to run. ``shots``: images per class, ``None`` = the full training split. ``epochs``:
    override every card's epochs (None: each card's). ``weights``: model → weights spec (default
    ``"default"``). ``workers``: DataLoader processes (None: 0 on CPU, 8 on CUDA). ``feature_batch``:
    images per batch of the no-gradient passes (features, mappings, evaluation)."""

    models: list[str]
    datasets: list[str]
    methods: list[str]
    shots: list[int | None]
    seeds: list[int]
    run: str
    runs_dir: Path = Path("runs")
    root: Path | None = None
    download: bool = False
    verify: bool = True
    epochs: int | None = None
    device: str | None = None
    amp: bool = True
    workers: int | None = None
    feature_batch: int = 256
    weights: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TransferSummary:
    written: list[TransferRecord]
    reused: int
    seconds: float
    run_dir: Path


def _check(req: TransferRequest) -> None:
    import importlib

    for mod in _TRAINERS:
        importlib.import_module(mod)
    for m in req.methods:
        METHODS.get(m)
    for d in req.datasets:
        get_dataset(d)
    if not req.models or not req.datasets or not req.methods or not req.shots or not req.seeds:
        raise UserError("transfer needs at least one model, dataset, method, shots value and seed")
    if req.epochs is not None and req.epochs < 1:
        raise UserError(f"--epochs {req.epochs}: must be at least 1")
    from robusteval.models import resolve

    for m in req.models:
        resolve(m)


def _scan_backend_of(model: str, asked: str) -> str | None:
    from robusteval.models import resolve

    return asked if "scan_backend" in inspect.signature(resolve(model).fn).parameters else None


def run_transfer(
    req: TransferRequest,
    *,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
    on_message: Callable[[str], None] | None = None,
) -> TransferSummary:
    """Run every unfinished cell of ``req``; ``progress(n)`` after n cells, ``on_total(cells)`` once."""
    from robusteval.devices import device_label, resolve_device

    _check(req)
    device = resolve_device(req.device)
    workers = req.workers if req.workers is not None else (8 if device.startswith("cuda") else 0)
    store = RunStore(req.runs_dir, req.run)
    t0 = time.perf_counter()
    written: list[TransferRecord] = []
    with store.lock():
        path = store.dir / FILE
        done = {r.cell for r in load_transfer_records(store.dir)}
        grid = [(k, s) for k in req.shots for s in req.seeds]
        plan = []
        for dname in req.datasets:
            for model in req.models:
                for method in req.methods:
                    todo = [
                        (k, s) for k, s in grid
                        if transfer_cell(model=model, dataset=dname, method=method, shots=k, seed=s) not in done
                    ]  # fmt: skip
                    plan.append((dname, model, method, todo))
        total = sum(len(t) for *_, t in plan)
        reused = len(plan) * len(grid) - total
        if on_total is not None:
            on_total(total)
        opened = {}
        for dname, model, method, todo in plan:
            if not todo:
                continue
            if dname not in opened:
                opened[dname] = open_dataset(dname, root=req.root, download=req.download, verify=req.verify)
            card = get_card(method)
            asked = "auto" if card.trains == "head" else "torch"

            def emit(recs: list[TransferRecord]) -> None:
                append_records(path, [r.to_dict() for r in recs])
                written.extend(recs)

            job = MethodJob(
                run=req.run, model=model, weights=req.weights.get(model, "default"), card=card,
                splits=opened[dname], cells=todo, epochs=req.epochs or card.epochs, device=device,
                device_label=device_label(device), amp=req.amp and card.amp, workers=workers,
                feature_batch=req.feature_batch, cache_dir=store.dir / "features",
                build=_builder(model, req.weights.get(model, "default"), device),
                emit=emit, scan_backend=_scan_backend_of(model, asked), progress=progress,
            )  # fmt: skip
            if on_message is not None:
                on_message(f"{model} on {dname}: {method}, {len(todo)} cells")
            METHODS.get(method)(job)
    return TransferSummary(
        written=written, reused=reused, seconds=time.perf_counter() - t0, run_dir=store.dir
    )


def _builder(model: str, weights: str, device: str) -> Callable[[str], object]:
    def build(scan_backend: str):
        from robusteval.models.factory import create_model

        return create_model(model, weights=weights, scan_backend=scan_backend, device=device)

    return build
