"""Batched geometry for the torch corruptions: OpenCV-style warps and resizes.

Conventions follow OpenCV (which imgaug calls): pixel ``i`` has its centre at coordinate ``i``;
a warp matrix maps source to destination, and each output pixel samples the source at the
inverse image of its integer coordinates with bilinear interpolation and a constant border.

imgaug's ``imresize_single_image`` (used by ``keep_size`` in Crop/CropAndPad/PerspectiveTransform)
picks ``cv2.INTER_AREA`` when either side grows and ``cv2.INTER_LINEAR`` otherwise; OpenCV's
INTER_AREA on enlargement is a linear interpolation with "area" weights. :func:`resize_weights`
builds both as dense per-image interpolation matrices, so a batch of differently sized crops is
resized at once by two batched matmuls.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def warp_inverse(images: torch.Tensor, inv: torch.Tensor, *, out_hw: tuple[int, int], cval: float = 0.0):
    """Sample float ``images`` [n, c, h, w] at ``inv`` [n, 3, 3] · (x, y, 1) of each output pixel.

    ``inv`` maps output pixel coordinates to source pixel coordinates (projective divide applied).
    Returns float32 [n, c, *out_hw], bilinear, ``cval`` outside the source.
    """
    n, _, h, w = images.shape
    oh, ow = out_hw
    dev = images.device
    ys, xs = torch.meshgrid(
        torch.arange(oh, device=dev, dtype=torch.float64),
        torch.arange(ow, device=dev, dtype=torch.float64),
        indexing="ij",
    )
    pts = torch.stack([xs, ys, torch.ones_like(xs)], 0).view(1, 3, -1)
    src = inv.to(torch.float64) @ pts  # [n, 3, oh*ow]
    sx = src[:, 0] / src[:, 2]
    sy = src[:, 1] / src[:, 2]
    grid = torch.stack([(2 * sx + 1) / w - 1, (2 * sy + 1) / h - 1], -1).view(n, oh, ow, 2)
    if cval:
        shifted = images - cval
        return (
            F.grid_sample(shifted, grid.float(), mode="bilinear", padding_mode="zeros", align_corners=False)
            + cval
        )
    return F.grid_sample(images, grid.float(), mode="bilinear", padding_mode="zeros", align_corners=False)


def resize_weights(
    *,
    canvas: torch.Tensor,
    pad_before: torch.Tensor,
    valid: torch.Tensor,
    offset: torch.Tensor,
    src_size: int,
    dst: int,
    area: torch.Tensor,
) -> torch.Tensor:
    """float32 [n, dst, src_size]: OpenCV resize of a padded 1-D canvas, as a matrix on the source.

    Per image: the canvas has ``canvas`` samples; canvas index ``c`` in
    ``[pad_before, pad_before + valid)`` is source index ``c - pad_before + offset``, the rest is
    padding (its weight is dropped: add ``cval * (1 - row sum)`` for a non-zero pad value).
    ``area`` (bool) selects OpenCV's INTER_AREA enlargement weights, else INTER_LINEAR.
    Borders replicate (indices clamped into the canvas), as OpenCV's resize does.
    """
    dev = canvas.device
    n = canvas.shape[0]
    length = canvas.to(torch.float64).view(n, 1)
    d = torch.arange(dst, device=dev, dtype=torch.float64).view(1, dst)
    scale = length / dst  # source step per output pixel
    f_lin = (d + 0.5) * scale - 0.5
    s_lin = torch.floor(f_lin)
    f_lin = f_lin - s_lin
    s_area = torch.floor(d * scale)
    f_area = (d + 1) - (s_area + 1) / scale
    f_area = torch.where(f_area <= 0, torch.zeros_like(f_area), f_area - torch.floor(f_area))
    use_area = area.view(n, 1)
    s = torch.where(use_area, s_area, s_lin)
    f = torch.where(use_area, f_area, f_lin)
    weights = torch.zeros(n, dst, src_size, device=dev, dtype=torch.float64)
    top = (length - 1).expand(n, dst)
    for idx, wgt in ((s, 1 - f), (s + 1, f)):
        c = torch.minimum(torch.clamp(idx, min=0), top)
        src = c - pad_before.view(n, 1) + offset.view(n, 1)
        inside = (c >= pad_before.view(n, 1)) & (c < (pad_before + valid).view(n, 1))
        src_i = src.clamp(0, src_size - 1).long()
        weights.scatter_add_(2, src_i.unsqueeze(-1), (wgt * inside).unsqueeze(-1))
    return weights.float()


def resize_with(
    images: torch.Tensor, wy: torch.Tensor, wx: torch.Tensor, *, cval: float = 0.0
) -> torch.Tensor:
    """float [n, c, h, w] → [n, c, dy, dx] with row weights ``wy`` [n, dy, h] and column ``wx`` [n, dx, w]."""
    out = wy.unsqueeze(1) @ (images - cval) @ wx.transpose(1, 2).unsqueeze(1)
    return out + cval if cval else out


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Round half away from zero (OpenCV's saturate_cast on non-negative values) and clip to uint8."""
    return torch.floor(x + 0.5).clamp_(0, 255).to(torch.uint8)
