"""Deterministic pixel and colour ops (flip, invert, grey, contrast, filters, blur, HSV/HLS).

The contract of every op (dtype, seeds, determinism) is in :mod:`robusteval.corrupt.batched`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from robusteval.corrupt.batched import register_batch_op, rng
from robusteval.corrupt.batched.geometry import (
    as_float,
    const,
    device_cached,
    per_image,
    reflect101,
    to_uint8,
)

# --- deterministic pixel ops ------------------------------------------------------------------


@register_batch_op("iaa_fliplr", exact=True)
def fliplr(images: torch.Tensor, *, seeds: torch.Tensor, p: float = 1.0) -> torch.Tensor:
    """Mirror left-right with probability ``p`` per image (uint8 NCHW)."""
    if p >= 1:  # every image (imgaug's Binomial(1)): no draw needed
        return images.flip(-1)
    flip = per_image(rng.uniform(seeds, (1,), stream=1)) < p
    return torch.where(flip, images.flip(-1), images)


@register_batch_op("iaa_invert", exact=True)
def invert(images: torch.Tensor, *, seeds: torch.Tensor, p: float = 1.0) -> torch.Tensor:
    """v → 255 - v with probability ``p`` per image (uint8 NCHW)."""
    if p >= 1:
        return 255 - images
    flip = per_image(rng.uniform(seeds, (1,), stream=1)) < p
    return torch.where(flip, 255 - images, images)


def _gray(images: torch.Tensor) -> torch.Tensor:
    """OpenCV RGB2GRAY on uint8: fixed-point 0.299 R + 0.587 G + 0.114 B, rounded. int32 [n,1,h,w]."""
    x = images.to(torch.int32)
    y = x[:, 0:1] * 4899 + x[:, 1:2] * 9617 + x[:, 2:3] * 1868
    return (y + 8192) >> 14


@register_batch_op("iaa_grayscale", exact=True)
def grayscale(images: torch.Tensor, *, seeds: torch.Tensor, alpha=1.0) -> torch.Tensor:
    """Blend towards greyscale with opacity ``alpha`` (0..1, or [lo, hi] per image)."""
    a = per_image(rng.per_image(seeds, alpha, stream=1))
    gray = _gray(images).to(torch.float32).expand_as(images)
    return to_uint8(a * gray + (1 - a) * as_float(images))


@register_batch_op("iaa_multiply", exact=True)
def multiply(images: torch.Tensor, *, seeds: torch.Tensor, mul=1.0) -> torch.Tensor:
    """Every value times ``mul`` (per image), truncated as imgaug's uint8 lookup table does."""
    m = per_image(rng.per_image(seeds, mul, stream=1))
    return torch.floor(as_float(images) * m).clamp_(0, 255).to(torch.uint8)


@register_batch_op("iaa_linear_contrast", exact=True)
def linear_contrast(images: torch.Tensor, *, seeds: torch.Tensor, alpha=1.0) -> torch.Tensor:
    """v → 127 + alpha (v - 127), clipped and truncated (imgaug's uint8 table; centre int(127.5))."""
    a = per_image(rng.per_image(seeds, alpha, stream=1))
    return torch.floor((127 + a * (as_float(images) - 127)).clamp_(0, 255)).to(torch.uint8)


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
    ident = const([[0.0, 0, 0], [0, 1, 0], [0, 0, 0]], effect.device)
    a = alpha.view(-1, 1, 1)
    return (1 - a) * ident + a * effect


@register_batch_op("iaa_emboss", exact=True)
def emboss(images: torch.Tensor, *, seeds: torch.Tensor, alpha=1.0, strength=1.0) -> torch.Tensor:
    """imgaug Emboss: 3x3 emboss kernel of ``strength`` blended with identity by ``alpha``."""
    a, s = rng.per_image_params(seeds, [alpha, strength], stream=1)
    base = const([[-1.0, 0, 0], [0, 1, 0], [0, 0, 1]], images.device)
    sign = const([[-1.0, -1, 0], [-1, 0, 1], [0, 1, 1]], images.device)
    kernel = _blend_kernel(base + s.view(-1, 1, 1) * sign, a)
    return to_uint8(_filter(as_float(images), kernel))


@register_batch_op("iaa_edge_detect", exact=True)
def edge_detect(images: torch.Tensor, *, seeds: torch.Tensor, alpha=0.75) -> torch.Tensor:
    """imgaug EdgeDetect: 4-neighbour Laplacian kernel blended with identity by ``alpha``."""
    a = rng.per_image(seeds, alpha, stream=1)
    lap = const([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]], images.device)
    return to_uint8(_filter(as_float(images), _blend_kernel(lap, a)))


def _gauss_ksize(sigma: float) -> int:
    """imgaug's kernel size for a sigma (cv2 backend)."""
    k = 3.3 * sigma if sigma < 3.0 else (2.9 * sigma if sigma < 5.0 else 2.6 * sigma)
    k = int(max(k, 5))
    return k + 1 if k % 2 == 0 else k


