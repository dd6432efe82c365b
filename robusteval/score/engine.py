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

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from robusteval.datasets.items import Head, ScoreSet
from robusteval.devices import device_label, device_versions, host_to_device, resolve_device
from robusteval.errors import UserError
from robusteval.jsonl import writable_dir
from robusteval.runs import SCHEMA, Preds, RunStore, cell_id
from robusteval.score.loader import iter_batches
from robusteval.score.runner import AMP_MODES, ResidentModel, default_amp

ECE_BINS = 15


@dataclass
class ScoreRequest:
    """Everything ``robusteval score`` was asked to do (units: images, seconds, GiB)."""

    models: list[str]
    run: str
    runs_dir: Path = Path("runs")
    sets_dir: Path | None = None
    data: Path | None = None
    labels: Path | None = None
    ood: list[tuple[str, str]] = field(default_factory=list)
    transforms: list[str] = field(default_factory=list)
    severities: list[int] | None = None
    transform_impl: str = "auto"
    seed: int = 0
    batch_size: int = 64
    amp: str | None = None  # None: bf16 on CUDA, off on CPU
    channels_last: bool = False
    compile: bool = False
    device: str | None = None  # None: cuda when available
    scan_backend: str = "auto"
    weights: dict[str, str] = field(default_factory=dict)
    trust_checkpoint: bool = False
    templates: str | None = None  # CLIP zero-shot prompts: openai80, clip-mamba7 or a file
    workers: int | None = None  # None: all cores but one (at most 16)
    # JPEGs on CUDA: True nvJPEG, False PIL in the workers, None (auto) nvJPEG only with fewer than
    # NVJPEG_BELOW_WORKERS decode workers (see _use_nvjpeg)
    gpu_decode: bool | None = None
    cache_gib: float | None = None  # on-the-fly: keep clean crops on the device up to this size


@dataclass
class ScoreSummary:
    run_dir: Path
    written: list[dict[str, Any]] = field(default_factory=list)
    reused: int = 0  # cells already finished by an earlier run
    images: int = 0  # images decoded in this call
    skipped_images: int = 0
    seconds: float = 0.0


# --- metrics -----------------------------------------------------------------------------------


def expected_calibration_error(
    confidence: np.ndarray, correct: np.ndarray, *, n_bins: int = ECE_BINS
) -> float:
    """ECE with ``n_bins`` equal-width confidence bins ``(lo, hi]`` (Guo et al. 2017), in [0, 1]."""
    conf = np.asarray(confidence, dtype=np.float64)
    hit = np.asarray(correct, dtype=np.float64)
    if conf.size == 0:
        return math.nan
    idx = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    gap = np.bincount(idx, weights=hit, minlength=n_bins) - np.bincount(idx, weights=conf, minlength=n_bins)
    return float(np.abs(gap).sum() / conf.size)


def cell_metrics(preds: Preds, *, num_classes: int) -> dict[str, float | None]:
    """top-1, top-5 (None for spaces of <= 5 classes) and ECE over images with known labels."""
    known = preds.labels >= 0
    if not known.any():
        return {"top1": None, "top5": None, "ece": None}
    labels = preds.labels[known]
    top5 = preds.top5[known].astype(np.int64)
    hit1 = top5[:, 0] == labels
    hit5 = (top5 == labels[:, None]).any(axis=1)
    conf = preds.top5_prob[known, 0].astype(np.float64)
    return {
        "top1": float(hit1.mean()),
        "top5": float(hit5.mean()) if num_classes > 5 else None,
        "ece": expected_calibration_error(conf, hit1),
    }


# --- listing the work --------------------------------------------------------------------------


def build_sets(req: ScoreRequest, *, notify: Callable[[str], None]) -> list[ScoreSet]:
    """Every set the request names, in scoring order: clean, trees, OOD, on the fly."""
    from robusteval.corrupt.trees import tree_sets
    from robusteval.datasets.items import clean_set
    from robusteval.datasets.ood import ood_sets as read_ood
    from robusteval.score.sets import onthefly_sets

    ood_sets: list[ScoreSet] = []
    clean_heads: list[str] = []
    for name, root in req.ood:
        found, heads = read_ood(name, Path(root))
        ood_sets += found
        clean_heads += [h for h in heads if h not in clean_heads]
    out: list[ScoreSet] = []
    clean = None
    if req.data is not None:
        clean = clean_set(req.data, labels=req.labels, extra_heads=clean_heads)
        out.append(clean)
    elif clean_heads:
        notify(f"pass --data VAL_DIR to also score the clean val on {', '.join(clean_heads)}")
    if req.sets_dir is not None:
        out += tree_sets(req.sets_dir)
    out += ood_sets
    if req.transforms:
        if clean is None:
            raise UserError(
                "--transforms corrupts clean images on the fly and needs them", hint="add --data VAL_DIR"
            )
        out += onthefly_sets(
            clean,
            transforms=req.transforms,
            severities=req.severities,
            seed=req.seed,
            impl=req.transform_impl,
        )
    if not out:
        raise UserError("nothing to score", hint="pass --sets SETS_DIR, --data VAL_DIR and/or --ood NAME=DIR")
    return out


