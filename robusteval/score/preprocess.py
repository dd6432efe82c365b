"""Each model's own preprocessing, applied on the scoring device to decoded uint8 batches.

A :class:`View` is the geometry one model wants from one kind of set:

- ``eval`` (clean JPEGs, OOD sets): resize the shorter side to ``floor(input_size / crop_pct)`` px,
  then center-crop ``input_size`` px, as in timm's and torchvision's eval transforms;
- ``resize`` (corrupted 224 crops from the corrupt stage): resize to ``input_size`` x ``input_size``
  (a no-op at 224) with no second crop;
- ``native`` (model-vs-human's 16-class stimuli): see :func:`native_description`.

Resizing is antialiased (PIL-like) and rounds back to uint8, so every model sees the pixels a
PIL-based eval pipeline would give it. Models sharing a view share one resized batch.
:func:`normalize` then makes float32 NCHW from the model's ``mean``/``std``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

MODES = ("eval", "resize", "native")

# torchvision's tensor resize has no lanczos/box/hamming; bicubic is the closest smooth kernel.
_INTERP = {
    "bilinear": "BILINEAR",
    "bicubic": "BICUBIC",
    "nearest": "NEAREST",
    "nearest-exact": "NEAREST_EXACT",
}
_FALLBACK = {"lanczos": "bicubic", "hamming": "bilinear", "box": "bilinear", "random": "bilinear"}


@dataclass(frozen=True)
class View:
    """Square ``size`` px output; ``resize_to`` is the shorter side before cropping (``eval``)."""

    mode: str
    size: int
    resize_to: int
    interpolation: str
    squash: bool = False  # timm crop_mode "squash": resize both sides to resize_to, then crop

    def describe(self) -> str:
        interp = f"{self.interpolation}, antialiased"
        if self.mode == "native":
            return native_description(self.size, interp)
        if self.mode == "eval" and self.squash:
            return f"resize to {self.resize_to}x{self.resize_to} ({interp}) + center crop {self.size}"
        if self.mode == "eval":
            return f"resize shorter side to {self.resize_to} px ({interp}) + center crop {self.size}"
        return f"224 crops of the corrupt stage resized to {self.size}x{self.size} ({interp}), no second crop"


def make_view(data: Any, *, mode: str) -> View:
    """The view of a model's ``DataConfig`` (``input_size``, ``crop_pct``, ``interpolation``)."""
    if mode not in MODES:
        raise ValueError(f"mode {mode!r} not in {MODES}")
    size = int(data.input_size if isinstance(data.input_size, int) else data.input_size[-1])
    interp = _FALLBACK.get(data.interpolation, data.interpolation)
    if interp not in _INTERP:
        raise ValueError(f"unsupported interpolation {data.interpolation!r}")
    crop_mode = getattr(data, "crop_mode", "center")
    if crop_mode not in ("center", "squash"):
        raise ValueError(f"unsupported crop_mode {crop_mode!r}")
    resize_to = math.floor(size / float(data.crop_pct)) if mode == "eval" else size
    return View(mode=mode, size=size, resize_to=resize_to, interpolation=interp, squash=crop_mode == "squash")


def apply_view(images, view: View):
    """``images``: uint8 NCHW tensor, or a list of uint8 CHW tensors of any sizes (same device).

    Returns uint8 ``[n, 3, size, size]`` on that device.
    """
    import torch

    from robusteval.devices import host_to_device
    from robusteval.score.loader import stack_images

    if isinstance(images, torch.Tensor):
        return _view_stack(images, view)
    if not images:
        raise ValueError("empty batch")
    groups: dict[tuple[int, int], list[int]] = {}
    for i, img in enumerate(images):
        groups.setdefault(tuple(img.shape[-2:]), []).append(i)
    out = torch.empty((len(images), 3, view.size, view.size), dtype=torch.uint8, device=images[0].device)
    for idx in groups.values():
        stacked = stack_images([images[i] for i in idx])
        out[host_to_device(idx, out.device)] = _view_stack(stacked, view)
    return out


def _view_stack(x, view: View):
    from torchvision.transforms.v2 import functional as F

    interp = getattr(F.InterpolationMode, _INTERP[view.interpolation])
    h, w = x.shape[-2:]
    if view.mode in ("resize", "native"):
        if (h, w) == (view.size, view.size):
            return x
        return F.resize(x, [view.size, view.size], interpolation=interp, antialias=True)
    if view.squash and (h, w) != (view.resize_to, view.resize_to):
        x = F.resize(x, [view.resize_to, view.resize_to], interpolation=interp, antialias=True)
    elif not view.squash and min(h, w) != view.resize_to:
        x = F.resize(x, [view.resize_to], interpolation=interp, antialias=True)
    return F.center_crop(x, [view.size, view.size])


def native_description(size: int, interp: str) -> str:
    """The ``native`` rule, as model-vs-human feeds its 224x224 stimuli (its ``datasets/base.py``:
    no transform but normalisation when the images are 224): each image as it is when it is
    already the model's ``size`` x ``size`` input, else resized to ``size`` x ``size``; never cropped."""
    return (
        f"as model-vs-human: stimuli unresized when already {size}x{size}, else resized to "
        f"{size}x{size} ({interp}); no crop"
    )


def normalize(x, *, mean, std, channels_last: bool = False):
    """uint8 NCHW → float32 NCHW ``(x / 255 - mean) / std`` (mean/std: per-channel, [0, 1] units).

    ``mean``/``std`` may be tuples or float32 tensors already on ``x``'s device (no copy then).
    """
    import torch

    m = torch.as_tensor(mean, dtype=torch.float32, device=x.device).view(1, 3, 1, 1) * 255.0
    s = torch.as_tensor(std, dtype=torch.float32, device=x.device).view(1, 3, 1, 1) * 255.0
    # one float copy, then in place; without channels_last the copy keeps the batch's own layout
    fmt = torch.channels_last if channels_last else torch.preserve_format
    return x.to(torch.float32, memory_format=fmt).sub_(m).div_(s)