def _blur_matrices(sigma: torch.Tensor, size: int, radius: int) -> torch.Tensor:
    """float32 [m, size, size]: 1-D Gaussian blur of each sigma (pixels) as a matrix on a line.

    Row ``j`` holds the taps of output ``j`` (imgaug's kernel size for the sigma, normalised in
    float64 as OpenCV does) folded onto the line with reflect-101, so ``x @ K.T`` blurs the last
    axis including the border. ``radius`` bounds every kernel's half-width. Sigmas ≤ 1e-3 give the
    identity (imgaug skips the blur).
    """
    dev = sigma.device
    m = sigma.shape[0]
    s = sigma.to(torch.float64).view(m, 1)
    k = torch.where(s < 3.0, 3.3 * s, torch.where(s < 5.0, 2.9 * s, 2.6 * s)).clamp(min=5.0).floor()
    half = torch.floor(k / 2)  # odd size k' = k or k + 1 has half-width floor(k / 2)
    t = torch.arange(-radius, radius + 1, device=dev, dtype=torch.float64).view(1, -1)
    g = torch.exp(-(t**2) / (2 * s * s)) * (t.abs() <= half)
    g = torch.where(s > 1e-3, g, (t == 0).to(torch.float64))
    g = g / g.sum(1, keepdim=True)
    taps = g.shape[1]
    j = torch.arange(size, device=dev, dtype=torch.int64).view(size, 1)
    idx = reflect101(j + torch.arange(-radius, radius + 1, device=dev).view(1, taps), size)
    mat = torch.zeros(m, size, size, device=dev, dtype=torch.float64)
    mat.scatter_add_(2, idx.expand(m, size, taps), g.view(m, 1, taps).expand(m, size, taps))
    return mat.float()


def _blur_radius(sigma) -> int:
    """Largest kernel half-width over a sigma value or ``[lo, hi]`` range (the size is not monotone)."""
    if not isinstance(sigma, list | tuple):
        return _gauss_ksize(float(sigma)) // 2
    lo, hi = float(sigma[0]), float(sigma[1])
    probes = [lo, hi] + [v for v in (2.9999999, 4.9999999) if lo <= v <= hi]
    return max(_gauss_ksize(v) for v in probes) // 2


