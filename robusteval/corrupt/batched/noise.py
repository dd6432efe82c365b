"""Random pixel ops (noise, dropout, salt, elementwise multiply, cutout) and JPEG.

The contract of every op (dtype, seeds, determinism) is in :mod:`robusteval.corrupt.batched`.
"""

from __future__ import annotations

import math

import torch

from robusteval.corrupt.batched import jpeg as torch_jpeg
from robusteval.corrupt.batched import register_batch_op, rng
from robusteval.corrupt.batched.geometry import (
    as_float,
    per_image,
    to_uint8,
)

# --- random pixel ops --------------------------------------------------------------------------


def _pixel_shape(images: torch.Tensor) -> tuple[int, int, int]:
    return (1, images.shape[2], images.shape[3])


@register_batch_op("iaa_additive_gaussian_noise", exact=False)
def additive_gaussian_noise(
    images: torch.Tensor, *, seeds: torch.Tensor, scale=0.0, loc=0.0, per_channel: bool = False
) -> torch.Tensor:
    """Add N(loc, scale) noise (uint8 units) per pixel (shared by the channels unless
    ``per_channel``), rounded and clipped as OpenCV's saturating add does."""
    shape = tuple(images.shape[1:]) if per_channel else _pixel_shape(images)
    s, mu = rng.per_image_params(seeds, [scale, loc], stream=1)
    noise = rng.normal(seeds, shape, stream=3) * per_image(s) + per_image(mu)
    return to_uint8(as_float(images) + noise)


@register_batch_op("iaa_dropout", exact=False)
def dropout(images: torch.Tensor, *, seeds: torch.Tensor, p=0.0, per_channel: bool = False) -> torch.Tensor:
    """Set each pixel (all channels) to 0 with probability ``p`` (per image if ``[lo, hi]``)."""
    shape = tuple(images.shape[1:]) if per_channel else _pixel_shape(images)
    prob = per_image(rng.per_image(seeds, p, stream=1))
    drop = rng.uniform(seeds, shape, stream=2) < prob
    return torch.where(drop, torch.zeros_like(images), images)


@register_batch_op("iaa_salt", exact=False)
def salt(images: torch.Tensor, *, seeds: torch.Tensor, p=0.0, per_channel: bool = False) -> torch.Tensor:
    """Replace each pixel with probability ``p`` by salt ``255 (|b - 1/2| + 1/2)``, b ~ Beta(1/2, 1/2)
    (imgaug Salt; the arcsine law: b = sin²(π u / 2)), truncated to uint8."""
    shape = tuple(images.shape[1:]) if per_channel else _pixel_shape(images)
    prob = per_image(rng.per_image(seeds, p, stream=1))
    hit = rng.uniform(seeds, shape, stream=2) < prob
    b = torch.sin(rng.uniform(seeds, shape, stream=3) * (math.pi / 2)) ** 2
    value = torch.floor(255.0 * ((b - 0.5).abs() + 0.5)).clamp_(0, 255).to(torch.uint8)
    return torch.where(hit, value.expand_as(images), images)


@register_batch_op("iaa_multiply_elementwise", exact=False)
def multiply_elementwise(
    images: torch.Tensor, *, seeds: torch.Tensor, mul=1.0, per_channel: bool = False
) -> torch.Tensor:
    """Each pixel times its own factor from U(lo, hi) (shared by the channels unless
    ``per_channel``), rounded and clipped as OpenCV's saturating multiply does."""
    shape = tuple(images.shape[1:]) if per_channel else _pixel_shape(images)
    if isinstance(mul, list | tuple):
        lo, hi = float(mul[0]), float(mul[1])
        factor = lo + (hi - lo) * rng.uniform(seeds, shape, stream=1)
    else:
        factor = torch.full((1,), float(mul), device=images.device)
    return to_uint8(as_float(images) * factor)


@register_batch_op("iaa_cutout", exact=False)
def cutout(
    images: torch.Tensor, *, seeds: torch.Tensor, nb_iterations=1, size=0.2, cval=128, squared: bool = True
) -> torch.Tensor:
    """imgaug Cutout (position uniform, constant fill): ``nb_iterations`` squares of side
    ``size`` x image height centred at uniform positions, filled with ``cval`` (0..255).

    Each square is a row span times a column span, so the mask is built from [n, k, h] and
    [n, k, w] interval tests and one broadcast AND (no per-pixel geometry per square).
    """
    n, _, h, w = images.shape
    dev = images.device
    k_max = int(max(nb_iterations)) if isinstance(nb_iterations, list | tuple) else int(nb_iterations)
    k, sz, sz_w = rng.per_image_params(
        seeds, [nb_iterations, size, size], stream=1, integer=[True, False, False]
    )
    pos = rng.uniform(seeds, (k_max, 2), stream=2)
    sz = sz.view(n, 1)
    sz_w = sz * (h / w) if squared else sz_w.view(n, 1)
    px, py = pos[..., 0], pos[..., 1]
    y1 = torch.trunc((py - sz / 2) * h)
    y2 = torch.trunc((py + sz / 2) * h)
    x1 = torch.trunc((px - sz_w / 2) * w)
    x2 = torch.trunc((px + sz_w / 2) * w)
    active = torch.arange(k_max, device=dev).view(1, k_max) < k.view(n, 1)
    ys = torch.arange(h, device=dev, dtype=torch.float32)
    xs = torch.arange(w, device=dev, dtype=torch.float32)
    rows = (ys >= y1.unsqueeze(-1)) & (ys < y2.unsqueeze(-1)) & active.unsqueeze(-1)  # [n, k, h]
    cols = (xs >= x1.unsqueeze(-1)) & (xs < x2.unsqueeze(-1))  # [n, k, w]
    inside = (rows.unsqueeze(-1) & cols.unsqueeze(-2)).any(1, keepdim=True)  # [n, 1, h, w]
    return images.masked_fill(inside, int(cval))


@register_batch_op("iaa_jpeg_compression", exact=True)
def jpeg_compression(images: torch.Tensor, *, seeds: torch.Tensor, compression=50) -> torch.Tensor:
    """JPEG round trip at imgaug's quality ``round(1 + 99 (1 - compression / 101))`` (1..100).

    On an accelerator: libjpeg's codec as tensor ops (:mod:`robusteval.corrupt.batched.jpeg`), bit-exact
    with PIL/libjpeg, per-image quality, no host round trip. On the CPU (or for sides not divisible
    by 16): the host's libjpeg through torchvision, which is faster there and gives the same bytes.
    """
    comp = rng.per_image(seeds, compression, stream=1).to(torch.float64)
    quality = torch.clamp(torch.round(1 + 99 * (1 - comp / 101)), 1, 100).to(torch.int64)
    if images.device.type != "cpu" and torch_jpeg.supported(images):
        return torch_jpeg.jpeg_roundtrip(images, quality)
    return _jpeg_host(images, quality)


def _jpeg_host(images: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """libjpeg on the host via torchvision (one encode/decode per image, grouped by quality)."""
    from torchvision.io import decode_jpeg, encode_jpeg

    q_list = quality.tolist()  # the host codec needs Python ints; this path is host-bound anyway
    host = images.cpu()
    out = torch.empty_like(host)
    for q in sorted(set(q_list)):
        idx = [i for i, v in enumerate(q_list) if v == q]
        encoded = encode_jpeg([host[i].contiguous() for i in idx], quality=q)
        for i, d in zip(idx, decode_jpeg(encoded), strict=True):
            out[i] = d
    return out.to(images.device, non_blocking=True)
