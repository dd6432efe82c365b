"""Full fine-tuning and gradient freezing (the cards ``finetune`` and ``freeze``).

The model's ImageNet head is replaced by a new ``nn.Linear(D, C)`` (seeded init); every weight
trains with AdamW (backbone lr ``card.lr``, head lr ``card.head_lr``, decoupled weight decay) and a
per-step cosine decay to 0 over all epochs, on ``Resize((s, s))`` images with the model's own
normalisation, bf16 autocast on CUDA. ``freeze`` records the mean L2 gradient norm of every
parameter tensor over ``card.warmup_epochs`` epochs, then sets ``requires_grad=False`` on the
backbone tensors below the ``card.freeze_quantile`` of those norms for the remaining epochs (the new
head always trains): their weight gradients and optimiser updates are no longer computed.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from torch import nn

from robusteval.transfer.datasets import sample_shots
from robusteval.transfer.job import MethodJob, param_count_m
from robusteval.transfer.pixels import autocast, batched_ece, head_name, loader, normalise, replace_head
from robusteval.transfer.protocol import register_method


def _evaluate(module, batches, *, mean, std, device, amp) -> tuple[float, float]:
    module.eval()
    confs, hits = [], []
    with torch.no_grad():
        for x, y in batches:
            with autocast(device, amp):
                logits = module(normalise(x.to(device, non_blocking=True), mean=mean, std=std))
            conf, pred = logits.float().softmax(1).max(1)
            confs.append(conf)
            hits.append(pred == y.to(device))
    conf, hit = torch.cat(confs)[None], torch.cat(hits)[None]
    return float(hit.float().mean()), float(batched_ece(conf, hit)[0])


def finetune_cell(job: MethodJob, *, shots: int | None, seed: int) -> None:
    """Train one cell of ``finetune`` or ``freeze`` and emit its record."""
    card = job.card
    torch.manual_seed(seed)
    lm = job.build("torch")
    params_m = lm.card.params_m or param_count_m(lm.module)
    module, data = lm.module, lm.card.data
    n_classes = len(job.splits.classes)
    head = head_name(module, num_classes=lm.card.num_classes)
    dim = module.get_submodule(head).in_features
    new = nn.Linear(dim, n_classes)
    replace_head(module, num_classes=lm.card.num_classes, new=new.to(job.device))
    idx = sample_shots(job.splits.train_labels, shots=shots, seed=seed)
    side, mean, std = int(data.input_size), data.mean, data.std
    common = dict(side=side, workers=job.workers, device=job.device)
    train = loader(
        job.splits.train, indices=idx, batch_size=card.batch_size(shots), shuffle_seed=seed, **common
    )
    test = loader(job.splits.test, indices=None, batch_size=job.feature_batch, shuffle_seed=None, **common)
    head_params = list(new.parameters())
    head_ids = {id(p) for p in head_params}
    named = [(n, p) for n, p in module.named_parameters() if id(p) not in head_ids]
    opt = torch.optim.AdamW(
        [
            {"params": [p for _, p in named], "lr": card.lr},
            {"params": head_params, "lr": card.head_lr or card.lr},
        ],
        weight_decay=card.weight_decay,
    )
    total = max(1, job.epochs * len(train))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: 0.5 * (1 + math.cos(math.pi * min(i, total) / total))
    )
    norms = {n: 0.0 for n, _ in named}
    warm_steps = 0
    frozen_fraction = 0.0 if card.freeze_quantile > 0 else None
    top1, ece = [], []
    if job.device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for epoch in range(job.epochs):
        if card.freeze_quantile > 0 and epoch == card.warmup_epochs and warm_steps:
            frozen_fraction = _freeze(named, norms, warm_steps, quantile=card.freeze_quantile)
        module.train()
        warm = card.freeze_quantile > 0 and epoch < card.warmup_epochs
        for x, y in train:
            with autocast(job.device, job.amp):
                logits = module(normalise(x.to(job.device, non_blocking=True), mean=mean, std=std))
            loss = nn.functional.cross_entropy(logits.float(), y.to(job.device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if warm:
                for n, p in named:
                    if p.grad is not None:
                        norms[n] += float(p.grad.detach().float().norm())
                warm_steps += 1
            opt.step()
            sched.step()
        acc, e = _evaluate(module, test, mean=mean, std=std, device=job.device, amp=job.amp)
        top1.append(acc)
        ece.append(e)
    seconds = time.perf_counter() - t0
    job.emit(
        [
            job.record(
                shots=shots,
                seed=seed,
                n_train=len(idx),
                top1=top1,
                ece=ece,
                seconds=seconds,
                params_m=params_m,
                weights_source=job.weights,
                frozen_fraction=frozen_fraction,
            )  # fmt: skip
        ]
    )


def _freeze(named, norms: dict[str, float], steps: int, *, quantile: float) -> float:
    """Stop training tensors whose mean gradient norm is below ``quantile``; the frozen share of weights."""
    mean = np.asarray([norms[n] / steps for n, _ in named])
    cut = float(np.quantile(mean, quantile))
    frozen = total = 0
    for (_, p), g in zip(named, mean, strict=True):
        total += p.numel()
        if g < cut:
            p.requires_grad_(False)
            p.grad = None
            frozen += p.numel()
    return frozen / max(total, 1)


def _cells(job: MethodJob) -> None:
    for shots, seed in job.cells:
        finetune_cell(job, shots=shots, seed=seed)
        if job.progress is not None:
            job.progress(1)


@register_method("finetune")
def finetune(job: MethodJob) -> None:
    """Every unfinished cell, one after the other (each builds the model afresh)."""
    _cells(job)


@register_method("freeze")
def freeze(job: MethodJob) -> None:
    """As ``finetune``, with the card's warm-up and gradient-norm quantile freezing."""
    _cells(job)
