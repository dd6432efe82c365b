"""Pixels and backbones for transfer: batched loading of torchvision datasets, the model's head.

Images come from a torchvision dataset as PIL RGB; :func:`loader` resizes each to a square side in
the DataLoader (PIL bilinear with antialiasing, as torchvision's ``Resize((s, s))`` on PIL images)
and stacks uint8 NCHW batches; the device side turns them into model input (:func:`normalise`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class _Collate:
    """Picklable collate: ``[(PIL, label)]`` → (uint8 [B, 3, side, side], int64 [B])."""

    side: int

    def __call__(self, batch: Sequence[tuple[Any, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        from PIL import Image

        imgs = []
        for im, _ in batch:
            im = im.convert("RGB")
            if im.size != (self.side, self.side):
                im = im.resize((self.side, self.side), Image.BILINEAR)
            imgs.append(np.asarray(im, dtype=np.uint8))
        x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).contiguous()
        y = torch.as_tensor([int(t) for _, t in batch], dtype=torch.int64)
        return x, y


def loader(
    dataset: Any,
    *,
    indices: np.ndarray | None,
    side: int,
    batch_size: int,
    shuffle_seed: int | None,
    workers: int,
    device: str,
) -> torch.utils.data.DataLoader:
    """Batches of ``dataset[indices]`` resized to ``side`` px squares (uint8 NCHW, int64 labels).

    ``shuffle_seed``: reshuffle every epoch from a generator seeded once (None: in order).
    """
    from torch.utils.data import DataLoader, Subset

    ds = dataset if indices is None else Subset(dataset, indices.tolist())
    gen = None
    if shuffle_seed is not None:
        gen = torch.Generator().manual_seed(int(shuffle_seed))
    return DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=shuffle_seed is not None,
        generator=gen,
        num_workers=workers,
        collate_fn=_Collate(side),
        pin_memory=device.startswith("cuda"),
        persistent_workers=False,
    )


def normalise(x: torch.Tensor, *, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 or 0..1 float NCHW → float32 ``(x/255 - mean) / std`` (uint8) or ``(x - mean) / std``."""
    m = torch.as_tensor(mean, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    if x.dtype == torch.uint8:
        x = x.float().div_(255.0)
    return (x - m) / s


def head_name(module: nn.Module, *, num_classes: int) -> str:
    """Qualified name of the classifier: the last ``nn.Linear`` with ``num_classes`` outputs."""
    found = [
        n for n, m in module.named_modules() if isinstance(m, nn.Linear) and m.out_features == num_classes
    ]
    if not found:
        from robusteval.errors import UserError

        raise UserError(
            f"no linear {num_classes}-way classifier found in {type(module).__name__}",
            hint="transfer needs a classifier model (CLIP zero-shot heads are not supported yet)",
        )
    return found[-1]


def replace_head(module: nn.Module, *, num_classes: int, new: nn.Module) -> int:
    """Put ``new`` where the classifier was; returns the classifier's input width (feature dim)."""
    name = head_name(module, num_classes=num_classes)
    dim = module.get_submodule(name).in_features
    module.set_submodule(name, new)
    return int(dim)


def autocast(device: str, enabled: bool):
    """bf16 autocast on CUDA when ``enabled``; a no-op elsewhere."""
    import contextlib

    if enabled and device.startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def batched_ece(conf: torch.Tensor, correct: torch.Tensor, *, n_bins: int = 15) -> torch.Tensor:
    """15-bin ECE of each row: ``conf``/``correct`` [S, N] (0..1, bool) → [S] in [0, 1].

    The same binning as :func:`robusteval.metrics.expected_calibration_error` (bins ``(lo, hi]``).
    """
    conf = conf.float()
    hit = correct.float()
    idx = (torch.ceil(conf * n_bins).long() - 1).clamp_(0, n_bins - 1)
    c_sum = torch.zeros(conf.shape[0], n_bins, device=conf.device).scatter_add_(1, idx, conf)
    h_sum = torch.zeros(conf.shape[0], n_bins, device=conf.device).scatter_add_(1, idx, hit)
    return (h_sum - c_sum).abs().sum(1) / max(conf.shape[1], 1)
