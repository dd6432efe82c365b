"""Writing a finished cell: its predictions and its typed :class:`~robusteval.runs.Record`."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from robusteval.metrics import cell_metrics
from robusteval.runs import Preds, Record
from robusteval.score.plan import Cell, Pass
from robusteval.score.request import request_command
from robusteval.score.runner import ResidentModel

if TYPE_CHECKING:
    from robusteval.score.execute import Acc


def gather(acc: Acc, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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


def gather_shards(p: Pass, accs: dict, *, skips, decoders, n_images):
    """A distributed pass: every rank's per-image results to rank 0, merged into item order.

    Each rank sends, per cell, the positions it scored (int64), their top-5 classes (int16) and
    probabilities (float16) — already the stored dtypes, so the merge changes no byte: 28 bytes per
    image and cell, plus its skips. Rank 0 gets ``(accs, skips, decoders, n_images)`` holding every
    rank's images (``Acc.host``, sorted by position, i.e. the single-process order); the others
    ``None``.
    """
    from robusteval.datasets.labelspace import get_label_space
    from robusteval.distributed import gather_to_root

    mine = {}
    for c in p.cells:
        k = min(5, get_label_space(c.head.label_space).num_classes)
        mine[c.id] = gather(accs[c.id], k)
    parts = gather_to_root((mine, skips, sorted(decoders), n_images), f"the end of pass {p.set.name}")
    if parts is None:
        return None
    merged = {}
    for c in p.cells:
        pos = np.concatenate([part[0][c.id][0] for part in parts])
        order = np.argsort(pos, kind="stable")
        top = np.concatenate([part[0][c.id][1] for part in parts])[order]
        prob = np.concatenate([part[0][c.id][2] for part in parts])[order]
        merged[c.id] = type(accs[c.id])(host=(pos[order], top, prob))
    all_skips = [s for part in parts for s in part[1]]
    all_decoders = {d for part in parts for d in part[2]}
    return merged, all_skips, all_decoders, sum(part[3] for part in parts)


def _preprocess_text(p: Pass, model: ResidentModel, decoders: set[str]) -> str:
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


def write_cell(c: Cell, p: Pass, acc: Acc, *, skips, members, decoders, seconds, n_images, ctx) -> None:
    from robusteval.datasets.labelspace import get_label_space

    s = p.set
    model = ctx.models[c.model]
    space = get_label_space(c.head.label_space)
    pos, top5, prob = acc.host if acc.host is not None else gather(acc, min(5, space.num_classes))
    labels = s.head_labels(c.head)[pos] if len(pos) else np.zeros(0, np.int64)
    ids = np.asarray([s.items[i].id for i in pos], dtype=str)
    preds = Preds(ids=ids, labels=labels, top5=top5, top5_prob=prob)
    metrics = cell_metrics(top5=top5, top5_prob=prob, labels=labels, num_classes=space.num_classes)
    head_skips = [{"path": s.items[i].path, "reason": r} for i, r in sorted(set(skips)) if members[i]] + list(
        s.skips
    )
    loaded = model.loaded
    zero_shot = getattr(loaded.module, "zero_shot_info", None)
    record = Record(
        run=ctx.store.name, cell=c.id, model=c.model, model_kind=loaded.card.kind, set=s.name,
        suite=s.suite, severity=s.severity, params=s.params, label_space=c.head.label_space,
        subset=c.head.subset, n=len(ids), top1=metrics["top1"], top5=metrics["top5"],
        ece=metrics["ece"], seconds=round(seconds, 3),
        img_per_s=round(n_images / seconds, 2) if seconds > 0 else None, skips=head_skips,
        preprocess=_preprocess_text(p, model, decoders), data_config=loaded.card.data.as_dict(),
        weights=dict(loaded.weights), spec_hash=s.spec_hash, data_sha256=ctx.identity[id(s)],
        zero_shot=dict(zero_shot) if zero_shot else None, command=ctx.req.command or request_command(ctx.req),
        versions=ctx.versions, device=ctx.device_label, amp=ctx.amp, decode_batch=ctx.req.batch_size,
        forward_batch=model.min_chunk, created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        preds=f"preds/{c.id}.npz",
    )  # fmt: skip
    ctx.store.append(record, preds)
    ctx.summary.written.append(record)
    ctx.on_cell(record)