@dataclass
class _Cell:
    model: str
    head: Head
    id: str


@dataclass
class _Pass:
    """One decode pass over a set: ``cells`` are the pending (model, head) pairs."""

    set: ScoreSet
    cells: list[_Cell]
    stream: int | None = None  # index into the streams when the pass is decoded
    jobs: range = range(0)
    fill_cache: bool = False  # on-the-fly: keep the clean crops this pass decodes
    from_cache: bool = False


# --- the run -----------------------------------------------------------------------------------


def run_score(
    req: ScoreRequest,
    *,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
    on_message: Callable[[str], None] | None = None,
    on_cell: Callable[[dict[str, Any]], None] | None = None,
) -> ScoreSummary:
    """Score ``req.models`` on every requested set; resumable per cell. Returns what was written.

    ``on_total(n)`` is called once with the number of images the remaining passes decode;
    ``progress(n)`` with the images just finished; ``on_message(line)`` with one-line notes (skipped
    images, cells reused from an earlier run, CUDA OOM step-downs); ``on_cell(record)`` with each
    cell's record as soon as it is written.
    """
    t0 = time.perf_counter()
    notify = on_message or (lambda msg: None)
    store = RunStore(req.runs_dir, req.run)  # a bad run name or --runs-dir fails before anything loads
    writable_dir(req.runs_dir, option="--runs-dir")
    import torch

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
    with store.lock():
        finished = store.finished()
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
                        cells.append(_Cell(model, head, cid))
            if cells:
                passes.append(_Pass(s, cells))
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
        workers = req.workers if req.workers is not None else _default_workers()
        streams, jobs = _plan_streams(passes, req=req, device=device, workers=workers)
        # decoding starts now, while the models load
        batches = iter_batches(streams, jobs, device=device, workers=workers)
        try:
            with torch.inference_mode():
                models = _load_models(req, needed, device=device, amp=amp, notify=notify)
                if on_total:
                    on_total(sum(len(p.set.items) for p in passes))
                ctx = _Context(
                    req=req, store=store, device=device, amp=amp, models=models, notify=notify,
                    progress=progress or (lambda n: None), summary=summary, versions=device_versions(device),
                    device_label=device_label(device), on_cell=on_cell or (lambda rec: None),
                    identity={id(p.set): p.set.identity() for p in passes},
                )  # fmt: skip
                _execute(passes, batches, ctx)
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


def _default_workers() -> int:
    from robusteval.cpus import usable_cpus

    return max(1, min(16, usable_cpus() - 1))


def _cache_budget(req: ScoreRequest, device: str) -> int:
    import torch

    if req.cache_gib is not None:
        return int(req.cache_gib * 2**30)
    if device.startswith("cuda"):
        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return int(min(8 * 2**30, 0.3 * free))
    return 2 * 2**30


#: ``gpu_decode=None`` picks nvJPEG only below this many decode workers. torchvision's CUDA decode
#: returns only once the GPU has drained all queued work (measured on an H100: a 128-image decode
#: call waited 429 ms behind queued matmuls, whichever stream either ran on), so it serialises with
#: the models; PIL in enough worker processes overlaps decoding with the forward passes (H100,
#: 4 models, 15 workers: 96% of the forward ceiling with PIL workers vs 58% with nvJPEG).
NVJPEG_BELOW_WORKERS = 4


def _use_nvjpeg(req: ScoreRequest, *, device: str, workers: int) -> bool:
    if not device.startswith("cuda"):
        return False
    if req.gpu_decode is None:
        return workers < NVJPEG_BELOW_WORKERS
    return req.gpu_decode


