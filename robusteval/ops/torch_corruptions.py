"""Batched torch versions of the study21 imgaug transformations, for on-the-fly scoring.

Each op is registered in :data:`robusteval.score.onthefly.BATCH_OPS` under the spec's op name
(``iaa_<set>``) as ``fn(images, *, seeds, **params) -> images``: ``images`` uint8 NCHW RGB on any
device (never modified in place), ``seeds`` int64 [n] (one per image), ``params`` the set's
params at a severity, with imgaug's meaning (see :mod:`robusteval.corruptions.study_ops`).

Deterministic ops follow imgaug's arithmetic (OpenCV rounding, lookup-table truncation, reflect-101
borders) and match its output to within a grey level. Random ops draw their randomness from a
counter-based hash of the per-image seed (:mod:`robusteval.ops.torch_corruptions_rng`), so they
match imgaug in distribution, not pixel for pixel; the tests state the tolerances.

Not registered (the engine then runs imgaug per image): ``piecewise_affine`` (scikit-image's
Delaunay-triangulated warp).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from robusteval.ops import torch_corruptions_rng as rng
from robusteval.ops.torch_corruptions_geom import (
    resize_weights,
    resize_with,
    to_uint8,
    warp_inverse,
)
from robusteval.score.onthefly import register_batch_op

_RAD = math.pi / 180.0


def _f(images: torch.Tensor) -> torch.Tensor:
    return images.to(torch.float32)


# --- deterministic pixel ops ------------------------------------------------------------------


@register_batch_op("iaa_fliplr", exact=True)
def fliplr(images: torch.Tensor, *, seeds: torch.Tensor, p: float = 1.0) -> torch.Tensor:
    """Mirror left-right with probability ``p`` per image (uint8 NCHW)."""
    flip = rng.uniform(seeds, (1,), stream=1).view(-1, 1, 1, 1) < p
    return torch.where(flip, images.flip(-1), images)


@register_batch_op("iaa_invert", exact=True)
def invert(images: torch.Tensor, *, seeds: torch.Tensor, p: float = 1.0) -> torch.Tensor:
    """v → 255 - v with probability ``p`` per image (uint8 NCHW)."""
    flip = rng.uniform(seeds, (1,), stream=1).view(-1, 1, 1, 1) < p
    return torch.where(flip, 255 - images, images)


def _gray(images: torch.Tensor) -> torch.Tensor:
    """OpenCV RGB2GRAY on uint8: fixed-point 0.299 R + 0.587 G + 0.114 B, rounded. int32 [n,1,h,w]."""
    x = images.to(torch.int32)
    y = x[:, 0:1] * 4899 + x[:, 1:2] * 9617 + x[:, 2:3] * 1868
    return (y + 8192) >> 14


@register_batch_op("iaa_grayscale", exact=True)
def grayscale(images: torch.Tensor, *, seeds: torch.Tensor, alpha=1.0) -> torch.Tensor:
    """Blend towards greyscale with opacity ``alpha`` (0..1, or [lo, hi] per image)."""
    a = rng.per_image(seeds, alpha, stream=1).view(-1, 1, 1, 1)
    gray = _gray(images).to(torch.float32).expand_as(images)
    return to_uint8(a * gray + (1 - a) * _f(images))


@register_batch_op("iaa_multiply", exact=True)
def multiply(images: torch.Tensor, *, seeds: torch.Tensor, mul=1.0) -> torch.Tensor:
    """Every value times ``mul`` (per image), truncated as imgaug's uint8 lookup table does."""
    m = rng.per_image(seeds, mul, stream=1).view(-1, 1, 1, 1)
    return torch.floor(_f(images) * m).clamp_(0, 255).to(torch.uint8)


