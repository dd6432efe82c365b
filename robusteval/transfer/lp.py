"""Linear probing: features once per (model, dataset, image), every (shots x seed) head at once.

Features are the classifier's input (the model's ImageNet head replaced by identity) of
``Resize((s, s))`` images normalised with the model's own mean/std, extracted in bf16 on CUDA and
cached in ``runs/<NAME>/features/`` (float16 npz), so a resumed or extended run reads them back.

All heads train together as one batched problem: weights ``[S, D, C]``, biases ``[S, C]``; at each
step every head gathers its own mini-batch of feature rows (its shot subset, reshuffled per epoch
with its seed, its own study batch size) into a ``[S, B, D]`` block (padded rows masked out), one
``baddbmm`` gives the logits, and a batched Adam step (per-head step counts; a head whose epoch has
no more batches does not move) updates all heads. Test top-1 and ECE of every head are computed at
every epoch end on the device and copied back once at the end. The head trains in float32.
"""

from __future__ import annotations

import io
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from robusteval.jsonl import atomic_write_bytes
from robusteval.transfer.datasets import sample_shots
from robusteval.transfer.job import MethodJob, param_count_m
from robusteval.transfer.pixels import autocast, batched_ece, loader, normalise, replace_head
from robusteval.transfer.protocol import ProtocolCard, register_method


@dataclass(frozen=True)
class Features:
    """Float32 features ``train`` [N, D] / ``test`` [M, D] and int64 labels; ``seconds`` of the pass."""

    train: np.ndarray
    test: np.ndarray
    train_labels: np.ndarray
    test_labels: np.ndarray
    seconds: float


def extract(
    module: nn.Module,
    dataset,
    *,
    side: int,
    mean,
    std,
    device: str,
    amp: bool,
    batch_size: int,
    workers: int,
    progress=None,
) -> tuple[np.ndarray, np.ndarray]:
    """Features (float32 [n, D]) and labels (int64 [n]) of every image of ``dataset``, in order."""
    feats, labels = [], []
    with torch.inference_mode():
        for x, y in loader(
            dataset, indices=None, side=side, batch_size=batch_size, shuffle_seed=None,
            workers=workers, device=device,
        ):  # fmt: skip
            x = normalise(x.to(device, non_blocking=True), mean=mean, std=std)
            with autocast(device, amp):
                f = module(x)
            feats.append(f.float().cpu())
            labels.append(y)
            if progress is not None:
                progress(len(y))
    return torch.cat(feats).numpy(), torch.cat(labels).numpy()


def features_for(job: MethodJob) -> Features:
    """The cached features of (job.model, job.splits), extracting them (and caching) when absent."""
    path = job.cache_dir / f"{job.model}__{job.splits.name}.npz".replace("/", "_").replace(":", "_")
    n_train, n_test = job.splits.train_labels.size, job.splits.test_labels.size
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            if (
                z["train"].shape[0] == n_train
                and z["test"].shape[0] == n_test
                and str(z["weights"]) == job.weights
            ):
                return Features(
                    z["train"].astype(np.float32), z["test"].astype(np.float32),
                    z["train_labels"], z["test_labels"], 0.0,
                )  # fmt: skip
    lm = job.build("auto")
    module, data = lm.module, lm.card.data
    replace_head(module, num_classes=lm.card.num_classes, new=nn.Identity())
    module.eval()
    if job.device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    common = dict(
        side=int(data.input_size), mean=data.mean, std=data.std, device=job.device, amp=job.amp,
        batch_size=job.feature_batch, workers=job.workers,
    )  # fmt: skip
    tr, trl = extract(module, job.splits.train, **common)
    te, tel = extract(module, job.splits.test, **common)
    seconds = time.perf_counter() - t0
    buf = io.BytesIO()
    np.savez(
        buf, train=tr.astype(np.float16), test=te.astype(np.float16), train_labels=trl, test_labels=tel,
        weights=np.asarray(job.weights), seconds=np.asarray(seconds),
    )  # fmt: skip
    atomic_write_bytes(path, buf.getvalue())
    del module, lm
    return Features(tr, te, trl, tel, seconds)


@dataclass(frozen=True)
class HeadGrid:
    """Per-head results: ``top1``/``ece`` float [S, E] (every epoch end), ``seconds`` of the grid."""

    top1: np.ndarray
    ece: np.ndarray
    seconds: float


def _epoch_batches(
    subsets: list[np.ndarray], batch_sizes: list[int], gens: list[np.random.Generator]
) -> np.ndarray:
    """Index tensor [T, S, B] of one epoch: head s's shuffled subset in batches of its size, -1 pad."""
    steps = [math.ceil(len(ix) / b) for ix, b in zip(subsets, batch_sizes, strict=True)]
    T, B = max(steps), max(batch_sizes)
    out = np.full((T, len(subsets), B), -1, dtype=np.int64)
    for s, (ix, b, g) in enumerate(zip(subsets, batch_sizes, gens, strict=True)):
        perm = ix[g.permutation(len(ix))]
        for t in range(steps[s]):
            chunk = perm[t * b : (t + 1) * b]
            out[t, s, : len(chunk)] = chunk
    return out