def _plan_streams(passes: list[_Pass], *, req: ScoreRequest, device: str, workers: int) -> tuple[list, list]:
    """Give each decoded pass its stream and jobs; on-the-fly torch passes share one clean cache."""
    from robusteval.score.loader import Stream, plan_jobs
    from robusteval.score.onthefly import CropAndCorrupt

    streams: list[Stream] = []
    jobs: list = []
    gpu_jpeg = _use_nvjpeg(req, device=device, workers=workers)
    cache_ok = False
    for p in passes:
        s = p.set
        paths = tuple(it.path for it in s.items)
        ids = tuple(it.id for it in s.items)
        fly = s.onthefly
        if fly is not None and fly.impl == "torch":
            if cache_ok:
                p.from_cache = True
                continue
            nbytes = len(s.items) * 3 * 224 * 224
            p.fill_cache = cache_ok = nbytes <= _cache_budget(req, device)
            stream = Stream(paths, prepare=CropAndCorrupt(ids))
        elif fly is not None:
            stream = Stream(paths, prepare=CropAndCorrupt(ids, fly.set_name, fly.severity, fly.seed))
        else:
            stream = Stream(paths, gpu_jpeg=gpu_jpeg and s.mode == "eval")
        p.stream = len(streams)
        streams.append(stream)
        start = len(jobs)
        jobs += plan_jobs(len(s.items), stream=p.stream, batch_size=req.batch_size)
        p.jobs = range(start, len(jobs))
    return streams, jobs


@dataclass
class _Context:
    req: ScoreRequest
    store: RunStore
    device: str
    amp: str
    models: dict[str, ResidentModel]
    notify: Callable[[str], None]
    progress: Callable[[int], None]
    summary: ScoreSummary
    versions: dict[str, str]
    device_label: str
    on_cell: Callable[[dict], None] = lambda rec: None
    identity: dict = field(default_factory=dict)  # id(set) → ScoreSet.identity()
    warned: set = field(default_factory=set)
    cache: list = field(default_factory=list)  # [(positions, uint8 NCHW, skips)] clean 224 crops


def _execute(passes: list[_Pass], batches: Iterator, ctx: _Context) -> None:
    for p in passes:
        for skip in p.set.skips:
            _warn(ctx, skip["path"], skip["reason"])
        if p.from_cache:
            _run_pass(p, _cached(ctx), ctx)
        else:
            _run_pass(p, _take(batches, len(p.jobs)), ctx)


def _take(it: Iterator, n: int) -> Iterator:
    for _ in range(n):
        yield next(it)


def _cached(ctx: _Context) -> Iterator:
    from robusteval.score.loader import DeviceBatch

    for positions, images, skips in ctx.cache:
        yield DeviceBatch(-1, positions, images, list(skips))


def _warn(ctx: _Context, path: str, reason: str) -> None:
    if path not in ctx.warned:
        ctx.warned.add(path)
        ctx.notify(f"skip {path}: {reason}")


@dataclass
class _Acc:
    """Per-cell results collected on the device until the pass ends."""

    positions: list = field(default_factory=list)
    top5: list = field(default_factory=list)
    prob: list = field(default_factory=list)


def _run_pass(p: _Pass, batches: Iterator, ctx: _Context) -> None:

    from robusteval.corrupt.batched import apply_batch_op
    from robusteval.datasets.labelspace import get_label_space
    from robusteval.score.preprocess import apply_view
    from robusteval.seeding import image_seeds

    s = p.set
    t0 = time.perf_counter()
    models = {c.model: ctx.models[c.model] for c in p.cells}
    for m in models.values():
        m.reset_batch_stats()
    members = {c.head: s.head_members(c.head) for c in p.cells}
    accs = {c.id: _Acc() for c in p.cells}
    skips: list[tuple[int, str]] = []
    decoders: set[str] = set()
    n_images = 0
    fly = s.onthefly
    for batch in batches:
        skips += batch.skips
        for pos, reason in batch.skips:
            _warn(ctx, s.items[pos].path, reason)
        if p.fill_cache:
            ctx.cache.append((batch.positions, batch.images, list(batch.skips)))
        if len(batch):
            decoders.add(batch.decoder)
            images = batch.images
            if fly is not None and fly.impl == "torch":
                ids = [s.items[i].id for i in batch.positions]
                seeds = image_seeds(seed=fly.seed, set_name=fly.set_name, severity=fly.severity, ids=ids)
                images = apply_batch_op(images, set_name=fly.set_name, severity=fly.severity, seeds=seeds)
            views: dict = {}
            # which rows each head keeps, decided on the host (a device boolean mask would sync)
            rows = {}
            for head, mask in members.items():
                kept = mask[batch.positions]
                rows[head] = (
                    None if kept.all() else host_to_device(np.flatnonzero(kept), ctx.device),
                    batch.positions[kept],
                )
            for name, model in models.items():
                view = model.views[s.mode]
                if view not in views:
                    views[view] = apply_view(images, view)
                logits = model.logits(views[view])
                for c in (c for c in p.cells if c.model == name):
                    index, positions = rows[c.head]
                    probs = get_label_space(c.head.label_space).probs(
                        logits if index is None else logits.index_select(0, index)
                    )
                    top = probs.topk(min(5, probs.shape[1]), dim=1)
                    acc = accs[c.id]
                    acc.positions.append(positions)
                    acc.top5.append(top.indices)
                    acc.prob.append(top.values)
        n_images += len(batch) + len(batch.skips)
        ctx.progress(len(batch) + len(batch.skips))
    seconds = time.perf_counter() - t0
    ctx.summary.images += n_images
    ctx.summary.skipped_images += len(skips)
    for c in p.cells:
        _write_cell(c, p, accs[c.id], skips=skips, members=members[c.head], decoders=decoders, seconds=seconds,
                    n_images=n_images, ctx=ctx)  # fmt: skip


