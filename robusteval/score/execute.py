"""Running the planned passes: every image decoded once, every model on each batch, top-5 kept on the device."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from robusteval.devices import host_to_device
from robusteval.runs import Record, RunStore
from robusteval.score.plan import Pass
from robusteval.score.request import ScoreRequest, ScoreSummary
from robusteval.score.runner import ResidentModel
from robusteval.score.write import gather_shards, write_cell


@dataclass
class Context:
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
    on_cell: Callable[[Record], None] = lambda rec: None
    identity: dict[int, str] = field(default_factory=dict)  # id(set) → ScoreSet.identity()
    warned: set = field(default_factory=set)
    cache: list = field(default_factory=list)  # [(positions, uint8 NCHW, skips)] clean 224 crops
    world: Any = None  # robusteval.distributed.World when launched by torchrun, else None


def execute(passes: list[Pass], batches: Iterator, ctx: Context) -> None:
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


def _cached(ctx: Context) -> Iterator:
    from robusteval.score.loader import DeviceBatch

    for positions, images, skips in ctx.cache:
        yield DeviceBatch(-1, positions, images, list(skips))


def _warn(ctx: Context, path: str, reason: str) -> None:
    if path not in ctx.warned:
        ctx.warned.add(path)
        ctx.notify(f"skip {path}: {reason}")


@dataclass
class Acc:
    """Per-cell results collected on the device until the pass ends."""

    positions: list = field(default_factory=list)
    top5: list = field(default_factory=list)
    prob: list = field(default_factory=list)
    host: tuple | None = None  # (positions, top5, top5_prob) host arrays merged from every rank


def _run_pass(p: Pass, batches: Iterator, ctx: Context) -> None:

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
    accs = {c.id: Acc() for c in p.cells}
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
    if ctx.world is not None:  # every rank's shard to rank 0; the others write nothing
        merged = gather_shards(p, accs, skips=skips, decoders=decoders, n_images=n_images)
        if merged is None:
            return
        accs, skips, decoders, n_images = merged
    seconds = time.perf_counter() - t0
    ctx.summary.images += n_images
    ctx.summary.skipped_images += len(skips)
    for c in p.cells:
        write_cell(c, p, accs[c.id], skips=skips, members=members[c.head], decoders=decoders, seconds=seconds,
                    n_images=n_images, ctx=ctx)  # fmt: skip