def train_heads(
    *,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    subsets: list[np.ndarray],
    batch_sizes: list[int],
    seeds: list[int],
    n_classes: int,
    card: ProtocolCard,
    epochs: int,
) -> HeadGrid:
    """Train ``S = len(subsets)`` linear heads at once on device-resident features (see module doc).

    ``train_x`` [N, D] / ``test_x`` [M, D] float32; ``subsets``: each head's training rows;
    ``seeds``: each head's init and shuffling seed. Adam (card lr, betas 0.9/0.999, eps 1e-8),
    multistep schedule of the card. Returns top-1 and ECE at every epoch end.
    """
    dev = train_x.device
    S, D = len(subsets), train_x.shape[1]
    bound = 1.0 / math.sqrt(D)  # nn.Linear's default init, one generator per head
    W = torch.empty(S, D, n_classes)
    b = torch.empty(S, 1, n_classes)
    for s, seed in enumerate(seeds):
        g = torch.Generator().manual_seed(int(seed))
        W[s].uniform_(-bound, bound, generator=g)
        b[s].uniform_(-bound, bound, generator=g)
    params = [W.to(dev).requires_grad_(), b.to(dev).requires_grad_()]
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    step = torch.zeros(S, 1, 1, device=dev)
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    gens = [np.random.default_rng(int(seed) + 7919) for seed in seeds]
    top1 = torch.zeros(S, epochs, device=dev)
    ece = torch.zeros(S, epochs, device=dev)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for epoch in range(epochs):
        lr = card.lr_at(epoch, epochs=epochs)
        plan = torch.from_numpy(_epoch_batches(subsets, batch_sizes, gens)).to(dev)
        for t in range(plan.shape[0]):
            idx = plan[t]  # [S, B]
            mask = idx >= 0
            safe = idx.clamp(min=0)
            x = train_x[safe]  # [S, B, D]
            logits = torch.baddbmm(params[1], x, params[0])  # [S, B, C]
            ce = nn.functional.cross_entropy(
                logits.reshape(-1, n_classes), train_y[safe].reshape(-1), reduction="none"
            ).view_as(idx)
            count = mask.sum(1)
            loss = ((ce * mask).sum(1) / count.clamp(min=1)).sum()
            grads = torch.autograd.grad(loss, params)
            with torch.no_grad():
                active = (count > 0).view(S, 1, 1).float()
                step += active
                bc1 = 1 - beta1 ** step.clamp(min=1)
                bc2 = 1 - beta2 ** step.clamp(min=1)
                for p, g_, m_, v_ in zip(params, grads, m, v, strict=True):
                    m_.mul_(1 - active * (1 - beta1)).add_(active * (1 - beta1) * g_)
                    v_.mul_(1 - active * (1 - beta2)).add_(active * (1 - beta2) * g_ * g_)
                    p.sub_(active * lr * (m_ / bc1) / ((v_ / bc2).sqrt() + eps))
        with torch.no_grad():
            logits = torch.einsum("nd,sdc->snc", test_x, params[0]) + params[1]
            conf, pred = logits.softmax(-1).max(-1)
            hit = pred == test_y.view(1, -1)
            top1[:, epoch] = hit.float().mean(1)
            ece[:, epoch] = batched_ece(conf, hit)
    out_top1, out_ece = top1.cpu().numpy(), ece.cpu().numpy()  # the one sync of the grid
    return HeadGrid(out_top1, out_ece, time.perf_counter() - t0)


@register_method("lp")
def linear_probe(job: MethodJob) -> None:
    """Every unfinished (shots, seed) cell of the job trained as one batched grid."""
    feats = features_for(job)
    dev = torch.device(job.device)
    tx = torch.from_numpy(feats.train).to(dev)
    ty = torch.from_numpy(feats.train_labels).to(dev)
    vx = torch.from_numpy(feats.test).to(dev)
    vy = torch.from_numpy(feats.test_labels).to(dev)
    subsets = [sample_shots(feats.train_labels, shots=k, seed=s) for k, s in job.cells]
    grid = train_heads(
        train_x=tx, train_y=ty, test_x=vx, test_y=vy, subsets=subsets,
        batch_sizes=[job.card.batch_size(k) for k, _ in job.cells], seeds=[s for _, s in job.cells],
        n_classes=len(job.splits.classes), card=job.card, epochs=job.epochs,
    )  # fmt: skip
    from robusteval.models import resolve

    card = resolve(job.model).meta["card"]
    params_m = card.params_m if card.params_m else _count(job)
    share = grid.seconds / max(len(job.cells), 1)
    job.emit(
        [
            job.record(
                shots=k,
                seed=s,
                n_train=len(subsets[i]),
                top1=grid.top1[i].tolist(),
                ece=grid.ece[i].tolist(),
                seconds=share,
                params_m=params_m,
                weights_source=job.weights,
                feature_seconds=feats.seconds,
            )  # fmt: skip
            for i, (k, s) in enumerate(job.cells)
        ]
    )
    if job.progress is not None:
        job.progress(len(job.cells))


def _count(job: MethodJob) -> float:
    return param_count_m(job.build("auto").module)