def _gather(acc: _Acc, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import torch

    if not acc.positions:
        return np.zeros(0, np.int64), np.zeros((0, 5), np.int16), np.zeros((0, 5), np.float16)
    pos = np.concatenate(acc.positions).astype(np.int64)
    top = torch.cat(acc.top5).cpu().numpy().astype(np.int16)
    prob = torch.cat(acc.prob).float().cpu().numpy().astype(np.float16)
    if k < 5:  # fewer than 5 classes: pad with -1 / 0
        top = np.pad(top, ((0, 0), (0, 5 - k)), constant_values=-1)
        prob = np.pad(prob, ((0, 0), (0, 5 - k)))
    return pos, top, prob


def _preprocess_text(p: _Pass, model: ResidentModel, decoders: set[str]) -> str:
    view = model.views[p.set.mode].describe()
    fly = p.set.onthefly
    decode = "+".join(sorted(decoders)) or "pil"
    if fly is None:
        return f"decode {decode}; {view}; normalize by data_config mean/std"
    how = "batched torch op on the device" if fly.impl == "torch" else "imgaug per image in decode workers"
    return (
        f"on the fly: decode {decode}, resize 256 (PIL bilinear) + center crop 224, {fly.set_name} "
        f"severity {fly.severity} ({how}, seed {fly.seed}); {view}; normalize by data_config mean/std"
    )


def _write_cell(c: _Cell, p: _Pass, acc: _Acc, *, skips, members, decoders, seconds, n_images, ctx) -> None:
    from robusteval.datasets.labelspace import get_label_space

    s = p.set
    model = ctx.models[c.model]
    space = get_label_space(c.head.label_space)
    pos, top5, prob = _gather(acc, min(5, space.num_classes))
    labels = s.head_labels(c.head)[pos] if len(pos) else np.zeros(0, np.int64)
    ids = np.asarray([s.items[i].id for i in pos], dtype=str)
    preds = Preds(ids=ids, labels=labels, top5=top5, top5_prob=prob)
    metrics = cell_metrics(preds, num_classes=space.num_classes)
    head_skips = [{"path": s.items[i].path, "reason": r} for i, r in sorted(set(skips)) if members[i]] + list(
        s.skips
    )
    loaded = model.loaded
    record = {
        "schema": SCHEMA, "run": ctx.store.name, "cell": c.id, "model": c.model, "set": s.name,
        "suite": s.suite, "severity": s.severity, "params": s.params, "label_space": c.head.label_space,
        "subset": c.head.subset, "n": len(ids), "top1": metrics["top1"], "top5": metrics["top5"],
        "ece": metrics["ece"], "seconds": round(seconds, 3),
        "img_per_s": round(n_images / seconds, 2) if seconds > 0 else None, "skips": head_skips,
        "preprocess": _preprocess_text(p, model, decoders), "data_config": loaded.card.data.as_dict(),
        "weights": dict(loaded.weights), "spec_hash": s.spec_hash, "data_sha256": ctx.identity[id(s)],
        "versions": ctx.versions,
        "device": ctx.device_label, "amp": ctx.amp, "batch_size": model.min_chunk,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "preds": f"preds/{c.id}.npz",
    }  # fmt: skip
    ctx.store.append(record, preds)
    ctx.summary.written.append(record)
    ctx.on_cell(record)
