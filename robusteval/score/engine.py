"""The score stage: models x sets → ``runs/<NAME>/records.jsonl`` + ``preds/*.npz``.

:func:`run_score` lists the sets (:mod:`robusteval.score.sets`, :mod:`robusteval.datasets`, :mod:`robusteval.corrupt.trees`), drops the cells a previous run
already finished, loads only the models that still have work, then makes one pass per set with
pending cells. In a pass every image is decoded once (:mod:`robusteval.score.loader`); each distinct
model view of the batch is made once on the device; every model runs on it; each cell collects
top-5 predictions on the device and is written (preds, then its record) when its pass ends.

Record timing: ``seconds`` is the wall-clock time of the cell's pass (decode, every model scored
together, metrics), ``img_per_s`` the images of the pass over it — end-to-end throughput.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from robusteval.devices import device_label, device_versions, resolve_device
from robusteval.errors import UserError
from robusteval.jsonl import writable_dir
from robusteval.runs import Record, RunStore, cell_id
from robusteval.score.execute import Context, execute
from robusteval.score.loader import iter_batches
from robusteval.score.plan import Cell, Pass, build_sets, default_workers, plan_streams
from robusteval.score.request import ScoreRequest, ScoreSummary, request_command
from robusteval.score.runner import AMP_MODES, ResidentModel, default_amp

__all__ = ["ScoreRequest", "ScoreSummary", "build_sets", "request_command", "run_score"]


def run_score(
    req: ScoreRequest,
    *,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
    on_message: Callable[[str], None] | None = None,
    on_cell: Callable[[Record], None] | None = None,
) -> ScoreSummary:
    """Score ``req.models`` on every requested set; resumable per cell. Returns what was written.

    ``on_total(n)`` is called once with the number of images the remaining passes decode;
    ``progress(n)`` with the images just finished; ``on_message(line)`` with one-line notes (skipped
    images, cells reused from an earlier run, CUDA OOM step-downs); ``on_cell(record)`` with each
    cell's record as soon as it is written.

    Launched by torchrun (``RANK``/``WORLD_SIZE`` set), every rank scores its shard of each pass
    and rank 0 writes (:mod:`robusteval.distributed`); the callbacks then run on rank 0 only and
    count its shard; the other ranks return an empty summary.
    """
    from robusteval.distributed import from_env, session

    if from_env() is None:
        return _run_score(
            req, progress=progress, on_total=on_total, on_message=on_message, on_cell=on_cell, world=None
        )
    with session(resolve_device(req.device)) as (world, device):
        # the command recorded is the one typed, not the per-rank device
        req = dataclasses.replace(req, device=device, command=req.command or request_command(req))
        if not world.root:
            progress = on_total = on_message = on_cell = None
        return _run_score(
            req, progress=progress, on_total=on_total, on_message=on_message, on_cell=on_cell, world=world
        )


def _run_score(req: ScoreRequest, *, progress, on_total, on_message, on_cell, world) -> ScoreSummary:
    import torch

    from robusteval.distributed import broadcast_from_root, root_only, shard

    t0 = time.perf_counter()
    notify = on_message or (lambda msg: None)
    store = RunStore(req.runs_dir, req.run)  # a bad run name or --runs-dir fails before anything loads
    writable_dir(req.runs_dir, option="--runs-dir")
    if not req.models:
        raise UserError("no models given", hint="pass --models NAME (see `robusteval list models`)")
    if len(set(req.models)) != len(req.models):
        raise UserError(f"--models lists a model twice: {', '.join(req.models)}")
    if req.batch_size < 1:
        raise UserError("--batch-size must be at least 1")
    unknown = sorted(set(req.weights) - set(req.models))
    if unknown:
        raise UserError(f"--weights names {unknown[0]!r}, which is not in --models")
    from robusteval.models import resolve
    from robusteval.models.factory import check_weights

    # Typos fail now, not after the sets are read and decoding has started.
    for name in req.models:
        resolve(name)
        check_weights(req.weights.get(name, "default"))
    device = resolve_device(req.device)
    amp = req.amp or default_amp(device)
    if amp not in AMP_MODES:
        raise UserError(f"--amp {amp!r}: expected one of {', '.join(AMP_MODES)}")
    sets = build_sets(req, notify=notify)
    summary = ScoreSummary(run_dir=store.dir)
    with root_only(store.lock, world=world, what="locking the run"):
        finished = broadcast_from_root(store.finished() if world is None or world.root else None, "planning")
        passes, planned = [], set()
        stale: list[str] = []
        matched: set[str] = set()  # finished cells reused in this call
        for s in sets:
            cells = []
            identity = s.identity()
            for model in req.models:
                for head in s.heads:
                    cid = cell_id(
                        model=model, set_name=s.name, severity=s.severity, label_space=head.label_space
                    )
                    old = finished.get(cid)
                    # a cell id met again in a later set (a tree set also asked for on the fly) goes
                    # with its first set
                    if old is not None and (old.get("data_sha256") == identity or cid in matched):
                        summary.reused += 1
                        matched.add(cid)
                    elif cid not in planned:  # e.g. a tree set also asked for on the fly: score it once
                        if old is not None:
                            stale.append(f"{cid} (n={old.get('n')} then, {len(s.items)} images now)")
                        planned.add(cid)
                        cells.append(Cell(model, head, cid))
            if cells:
                passes.append(Pass(s, cells))
        if summary.reused:
            notify(f"{summary.reused} cells already finished in run {req.run!r}; skipping them")
        if stale:
            notify(
                f"{len(stale)} finished cell(s) measured other images (different --data, --sets, sample "
                f"or seed); re-scoring them: {', '.join(stale[:3])}{' ...' if len(stale) > 3 else ''}"
            )
        if not passes:
            summary.seconds = time.perf_counter() - t0
            return summary
        needed = [m for m in req.models if any(c.model == m for p in passes for c in p.cells)]
        workers = req.workers if req.workers is not None else default_workers()
        streams, jobs = plan_streams(
            passes, req=req, device=device, workers=workers, shard=lambda n: shard(n, world)
        )
        # decoding starts now, while the models load
        batches = iter_batches(streams, jobs, device=device, workers=workers)
        try:
            with torch.inference_mode():
                models = _load_models(req, needed, device=device, amp=amp, notify=notify)
                if on_total:
                    on_total(sum(len(shard(len(p.set.items), world)) for p in passes))
                ctx = Context(
                    req=req, store=store, device=device, amp=amp, models=models, notify=notify,
                    progress=progress or (lambda n: None), summary=summary, versions=device_versions(device),
                    device_label=device_label(device), on_cell=on_cell or (lambda rec: None),
                    identity={id(p.set): p.set.identity() for p in passes}, world=world,
                )  # fmt: skip
                execute(passes, batches, ctx)
        except RuntimeError as err:  # torch's SIGCHLD handler raises this anywhere once a worker dies
            if "DataLoader worker" not in str(err):
                raise
            raise UserError(
                f"a decode worker died ({str(err).splitlines()[0].strip()}); "
                f"the {len(summary.written)} cells finished in this call are kept",
                hint="re-run the same command to resume",
            ) from None
        finally:
            batches.close()  # stops the decode workers now, not at garbage collection
    summary.seconds = time.perf_counter() - t0
    return summary


def _load_models(
    req: ScoreRequest, names: list[str], *, device: str, amp: str, notify
) -> dict[str, ResidentModel]:
    from robusteval.models.factory import create_model

    out = {}
    for name in names:
        loaded = create_model(
            name,
            weights=req.weights.get(name, "default"),
            scan_backend=req.scan_backend,
            trust_checkpoint=req.trust_checkpoint,
            device=device,
            templates=req.templates,
        )
        if loaded.card.num_classes != 1000:
            raise UserError(f"{name} has {loaded.card.num_classes} classes; scoring needs ImageNet-1k logits")
        out[name] = ResidentModel(
            loaded, device=device, amp=amp, channels_last=req.channels_last, compile=req.compile,
            batch_size=req.batch_size, notify=notify,
        )  # fmt: skip
    return out