@register_batch_op("iaa_linear_contrast", exact=True)
def linear_contrast(images: torch.Tensor, *, seeds: torch.Tensor, alpha=1.0) -> torch.Tensor:
    """v → 127 + alpha (v - 127), clipped and truncated (imgaug's uint8 table; centre int(127.5))."""
    a = rng.per_image(seeds, alpha, stream=1).view(-1, 1, 1, 1)
    return torch.floor((127 + a * (_f(images) - 127)).clamp_(0, 255)).to(torch.uint8)


def _filter(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Correlate float [n, c, h, w] with per-image 2-D kernels [n, kh, kw], reflect-101 border."""
    n, c, h, w = x.shape
    kh, kw = kernel.shape[-2:]
    x = F.pad(x, (kw // 2, kw // 2, kh // 2, kh // 2), mode="reflect")
    # groups = n*c: every (image, channel) plane gets its image's kernel.
    weight = kernel.repeat_interleave(c, 0).unsqueeze(1)
    return F.conv2d(x.reshape(1, n * c, h + kh - 1, w + kw - 1), weight, groups=n * c).view(n, c, h, w)


def _blend_kernel(effect: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """(1 - alpha) · identity + alpha · effect, per image: [n, 3, 3]."""
    ident = torch.zeros(3, 3, device=effect.device)
    ident[1, 1] = 1
    a = alpha.view(-1, 1, 1)
    return (1 - a) * ident + a * effect


@register_batch_op("iaa_emboss", exact=True)
def emboss(images: torch.Tensor, *, seeds: torch.Tensor, alpha=1.0, strength=1.0) -> torch.Tensor:
    """imgaug Emboss: 3x3 emboss kernel of ``strength`` blended with identity by ``alpha``."""
    a = rng.per_image(seeds, alpha, stream=1)
    s = rng.per_image(seeds, strength, stream=2).view(-1, 1, 1)
    base = torch.tensor([[-1.0, 0, 0], [0, 1, 0], [0, 0, 1]], device=images.device)
    sign = torch.tensor([[-1.0, -1, 0], [-1, 0, 1], [0, 1, 1]], device=images.device)
    kernel = _blend_kernel(base + s * sign, a)
    return to_uint8(_filter(_f(images), kernel))


@register_batch_op("iaa_edge_detect", exact=True)
def edge_detect(images: torch.Tensor, *, seeds: torch.Tensor, alpha=0.75) -> torch.Tensor:
    """imgaug EdgeDetect: 4-neighbour Laplacian kernel blended with identity by ``alpha``."""
    a = rng.per_image(seeds, alpha, stream=1)
    lap = torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]], device=images.device)
    return to_uint8(_filter(_f(images), _blend_kernel(lap, a)))


def _gauss_ksize(sigma: float) -> int:
    """imgaug's kernel size for a sigma (cv2 backend)."""
    k = 3.3 * sigma if sigma < 3.0 else (2.9 * sigma if sigma < 5.0 else 2.6 * sigma)
    k = int(max(k, 5))
    return k + 1 if k % 2 == 0 else k


@register_batch_op("iaa_gaussian_blur", exact=True)
def gaussian_blur(images: torch.Tensor, *, seeds: torch.Tensor, sigma=1.0) -> torch.Tensor:
    """Separable Gaussian of ``sigma`` pixels (one value for the batch), reflect-101 border."""
    if isinstance(sigma, list | tuple):
        # A per-image sigma would need per-image kernel sizes; run each distinct value alone.
        s = rng.per_image(seeds, sigma, stream=1)
        out = torch.empty_like(images)
        for i, v in enumerate(s.tolist()):
            out[i : i + 1] = gaussian_blur(images[i : i + 1], seeds=seeds[i : i + 1], sigma=v)
        return out
    sigma = float(sigma)
    if sigma < 1e-3:
        return images.clone()
    k = _gauss_ksize(sigma)
    r = torch.arange(k, device=images.device, dtype=torch.float64) - (k - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma * sigma))
    g = (g / g.sum()).float()
    n, c, h, w = images.shape
    x = _f(images).reshape(n * c, 1, h, w)
    x = F.conv2d(F.pad(x, (k // 2, k // 2, 0, 0), mode="reflect"), g.view(1, 1, 1, k))
    x = F.conv2d(F.pad(x, (0, 0, k // 2, k // 2), mode="reflect"), g.view(1, 1, k, 1))
    return to_uint8(x.view(n, c, h, w))


# --- colour spaces (OpenCV uint8 semantics: H in 0..179) ---------------------------------------


def _rgb_to_hsv_cv2(images: torch.Tensor) -> torch.Tensor:
    """uint8 RGB NCHW → float32 HSV with OpenCV's 8-bit rounding (H 0..179, S and V 0..255)."""
    x = images.to(torch.int32)
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    v = torch.maximum(torch.maximum(r, g), b)
    vmin = torch.minimum(torch.minimum(r, g), b)
    diff = (v - vmin).to(torch.float64)
    vf = v.to(torch.float64)
    s = torch.where(v > 0, torch.floor(255.0 * diff / vf.clamp(min=1) + 0.5), torch.zeros_like(vf))
    num = torch.where(
        v == r,
        (g - b).to(torch.float64),
        torch.where(v == g, (b - r).to(torch.float64) + 2 * diff, (r - g).to(torch.float64) + 4 * diff),
    )
    h = torch.where(diff > 0, torch.floor(30.0 * num / diff.clamp(min=1) + 0.5), torch.zeros_like(diff))
    h = torch.where(h < 0, h + 180, h)
    return torch.stack([h, s, vf], 1).float()


def _hsv_to_rgb_cv2(hsv: torch.Tensor) -> torch.Tensor:
    """float HSV (OpenCV 8-bit ranges) → uint8 RGB NCHW."""
    h = hsv[:, 0:1] * 2.0  # degrees
    s = hsv[:, 1:2] / 255.0
    v = hsv[:, 2:3] / 255.0
    n_ = torch.tensor([5.0, 3.0, 1.0], device=hsv.device).view(1, 3, 1, 1)
    k = torch.remainder(n_ + h / 60.0, 6.0)
    rgb = v - v * s * torch.clamp(torch.minimum(k, 4 - k), 0, 1)
    return to_uint8(rgb * 255.0)


def _rgb_to_hls_cv2(images: torch.Tensor) -> torch.Tensor:
    """uint8 RGB NCHW → float32 HLS, OpenCV 8-bit rounding (H 0..179, L and S 0..255)."""
    x = _f(images) / 255.0
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    vmax = torch.maximum(torch.maximum(r, g), b)
    vmin = torch.minimum(torch.minimum(r, g), b)
    diff = vmax - vmin
    lum = (vmax + vmin) * 0.5
    has = diff > 1.1920929e-07
    safe = torch.where(has, diff, torch.ones_like(diff))
    s = torch.where(
        lum < 0.5, diff / (vmax + vmin).clamp(min=1e-12), diff / (2 - vmax - vmin).clamp(min=1e-12)
    )
    h = torch.where(
        vmax == r,
        (g - b) * 60 / safe,
        torch.where(vmax == g, (b - r) * 60 / safe + 120, (r - g) * 60 / safe + 240),
    )
    h = torch.where(h < 0, h + 360, h)
    h = torch.where(has, h, torch.zeros_like(h))
    s = torch.where(has, s, torch.zeros_like(s))
    out = torch.stack([h * 0.5, lum * 255, s * 255], 1)
    return torch.floor(out + 0.5).clamp_(0, 255)


def _hls_to_rgb_cv2(hls: torch.Tensor) -> torch.Tensor:
    """float HLS (OpenCV 8-bit ranges) → uint8 RGB NCHW."""
    h = hls[:, 0:1] * 2.0
    lum = hls[:, 1:2] / 255.0
    s = hls[:, 2:3] / 255.0
    a = s * torch.minimum(lum, 1 - lum)
    n_ = torch.tensor([0.0, 8.0, 4.0], device=hls.device).view(1, 3, 1, 1)
    k = torch.remainder(n_ + h / 30.0, 12.0)
    rgb = lum - a * torch.clamp(torch.minimum(k - 3, 9 - k), -1, 1)
    return to_uint8(rgb * 255.0)


@register_batch_op("iaa_hue_saturation", exact=False)
def hue_saturation(
    images: torch.Tensor, *, seeds: torch.Tensor, value_hue=0, value_saturation=0
) -> torch.Tensor:
    """imgaug AddToHueAndSaturation: integer hue shift (mod 180, OpenCV hue units) and saturation
    shift (clipped 0..255) per image, each uniform over ``[lo, hi]`` inclusive."""
    hsv = _rgb_to_hsv_cv2(images)
    # imgaug projects the -255..255 hue value onto OpenCV's 180-step circle, truncating.
    dh = torch.trunc(rng.per_image_int(seeds, value_hue, stream=1) / 255.0 * 180.0).view(-1, 1, 1)
    ds = rng.per_image_int(seeds, value_saturation, stream=2).view(-1, 1, 1)
    h = torch.remainder(hsv[:, 0] + dh, 180.0)
    s = (hsv[:, 1] + ds).clamp(0, 255)
    return _hsv_to_rgb_cv2(torch.stack([h, s, hsv[:, 2]], 1))


@register_batch_op("iaa_fast_snowy_landscape", exact=True)
def fast_snowy_landscape(
    images: torch.Tensor,
    *,
    seeds: torch.Tensor,
    lightness_threshold=(100, 255),
    lightness_multiplier=(1.0, 4.0),
) -> torch.Tensor:
    """imgaug FastSnowyLandscape: HLS lightness below ``lightness_threshold`` (0..255) times
    ``lightness_multiplier``, rounded and clipped, back to RGB."""
    hls = _rgb_to_hls_cv2(images)
    t = rng.per_image(seeds, lightness_threshold, stream=1).view(-1, 1, 1)
    m = rng.per_image(seeds, lightness_multiplier, stream=2).view(-1, 1, 1)
    lum = hls[:, 1]
    lum = torch.where(lum < t, torch.round(lum * m).clamp(0, 255), lum)
    return _hls_to_rgb_cv2(torch.stack([hls[:, 0], lum, hls[:, 2]], 1))


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
    s = rng.per_image(seeds, scale, stream=1).view(-1, 1, 1, 1)
    mu = rng.per_image(seeds, loc, stream=2).view(-1, 1, 1, 1)
    noise = rng.normal(seeds, shape, stream=3) * s + mu
    return to_uint8(_f(images) + noise)


@register_batch_op("iaa_dropout", exact=False)
def dropout(images: torch.Tensor, *, seeds: torch.Tensor, p=0.0, per_channel: bool = False) -> torch.Tensor:
    """Set each pixel (all channels) to 0 with probability ``p`` (per image if ``[lo, hi]``)."""
    shape = tuple(images.shape[1:]) if per_channel else _pixel_shape(images)
    prob = rng.per_image(seeds, p, stream=1).view(-1, 1, 1, 1)
    drop = rng.uniform(seeds, shape, stream=2) < prob
    return torch.where(drop, torch.zeros_like(images), images)


@register_batch_op("iaa_salt", exact=False)
def salt(images: torch.Tensor, *, seeds: torch.Tensor, p=0.0, per_channel: bool = False) -> torch.Tensor:
    """Replace each pixel with probability ``p`` by salt ``255 (|b - 1/2| + 1/2)``, b ~ Beta(1/2, 1/2)
    (imgaug Salt; the arcsine law: b = sin²(π u / 2)), truncated to uint8."""
    shape = tuple(images.shape[1:]) if per_channel else _pixel_shape(images)
    prob = rng.per_image(seeds, p, stream=1).view(-1, 1, 1, 1)
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
    return to_uint8(_f(images) * factor)


@register_batch_op("iaa_cutout", exact=False)
def cutout(
    images: torch.Tensor, *, seeds: torch.Tensor, nb_iterations=1, size=0.2, cval=128, squared: bool = True
) -> torch.Tensor:
    """imgaug Cutout (position uniform, constant fill): ``nb_iterations`` squares of side
    ``size`` x image height centred at uniform positions, filled with ``cval`` (0..255)."""
    n, _, h, w = images.shape
    k_max = int(max(nb_iterations)) if isinstance(nb_iterations, list | tuple) else int(nb_iterations)
    k = rng.per_image_int(seeds, nb_iterations, stream=1).view(n, 1)
    pos = rng.uniform(seeds, (k_max, 2), stream=2)
    sz = rng.per_image(seeds, size, stream=3).view(n, 1)
    sz_w = sz * h / w if squared else rng.per_image(seeds, size, stream=4).view(n, 1)
    px, py = pos[..., 0], pos[..., 1]
    y1 = torch.trunc((py - sz / 2) * h).clamp(0, h)
    y2 = torch.trunc((py + sz / 2) * h).clamp(0, h)
    x1 = torch.trunc((px - sz_w / 2) * w).clamp(0, w)
    x2 = torch.trunc((px + sz_w / 2) * w).clamp(0, w)
    active = torch.arange(k_max, device=images.device).view(1, k_max) < k
    ys = torch.arange(h, device=images.device, dtype=torch.float32).view(1, 1, h, 1)
    xs = torch.arange(w, device=images.device, dtype=torch.float32).view(1, 1, 1, w)
    inside = (
        (ys >= y1[..., None, None])
        & (ys < y2[..., None, None])
        & (xs >= x1[..., None, None])
        & (xs < x2[..., None, None])
        & active[..., None, None]
    ).any(1, keepdim=True)
    fill = torch.full_like(images, int(cval))
    return torch.where(inside, fill, images)


@register_batch_op("iaa_jpeg_compression", exact=False)
def jpeg_compression(images: torch.Tensor, *, seeds: torch.Tensor, compression=50) -> torch.Tensor:
    """JPEG round trip at imgaug's quality ``round(1 + 99 (1 - compression / 101))``.

    Always libjpeg on the host, whatever the device: nvJPEG's encoder quantises differently
    (mean 7 grey levels from libjpeg on an H100), and imgaug's semantics are libjpeg's.
    """
    from torchvision.io import decode_jpeg, encode_jpeg

    comp = rng.per_image(seeds, compression, stream=1)
    quality = torch.clamp(torch.round(1 + 99 * (1 - comp / 101)), 1, 100).to(torch.int64).tolist()
    host = images.cpu()
    out = torch.empty_like(host)
    for q in sorted(set(quality)):
        idx = [i for i, v in enumerate(quality) if v == q]
        encoded = encode_jpeg([host[i].contiguous() for i in idx], quality=q)
        for i, d in zip(idx, decode_jpeg(encoded), strict=True):
            out[i] = d
    return out.to(images.device, non_blocking=True)


# --- geometry ----------------------------------------------------------------------------------


def _pair(value, seeds: torch.Tensor, stream: int) -> tuple[torch.Tensor, torch.Tensor]:
    """An imgaug x/y param: a dict samples x and y apart; a number or range gives both one sample."""
    if isinstance(value, dict):
        return (
            rng.per_image(seeds, value.get("x", 0.0), stream=stream),
            rng.per_image(seeds, value.get("y", 0.0), stream=stream + 1),
        )
    v = rng.per_image(seeds, value, stream=stream)
    return v, v


def _mat(n: int, device, rows) -> torch.Tensor:
    """[n, 3, 3] float64 from a 3x3 nested list of [n] tensors or numbers."""
    out = torch.zeros(n, 3, 3, device=device, dtype=torch.float64)
    for i, row in enumerate(rows):
        for j, v in enumerate(row):
            out[:, i, j] = v if isinstance(v, int | float) else v.to(torch.float64)
    return out


def _translate(n, device, x, y) -> torch.Tensor:
    return _mat(n, device, [[1, 0, x], [0, 1, y], [0, 0, 1]])


def affine_matrix(
    *, h: int, w: int, rotate, shear_x, shear_y, scale_x, scale_y, tx_px, ty_px
) -> torch.Tensor:
    """imgaug's forward (source → output) affine matrix, [n, 3, 3]; angles in degrees.

    Composition as imgaug builds it: centre on the pixel grid, rotate, scale, shear
    (``tanh`` of the angles, as imgaug does), translate, un-centre.
    """
    n, dev = rotate.shape[0], rotate.device
    r = -rotate.double() * _RAD
    c, s = torch.cos(r), torch.sin(r)
    mats = [
        _translate(n, dev, -w / 2, -h / 2),
        _translate(n, dev, 0.5, 0.5),
        _mat(n, dev, [[c, s, 0], [-s, c, 0], [0, 0, 1]]),
        _mat(n, dev, [[scale_x, 0, 0], [0, scale_y, 0], [0, 0, 1]]),
        _mat(
            n,
            dev,
            [
                [1, torch.tanh(-shear_x.double() * _RAD), 0],
                [torch.tanh(shear_y.double() * _RAD), 1, 0],
                [0, 0, 1],
            ],
        ),
        _translate(n, dev, tx_px, ty_px),
        _translate(n, dev, -0.5, -0.5),
        _translate(n, dev, w / 2, h / 2),
    ]
    m = mats[0]
    for nxt in mats[1:]:
        m = nxt @ m
    return m


@register_batch_op("iaa_affine", exact=True)
def affine(
    images: torch.Tensor,
    *,
    seeds: torch.Tensor,
    scale=1.0,
    translate_percent=0.0,
    rotate=0.0,
    shear=0.0,
    cval=0,
    mode: str = "constant",
    order: int = 1,
) -> torch.Tensor:
    """imgaug Affine (cv2 backend): rotate/shear in degrees, scale factor, translate as a fraction
    of the size; each ``[lo, hi]`` drawn per image; bilinear (``order`` 1), constant ``cval`` fill."""
    if mode != "constant" or order != 1:
        raise ValueError("torch affine supports mode='constant', order=1 (imgaug's defaults)")
    n, _, h, w = images.shape
    sx, sy = _pair(scale, seeds, 1)
    tx, ty = _pair(translate_percent, seeds, 3)
    rot = rng.per_image(seeds, rotate, stream=5)
    if isinstance(shear, dict):
        shx, shy = _pair(shear, seeds, 6)
    elif isinstance(shear, list | tuple):
        shx = shy = rng.per_image(seeds, shear, stream=6)
    else:  # a single number shears along x only (imgaug)
        shx, shy = rng.per_image(seeds, shear, stream=6), torch.zeros(n, device=images.device)
    m = affine_matrix(
        h=h, w=w, rotate=rot, shear_x=shx, shear_y=shy, scale_x=sx, scale_y=sy, tx_px=tx * w, ty_px=ty * h
    )
    inv = torch.linalg.inv(m.float().double())  # imgaug composes in float32
    return to_uint8(warp_inverse(_f(images), inv, out_hw=(h, w), cval=float(cval)))


def _homography(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """[n, 3, 3] H with H · src_i ∝ dst_i for four point pairs [n, 4, 2] (getPerspectiveTransform)."""
    n = src.shape[0]
    a = torch.zeros(n, 8, 8, device=src.device, dtype=torch.float64)
    b = torch.zeros(n, 8, device=src.device, dtype=torch.float64)
    x, y = src[..., 0].double(), src[..., 1].double()
    u, v = dst[..., 0].double(), dst[..., 1].double()
    for i in range(4):
        a[:, i, 0], a[:, i, 1], a[:, i, 2] = x[:, i], y[:, i], 1
        a[:, i, 6], a[:, i, 7] = -x[:, i] * u[:, i], -y[:, i] * u[:, i]
        a[:, i + 4, 3], a[:, i + 4, 4], a[:, i + 4, 5] = x[:, i], y[:, i], 1
        a[:, i + 4, 6], a[:, i + 4, 7] = -x[:, i] * v[:, i], -y[:, i] * v[:, i]
        b[:, i], b[:, i + 4] = u[:, i], v[:, i]
    sol, info = torch.linalg.solve_ex(a, b)
    bad = info != 0
    if bool(bad.any()):  # degenerate (collinear) corners at large jitter: least-squares solution
        sol[bad] = (torch.linalg.pinv(a[bad]) @ b[bad].unsqueeze(-1)).squeeze(-1)
    return torch.cat([sol, torch.ones(n, 1, device=src.device, dtype=torch.float64)], 1).view(n, 3, 3)


def perspective_from_jitter(images: torch.Tensor, jitter: torch.Tensor, *, cval: float = 0.0) -> torch.Tensor:
    """imgaug PerspectiveTransform(keep_size=True) for given corner jitter [n, 4, 2] (fractions).

    Corners at ``|jitter| mod 1`` inwards from (tl, tr, br, bl), ordered as imgaug orders them,
    warped onto a ``max_width x max_height`` canvas (bilinear, ``cval`` border), rounded to uint8,
    then resized back with imgaug's keep-size resize (INTER_AREA enlargement / INTER_LINEAR).
    """
    n, _, h, w = images.shape
    dev = images.device
    pts = torch.remainder(jitter.abs().float(), 1.0)
    flip = torch.tensor([[0, 0], [1, 0], [1, 1], [0, 1]], device=dev, dtype=torch.bool)
    pts = torch.where(flip, 1.0 - pts, pts) * torch.tensor([w, h], device=dev, dtype=torch.float32)
    ssum, sdiff = pts.sum(-1), pts[..., 1] - pts[..., 0]
    order = torch.stack([ssum.argmin(1), sdiff.argmin(1), ssum.argmax(1), sdiff.argmax(1)], 1)
    tl, tr, br, bl = (pts.gather(1, order[:, i].view(n, 1, 1).expand(n, 1, 2))[:, 0] for i in range(4))
    ordered = torch.stack([tl, tr, br, bl], 1)
    max_w = torch.maximum((tr - tl).norm(dim=-1), (br - bl).norm(dim=-1)).floor().clamp(min=2)
    max_h = torch.maximum((tr - br).norm(dim=-1), (tl - bl).norm(dim=-1)).floor().clamp(min=2)
    zero = torch.zeros_like(max_w)
    rect = torch.stack(
        [
            torch.stack([zero, zero], -1),
            torch.stack([max_w, zero], -1),
            torch.stack([max_w, max_h], -1),
            torch.stack([zero, max_h], -1),
        ],
        1,
    )
    inv = _homography(rect, ordered)  # output canvas → source pixels
    ch, cw = int(max_h.max().item()), int(max_w.max().item())
    warped = torch.floor(warp_inverse(_f(images), inv, out_hw=(ch, cw), cval=cval) + 0.5).clamp_(0, 255)
    area = (max_h < h) | (max_w < w)
    zi = torch.zeros(n, device=dev, dtype=torch.int64)
    wy = resize_weights(
        canvas=max_h.long(), pad_before=zi, valid=max_h.long(), offset=zi, src_size=ch, dst=h, area=area
    )
    wx = resize_weights(
        canvas=max_w.long(), pad_before=zi, valid=max_w.long(), offset=zi, src_size=cw, dst=w, area=area
    )
    return to_uint8(resize_with(warped, wy, wx))


@register_batch_op("iaa_perspective", exact=True)
def perspective(
    images: torch.Tensor, *, seeds: torch.Tensor, scale=0.0, cval=0, keep_size: bool = True
) -> torch.Tensor:
    """imgaug PerspectiveTransform: corner jitter ~ N(0, scale) as a fraction of the size
    (``[lo, hi]``: scale drawn per image), keep_size resize back."""
    if not keep_size:
        raise ValueError("torch perspective supports keep_size=True only")
    s = rng.per_image(seeds, scale, stream=1).view(-1, 1, 1)
    jitter = rng.normal(seeds, (4, 2), stream=2) * s
    return perspective_from_jitter(images, jitter, cval=float(cval))


def crop_and_pad_px(images: torch.Tensor, px: torch.Tensor, *, pad_cval: float = 0.0) -> torch.Tensor:
    """imgaug CropAndPad(keep_size=True) for signed per-side pixels ``px`` int64 [n, 4] (t, r, b, l).

    Negative crops, positive pads with ``pad_cval``; the canvas is resized back with imgaug's
    keep-size resize (INTER_AREA when a side grows, else INTER_LINEAR), as one pair of matmuls.
    """
    n, _, h, w = images.shape
    crop = torch.clamp(-px, min=0)
    pad = torch.clamp(px, min=0)
    valid_h = h - crop[:, 0] - crop[:, 2]
    valid_w = w - crop[:, 1] - crop[:, 3]
    canvas_h = valid_h + pad[:, 0] + pad[:, 2]
    canvas_w = valid_w + pad[:, 1] + pad[:, 3]
    area = (canvas_h < h) | (canvas_w < w)
    wy = resize_weights(
        canvas=canvas_h, pad_before=pad[:, 0], valid=valid_h, offset=crop[:, 0], src_size=h, dst=h, area=area
    )
    wx = resize_weights(
        canvas=canvas_w, pad_before=pad[:, 3], valid=valid_w, offset=crop[:, 3], src_size=w, dst=w, area=area
    )
    return to_uint8(resize_with(_f(images), wy, wx, cval=float(pad_cval)))


def _side_px(images: torch.Tensor, seeds: torch.Tensor, percent) -> torch.Tensor:
    """Per-side (t, r, b, l) fractions from U(lo, hi) → pixels, float32 size x fraction, half-even."""
    n, _, h, w = images.shape
    if isinstance(percent, list | tuple):
        lo, hi = float(percent[0]), float(percent[1])
        frac = lo + (hi - lo) * rng.uniform(seeds, (4,), stream=1)
    else:
        frac = torch.full((n, 4), float(percent), device=images.device)
    sizes = torch.tensor([h, w, h, w], device=images.device, dtype=torch.float32)
    return torch.round(sizes * frac).to(torch.int64)


@register_batch_op("iaa_crop", exact=False)
def crop(images: torch.Tensor, *, seeds: torch.Tensor, percent) -> torch.Tensor:
    """imgaug Crop(percent, keep_size=True): each side loses U(lo, hi) of the size, resized back."""
    return crop_and_pad_px(images, -_side_px(images, seeds, percent))


@register_batch_op("iaa_crop_and_pad", exact=False)
def crop_and_pad(
    images: torch.Tensor, *, seeds: torch.Tensor, percent, pad_mode: str = "constant", pad_cval: int = 0
) -> torch.Tensor:
    """imgaug CropAndPad(percent, keep_size=True): per side U(lo, hi) of the size, negative crops,
    positive pads with ``pad_cval`` (constant mode), resized back."""
    if pad_mode != "constant":
        raise ValueError("torch crop_and_pad supports pad_mode='constant' only")
    return crop_and_pad_px(images, _side_px(images, seeds, percent), pad_cval=float(pad_cval))
