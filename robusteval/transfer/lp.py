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
        perm = np.full(steps[s] * b, -1, dtype=np.int64)
        perm[: len(ix)] = ix[g.permutation(len(ix))]
        out[: steps[s], s, :b] = perm.reshape(steps[s], b)
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
    ``seeds``: each head's init and shuffling seed. Mean cross-entropy over each head's mini-batch,
    its gradient in closed form (``x^T (softmax - onehot) / batch``); Adam (card lr, betas
    0.9/0.999, eps 1e-8, as torch.optim.Adam), multistep schedule of the card. Returns top-1 and
    ECE at every epoch end.
    """
    dev = train_x.device
    S, D = len(subsets), train_x.shape[1]
    C = n_classes
    bound = 1.0 / math.sqrt(D)  # nn.Linear's default init, one generator per head
    P = torch.empty(S, D + 1, C)  # rows 0..D-1: weights, row D: bias
    for s, seed in enumerate(seeds):
        P[s].uniform_(-bound, bound, generator=torch.Generator().manual_seed(int(seed)))
    P = P.to(dev)
    m, v = torch.zeros_like(P), torch.zeros_like(P)
    step = torch.zeros(S, 1, 1, device=dev)
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    gens = [np.random.default_rng(int(seed) + 7919) for seed in seeds]
    top1 = torch.zeros(S, epochs, device=dev)
    ece = torch.zeros(S, epochs, device=dev)
    grad = torch.empty_like(P)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for epoch in range(epochs):
        lr = card.lr_at(epoch, epochs=epochs)
        plan = torch.from_numpy(_epoch_batches(subsets, batch_sizes, gens)).to(dev)
        masks = plan >= 0  # [T, S, B]
        counts = masks.sum(2, keepdim=True)  # [T, S, 1]
        weights = masks / counts.clamp(min=1)  # per-row weight of each head's mean loss
        actives = (counts > 0).float()  # [T, S, 1]
        rows = plan.clamp(min=0)
        for t in range(plan.shape[0]):
            x = train_x[rows[t]]  # [S, B, D]
            g = torch.baddbmm(P[:, D:], x, P[:, :D]).softmax(-1)  # [S, B, C]
            g.scatter_add_(2, train_y[rows[t]].unsqueeze(-1), torch.full_like(g[..., :1], -1.0))
            g.mul_(weights[t].unsqueeze(-1))
            torch.bmm(x.transpose(1, 2), g, out=grad[:, :D])
            grad[:, D] = g.sum(1)
            active = actives[t].unsqueeze(-1)  # [S, 1, 1]
            step.add_(active)
            m.lerp_(grad, active * (1 - beta1))
            v.lerp_(grad.square(), active * (1 - beta2))
            done = step.clamp(min=1)  # heads not yet stepped: no division by zero (active is 0)
            scale = active * lr / (1 - beta1**done)
            P.sub_(m * scale / ((v / (1 - beta2**done)).sqrt_().add_(eps)))
        logits = torch.baddbmm(P[:, D:], test_x.expand(S, -1, -1), P[:, :D])
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