@register_batch_op("iaa_gaussian_blur", exact=True)
def gaussian_blur(images: torch.Tensor, *, seeds: torch.Tensor, sigma=1.0) -> torch.Tensor:
    """Separable Gaussian of ``sigma`` pixels (a value, or ``[lo, hi]`` drawn per image),
    imgaug's kernel size, reflect-101 border.

    Each axis is one matmul with a banded blur matrix that already contains the border, so a batch
    costs two GEMMs whatever the sigmas (a fixed sigma's matrices are cached per device).
    """
    n, c, h, w = images.shape
    dev = images.device
    if not isinstance(sigma, list | tuple):
        sig = float(sigma)
        if sig <= 1e-3:
            return images.clone()
        radius = _blur_radius(sig)

        def build(d: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
            s = torch.full((1,), sig, device=d, dtype=torch.float64)
            return _blur_matrices(s, h, radius)[0], _blur_matrices(s, w, radius)[0]

        ky, kx = device_cached(("blur", sig, h, w), dev, build)
        # rows: [n, c, h, w] @ [w, w] folds into one GEMM; columns: [h, h] @ each plane.
        return to_uint8(torch.matmul(ky, torch.matmul(as_float(images), kx.T)))
    s = rng.per_image(seeds, sigma, stream=1)
    radius = _blur_radius(sigma)
    ky = _blur_matrices(s, h, radius).unsqueeze(1)  # [n, 1, h, h]
    kx = _blur_matrices(s, w, radius).unsqueeze(1)
    return to_uint8(torch.matmul(ky, torch.matmul(as_float(images), kx.transpose(-1, -2))))


# --- colour spaces (OpenCV uint8 semantics: H in 0..179) ---------------------------------------

_HSV_SHIFT = 12  # OpenCV's RGB2HSV_b fixed point


def _hsv_div_tables(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """int32 [256] each: OpenCV's ``sdiv_table`` (255·2^12 / v) and ``hdiv_table180``
    (180·2^12 / (6 d)), rounded half to even as its saturate_cast does; entry 0 is 0."""

    def build(dev: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        sdiv = [0] + [round((255 << _HSV_SHIFT) / i) for i in range(1, 256)]
        hdiv = [0] + [round((180 << _HSV_SHIFT) / (6.0 * i)) for i in range(1, 256)]
        return (
            torch.tensor(sdiv, dtype=torch.int32).to(dev),
            torch.tensor(hdiv, dtype=torch.int32).to(dev),
        )

    return device_cached(("hsv_div",), device, build)


def _rgb_to_hsv_cv2(images: torch.Tensor) -> torch.Tensor:
    """uint8 RGB NCHW → int32 HSV [n, 3, h, w] exactly as OpenCV's 8-bit RGB2HSV (H 0..179).

    Integer arithmetic with OpenCV's reciprocal tables, so the result is bit-exact on any device.
    """
    sdiv, hdiv = _hsv_div_tables(images.device)
    x = images.to(torch.int32)
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    v = torch.maximum(torch.maximum(r, g), b)
    diff = v - torch.minimum(torch.minimum(r, g), b)
    half = 1 << (_HSV_SHIFT - 1)
    s = (diff * sdiv[v.long()] + half) >> _HSV_SHIFT
    num = torch.where(v == r, g - b, torch.where(v == g, b - r + 2 * diff, r - g + 4 * diff))
    h = (num * hdiv[diff.long()] + half) >> _HSV_SHIFT  # arithmetic shift: floor, as in C
    h = torch.where(h < 0, h + 180, h)
    return torch.stack([h, s, v], 1)


def _hsv_to_rgb_cv2(hsv: torch.Tensor) -> torch.Tensor:
    """Integer HSV (H 0..179, S and V 0..255) → uint8 RGB NCHW, as OpenCV's 8-bit HSV2RGB: float32
    sector formula (v, v(1-s), v(1-s f), v(1-s(1-f))), ×255, truncated: bit-exact with OpenCV
    on every (H, S, V).

    Truncation, not rounding, is what OpenCV's vectorised path does (its scalar tail rounds); on a
    224x224 image every pixel goes through the vector path, so that is what imgaug produces.
    """
    hh = hsv[:, 0].to(torch.float32) * (6.0 / 180.0)
    s = hsv[:, 1].to(torch.float32) * (1.0 / 255.0)
    v = hsv[:, 2].to(torch.float32) * (1.0 / 255.0)
    sector = torch.floor(hh)
    f = hh - sector
    # OpenCV's build fuses 1 - s·f into one FMA (one rounding): the exact product in float64,
    # rounded once to float32, reproduces it on any device.
    s64 = s.to(torch.float64)
    t2 = v * (1.0 - s64 * f.to(torch.float64)).float()
    t3 = v * (1.0 - s64 * (1.0 - f).to(torch.float64)).float()
    tab = torch.stack([v, v * (1.0 - s), t2, t3], 1)
    # OpenCV's sector_data, as (r, g, b) indices into tab for sectors 0..5.
    pick = const([[0, 3, 1], [2, 0, 1], [1, 0, 3], [1, 2, 0], [3, 1, 0], [0, 1, 2]], hsv.device, torch.int64)
    idx = pick[sector.long().clamp_(0, 5)].permute(0, 3, 1, 2)  # [n, 3, h, w]
    return (torch.gather(tab, 1, idx) * 255.0).clamp_(0, 255).to(torch.uint8)


@register_batch_op("iaa_hue_saturation", exact=False)
def hue_saturation(
    images: torch.Tensor, *, seeds: torch.Tensor, value_hue=0, value_saturation=0
) -> torch.Tensor:
    """imgaug AddToHueAndSaturation: integer hue shift (mod 180, OpenCV hue units) and saturation
    shift (clipped 0..255) per image, each uniform over ``[lo, hi]`` inclusive.

    The colour conversions are bit-exact with OpenCV's, so for given shifts the output is imgaug's.
    """
    dh, ds = rng.per_image_params(seeds, [value_hue, value_saturation], stream=1, integer=[True, True])
    # imgaug projects the -255..255 hue value onto OpenCV's 180-step circle, truncating (float32).
    dh = torch.trunc(dh / 255.0 * 180.0).to(torch.int32).view(-1, 1, 1)
    ds = ds.to(torch.int32).view(-1, 1, 1)
    hsv = _rgb_to_hsv_cv2(images)
    h = torch.remainder(hsv[:, 0] + dh, 180)
    s = (hsv[:, 1] + ds).clamp_(0, 255)
    return _hsv_to_rgb_cv2(torch.stack([h, s, hsv[:, 2]], 1))


def _rgb_to_hls_cv2(images: torch.Tensor) -> torch.Tensor:
    """uint8 RGB NCHW → float32 HLS, OpenCV 8-bit rounding (H 0..179, L and S 0..255)."""
    x = as_float(images) / 255.0
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
    n_ = const([0.0, 8.0, 4.0], hls.device).view(1, 3, 1, 1)
    k = torch.remainder(n_ + h / 30.0, 12.0)
    rgb = lum - a * torch.clamp(torch.minimum(k - 3, 9 - k), -1, 1)
    return to_uint8(rgb * 255.0)


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
    t, m = rng.per_image_params(seeds, [lightness_threshold, lightness_multiplier], stream=1)
    t, m = t.view(-1, 1, 1), m.view(-1, 1, 1)
    lum = hls[:, 1]
    lum = torch.where(lum < t, torch.round(lum * m).clamp(0, 255), lum)
    return _hls_to_rgb_cv2(torch.stack([hls[:, 0], lum, hls[:, 2]], 1))
