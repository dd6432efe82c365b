"""ILM-VP: a learnable border prompt around the resized image, iterative frequency label mapping.

The image (``vp_size`` px, 0..1) is zero-padded into the model's input frame (224 px) and
``sigmoid(theta) * mask`` is added, ``mask`` being 1 on the border and 0 over the image; the sum is
normalised with the model's mean/std and goes through the frozen model. Its source (ImageNet)
logits are read at the source classes mapped to the target classes. The mapping is recomputed at
the start of every epoch: count, over the training images, how often the prompted model predicts
source class i for an image of target class j, then greedily take the largest count, map j to i,
and strike row i and column j, until every target class has a source class.

The un-prompted baseline (``top1_init``) is the same model on zero-padded images (no prompt) with a
mapping computed the same way.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from robusteval.transfer.datasets import sample_shots
from robusteval.transfer.job import MethodJob, param_count_m
from robusteval.transfer.pixels import autocast, batched_ece, loader, normalise
from robusteval.transfer.protocol import register_method


class PromptFrame(nn.Module):
    """``x`` float [B, 3, inner, inner] in 0..1 → [B, 3, frame, frame] with a learnable border."""

    def __init__(self, *, inner: int, frame: int) -> None:
        super().__init__()
        if inner >= frame:
            raise ValueError(f"prompt frame {frame} px must exceed the image side {inner} px")
        self.lo = (frame - inner) // 2
        self.hi = frame - inner - self.lo
        self.theta = nn.Parameter(torch.zeros(3, frame, frame))
        mask = torch.ones(3, frame, frame)
        mask[:, self.lo : self.lo + inner, self.lo : self.lo + inner] = 0
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor, *, prompt: bool = True) -> torch.Tensor:
        x = nn.functional.pad(x, (self.lo, self.hi, self.lo, self.hi), value=0.0)
        return x + torch.sigmoid(self.theta) * self.mask if prompt else x


def frequency_mapping(counts: torch.Tensor) -> torch.Tensor:
    """Greedy one-to-one mapping from counts [n_source, n_target] → source index per target [C]."""
    c = counts.double().clone()
    n_src, n_tgt = c.shape
    out = torch.full((n_tgt,), -1, dtype=torch.long)
    for _ in range(n_tgt):
        flat = int(torch.argmax(c))
        i, j = divmod(flat, n_tgt)
        out[j] = i
        c[i, :] = -1
        c[:, j] = -1
    return out


class _Prompted:
    """The frozen model behind the prompt; ``logits(x_uint8)`` → source logits [B, n_source]."""

    def __init__(self, lm, *, inner: int, device: str, amp: bool) -> None:
        self.module = lm.module.eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.mean, self.std = lm.card.data.mean, lm.card.data.std
        self.frame = PromptFrame(inner=inner, frame=int(lm.card.data.input_size)).to(device)
        self.device, self.amp = device, amp

    def logits(self, x: torch.Tensor, *, prompt: bool = True) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True).float().div_(255.0)
        z = normalise(self.frame(x, prompt=prompt), mean=self.mean, std=self.std)
        with autocast(self.device, self.amp):
            return self.module(z).float()


def _mapping(net: _Prompted, batches, *, n_source: int, n_target: int, prompt: bool) -> torch.Tensor:
    counts = torch.zeros(n_source, n_target, device=net.device)
    with torch.no_grad():
        for x, y in batches:
            pred = net.logits(x, prompt=prompt).argmax(1)
            counts.index_put_(
                (pred, y.to(net.device)), torch.ones_like(pred, dtype=counts.dtype), accumulate=True
            )
    return frequency_mapping(counts.cpu()).to(net.device)


def _evaluate(net: _Prompted, batches, mapping: torch.Tensor, *, prompt: bool) -> tuple[float, float]:
    confs, hits = [], []
    with torch.no_grad():
        for x, y in batches:
            p = net.logits(x, prompt=prompt)[:, mapping].softmax(1)
            conf, pred = p.max(1)
            confs.append(conf)
            hits.append(pred == y.to(net.device))
    conf, hit = torch.cat(confs)[None], torch.cat(hits)[None]
    return float(hit.float().mean()), float(batched_ece(conf, hit)[0])


def train_prompt(
    net: _Prompted,
    *,
    train,
    test,
    n_source: int,
    n_target: int,
    epochs: int,
    card,
    seed: int,
) -> tuple[list[float], list[float], float]:
    """ILM-VP training: returns (top-1 per epoch end, ECE per epoch end, baseline top-1).

    ``train``: ``{"ordered": loader, "shuffled": loader}`` over the shot subset (the first for the
    mappings, the second for the steps); ``test``: a loader of the test split.
    """
    torch.manual_seed(seed)
    base_map = _mapping(net, train["ordered"], n_source=n_source, n_target=n_target, prompt=False)
    baseline, _ = _evaluate(net, test, base_map, prompt=False)
    opt = torch.optim.Adam(net.frame.parameters(), lr=card.lr)
    top1, ece = [], []
    for epoch in range(epochs):
        for group in opt.param_groups:
            group["lr"] = card.lr_at(epoch, epochs=epochs)
        mapping = _mapping(net, train["ordered"], n_source=n_source, n_target=n_target, prompt=True)
        net.frame.train()
        for x, y in train["shuffled"]:
            loss = nn.functional.cross_entropy(net.logits(x)[:, mapping], y.to(net.device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        acc, e = _evaluate(net, test, mapping, prompt=True)
        top1.append(acc)
        ece.append(e)
    return top1, ece, baseline


@register_method("ilm-vp")
def ilm_vp(job: MethodJob) -> None:
    """One prompt per unfinished (shots, seed) cell; the frozen model is built once for the job."""
    lm = job.build("torch")
    params_m = lm.card.params_m or param_count_m(lm.module)
    inner = job.splits.spec.vp_size
    net = _Prompted(lm, inner=inner, device=job.device, amp=job.amp)
    common = dict(side=inner, workers=job.workers, device=job.device)
    test = loader(job.splits.test, indices=None, batch_size=job.feature_batch, shuffle_seed=None, **common)
    for shots, seed in job.cells:
        idx = sample_shots(job.splits.train_labels, shots=shots, seed=seed)
        bs = job.card.batch_size(shots)
        train = {
            "ordered": loader(
                job.splits.train, indices=idx, batch_size=job.feature_batch, shuffle_seed=None, **common
            ),
            "shuffled": loader(job.splits.train, indices=idx, batch_size=bs, shuffle_seed=seed, **common),
        }
        net.frame = PromptFrame(inner=inner, frame=net.frame.mask.shape[-1]).to(job.device)
        t0 = time.perf_counter()
        top1, ece, base = train_prompt(
            net, train=train, test=test, n_source=lm.card.num_classes, n_target=len(job.splits.classes), epochs=job.epochs,
            card=job.card, seed=seed,
        )  # fmt: skip
        job.emit(
            [
                job.record(
                    shots=shots,
                    seed=seed,
                    n_train=len(idx),
                    top1=top1,
                    ece=ece,
                    seconds=time.perf_counter() - t0,
                    params_m=params_m,
                    weights_source=job.weights,
                    top1_init=base,
                )  # fmt: skip
            ]
        )
        if job.progress is not None:
            job.progress(1)


def prompt_throughput(lm, *, batch: int, inner: int, device: str, amp: bool, steps: int) -> float:
    """Images per second of ILM-VP training steps (forward + backward to the prompt) at ``batch``."""
    net = _Prompted(lm, inner=inner, device=device, amp=amp)
    opt = torch.optim.Adam(net.frame.parameters(), lr=0.01)
    x = torch.from_numpy(np.random.default_rng(0).integers(0, 255, (batch, 3, inner, inner), dtype=np.uint8))
    y = torch.zeros(batch, dtype=torch.long, device=device)
    mapping = torch.arange(10, device=device)

    def one() -> None:
        loss = nn.functional.cross_entropy(net.logits(x)[:, mapping], y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    one()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        one()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - t0)
