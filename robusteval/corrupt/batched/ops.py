"""Batched torch versions of the study21 imgaug transformations, for on-the-fly scoring.

Each op is registered in :data:`robusteval.corrupt.batched.BATCH_OPS` under the spec's op name
(``iaa_<set>``) as ``fn(images, *, seeds, **params) -> images``: ``images`` uint8 NCHW RGB on any
device (never modified in place), ``seeds`` int64 [n] (one per image), ``params`` the set's
params at a severity, with imgaug's meaning (see :mod:`robusteval.corrupt.reference.study`).

Deterministic ops follow imgaug's arithmetic (OpenCV rounding, lookup-table truncation, reflect-101
borders, libjpeg's integer codec) and match its output to within a grey level. Random ops draw their
randomness from a counter-based hash of the per-image seed
(:mod:`robusteval.corrupt.batched.rng`), so they match imgaug in distribution, not pixel for
pixel; the tests state the tolerances.

Speed: every op is batch-wide. Per-image parameters are [n] device tensors, geometry is one
``grid_sample`` per batch (:mod:`robusteval.corrupt.batched.geometry`), blurs are matmuls with
banded matrices, and nothing in a call waits on the host (no ``.item()``/``.tolist()``, no
host-to-device copies: small constants are cached per device). The number of kernels per call does
not grow with the batch, which is what makes large GPU batches fast. The one exception is
``jpeg_compression`` on the CPU, which uses the host's libjpeg (faster there than the tensor codec,
and the same bytes).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from robusteval.corrupt.batched import jpeg as torch_jpeg
from robusteval.corrupt.batched import register_batch_op, rng
from robusteval.corrupt.batched.geometry import (
    affine_grid_px,
    const,
    device_cached,
    hypot_floor,
    mesh_grid,
    mesh_tables,
    projective_grid_px,
    reflect101,
    resize_coords,
    round_half_even_uint8,
    sample,
    separable_grid,
    to_uint8,
)

_RAD = math.pi / 180.0


def _f(images: torch.Tensor) -> torch.Tensor:
    return images.to(torch.float32)


def _col(x: torch.Tensor) -> torch.Tensor:
    """[n] → [n, 1, 1, 1], to broadcast a per-image value over NCHW."""
    return x.view(-1, 1, 1, 1)


# --- deterministic pixel ops ------------------------------------------------------------------


@register_batch_op("iaa_fliplr", exact=True)
def fliplr(images: torch.Tensor, *, seeds: torch.Tensor, p: float = 1.0) -> torch.Tensor:
    """Mirror left-right with probability ``p`` per image (uint8 NCHW)."""
    if p >= 1:  # every image (imgaug's Binomial(1)): no draw needed
        return images.flip(-1)
    flip = _col(rng.uniform(seeds, (1,), stream=1)) < p
    return torch.where(flip, images.flip(-1), images)


@register_batch_op("iaa_invert", exact=True)
def invert(images: torch.Tensor, *, seeds: torch.Tensor, p: float = 1.0) -> torch.Tensor:
    """v → 255 - v with probability ``p`` per image (uint8 NCHW)."""
    if p >= 1:
        return 255 - images
    flip = _col(rng.uniform(seeds, (1,), stream=1)) < p
    return torch.where(flip, 255 - images, images)


def _gray(images: torch.Tensor) -> torch.Tensor:
    """OpenCV RGB2GRAY on uint8: fixed-point 0.299 R + 0.587 G + 0.114 B, rounded. int32 [n,1,h,w]."""
    x = images.to(torch.int32)
    y = x[:, 0:1] * 4899 + x[:, 1:2] * 9617 + x[:, 2:3] * 1868
    return (y + 8192) >> 14


@register_batch_op("iaa_grayscale", exact=True)
def grayscale(images: torch.Tensor, *, seeds: torch.Tensor, alpha=1.0) -> torch.Tensor:
    """Blend towards greyscale with opacity ``alpha`` (0..1, or [lo, hi] per image)."""
    a = _col(rng.per_image(seeds, alpha, stream=1))
    gray = _gray(images).to(torch.float32).expand_as(images)
    return to_uint8(a * gray + (1 - a) * _f(images))


@register_batch_op("iaa_multiply", exact=True)
def multiply(images: torch.Tensor, *, seeds: torch.Tensor, mul=1.0) -> torch.Tensor:
    """Every value times ``mul`` (per image), truncated as imgaug's uint8 lookup table does."""
    m = _col(rng.per_image(seeds, mul, stream=1))
    return torch.floor(_f(images) * m).clamp_(0, 255).to(torch.uint8)


@register_batch_op("iaa_linear_contrast", exact=True)
def linear_contrast(images: torch.Tensor, *, seeds: torch.Tensor, alpha=1.0) -> torch.Tensor:
    """v → 127 + alpha (v - 127), clipped and truncated (imgaug's uint8 table; centre int(127.5))."""
    a = _col(rng.per_image(seeds, alpha, stream=1))
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
    return to_uint8(_filter(_f(images), kernel))


@register_batch_op("iaa_edge_detect", exact=True)
def edge_detect(images: torch.Tensor, *, seeds: torch.Tensor, alpha=0.75) -> torch.Tensor:
    """imgaug EdgeDetect: 4-neighbour Laplacian kernel blended with identity by ``alpha``."""
    a = rng.per_image(seeds, alpha, stream=1)
    lap = const([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]], images.device)
    return to_uint8(_filter(_f(images), _blend_kernel(lap, a)))


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
        return to_uint8(torch.matmul(ky, torch.matmul(_f(images), kx.T)))
    s = rng.per_image(seeds, sigma, stream=1)
    radius = _blur_radius(sigma)
    ky = _blur_matrices(s, h, radius).unsqueeze(1)  # [n, 1, h, h]
    kx = _blur_matrices(s, w, radius).unsqueeze(1)
    return to_uint8(torch.matmul(ky, torch.matmul(_f(images), kx.transpose(-1, -2))))


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
    noise = rng.normal(seeds, shape, stream=3) * _col(s) + _col(mu)
    return to_uint8(_f(images) + noise)


@register_batch_op("iaa_dropout", exact=False)
def dropout(images: torch.Tensor, *, seeds: torch.Tensor, p=0.0, per_channel: bool = False) -> torch.Tensor:
    """Set each pixel (all channels) to 0 with probability ``p`` (per image if ``[lo, hi]``)."""
    shape = tuple(images.shape[1:]) if per_channel else _pixel_shape(images)
    prob = _col(rng.per_image(seeds, p, stream=1))
    drop = rng.uniform(seeds, shape, stream=2) < prob
    return torch.where(drop, torch.zeros_like(images), images)


@register_batch_op("iaa_salt", exact=False)
def salt(images: torch.Tensor, *, seeds: torch.Tensor, p=0.0, per_channel: bool = False) -> torch.Tensor:
    """Replace each pixel with probability ``p`` by salt ``255 (|b - 1/2| + 1/2)``, b ~ Beta(1/2, 1/2)
    (imgaug Salt; the arcsine law: b = sin²(π u / 2)), truncated to uint8."""
    shape = tuple(images.shape[1:]) if per_channel else _pixel_shape(images)
    prob = _col(rng.per_image(seeds, p, stream=1))
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


# --- geometry ----------------------------------------------------------------------------------


def _axis_pair(value) -> tuple[object, object]:
    """An imgaug x/y param: a dict gives x and y their own values (drawn apart), anything else is
    one value for both axes (the caller shares one sample)."""
    if isinstance(value, dict):
        return value.get("x", 0.0), value.get("y", 0.0)
    return value, value


def affine_inverse(
    *, h: int, w: int, rotate, shear_x, shear_y, scale_x, scale_y, tx_px, ty_px
) -> torch.Tensor:
    """float64 [n, 2, 3]: output pixel → source pixel map of imgaug's Affine (cv2 backend).

    imgaug builds the forward (source → output) matrix as: centre the pixel grid at
    ``c = (w/2 - 1/2, h/2 - 1/2)``, rotate (``-rotate`` degrees in its y-down frame), scale, shear
    (``tanh`` of the angles, as imgaug does), translate, un-centre: ``p' = L (p - c) + t + c`` with
    ``L = Shear · Scale · Rot``. It composes in float32, so the forward matrix is rounded to
    float32 before it is inverted (in float64, closed form for the 2x2 part).
    """
    r = -rotate.to(torch.float64) * _RAD
    cos, sin = torch.cos(r), torch.sin(r)
    sx, sy = scale_x.to(torch.float64), scale_y.to(torch.float64)
    kx = torch.tanh(-shear_x.to(torch.float64) * _RAD)
    ky = torch.tanh(shear_y.to(torch.float64) * _RAD)
    # Scale · Rot = [[sx cos, sx sin], [-sy sin, sy cos]]; then Shear = [[1, kx], [ky, 1]].
    a = sx * cos - kx * sy * sin
    b = sx * sin + kx * sy * cos
    c = ky * sx * cos - sy * sin
    d = ky * sx * sin + sy * cos
    cx, cy = w / 2 - 0.5, h / 2 - 0.5
    ox = tx_px.to(torch.float64) + cx - (a * cx + b * cy)
    oy = ty_px.to(torch.float64) + cy - (c * cx + d * cy)
    fwd = torch.stack([a, b, ox, c, d, oy], 1).float().double()  # imgaug's float32 matrix
    a, b, ox, c, d, oy = fwd.unbind(1)
    det = a * d - b * c
    ia, ib, ic, id_ = d / det, -b / det, -c / det, a / det
    return torch.stack(
        [torch.stack([ia, ib, -(ia * ox + ib * oy)], 1), torch.stack([ic, id_, -(ic * ox + id_ * oy)], 1)], 1
    )


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
    of the size; each ``[lo, hi]`` drawn per image; bilinear (``order`` 1), constant ``cval`` fill.

    One uniform draw for all parameters, a closed-form 2x3 inverse per image, one grid_sample.
    """
    if mode != "constant" or order != 1:
        raise ValueError("torch affine supports mode='constant', order=1 (imgaug's defaults)")
    n, _, h, w = images.shape
    scx, scy = _axis_pair(scale)
    tx, ty = _axis_pair(translate_percent)
    if isinstance(shear, dict):
        shx, shy = _axis_pair(shear)
    else:  # a range shears both axes by one sample; a single number shears along x only (imgaug)
        shx, shy = shear, 0.0
    sx, sy, dx, dy, rot, kx, ky = rng.per_image_params(seeds, [scx, scy, tx, ty, rotate, shx, shy], stream=1)
    # Non-dict params are one sample for both axes: reuse the x column.
    if not isinstance(scale, dict):
        sy = sx
    if not isinstance(translate_percent, dict):
        dy = dx
    if isinstance(shear, list | tuple):
        ky = kx
    inv = affine_inverse(
        h=h, w=w, rotate=rot, shear_x=kx, shear_y=ky, scale_x=sx, scale_y=sy, tx_px=dx * w, ty_px=dy * h
    )
    grid = affine_grid_px(inv, out_hw=(h, w), in_hw=(h, w))
    return to_uint8(sample(_f(images), grid, cval=float(cval)))


def _homography(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """[n, 3, 3] H with H · src_i ∝ dst_i for four point pairs [n, 4, 2] (getPerspectiveTransform).

    Batched LU solve without error checks (no host sync); degenerate (collinear) corners, where LU
    fails, fall back to a slightly damped least-squares solve, chosen per image on the device.
    """
    n = src.shape[0]
    x, y = src[..., 0].double(), src[..., 1].double()
    u, v = dst[..., 0].double(), dst[..., 1].double()
    one, zero = torch.ones_like(x), torch.zeros_like(x)
    rows_u = torch.stack([x, y, one, zero, zero, zero, -x * u, -y * u], -1)
    rows_v = torch.stack([zero, zero, zero, x, y, one, -x * v, -y * v], -1)
    a = torch.cat([rows_u, rows_v], 1)  # [n, 8, 8]
    b = torch.cat([u, v], 1).unsqueeze(-1)
    sol, info = torch.linalg.solve_ex(a, b)
    at = a.transpose(1, 2)
    ata = at @ a
    damp = 1e-12 * ata.diagonal(dim1=1, dim2=2).sum(-1).view(n, 1, 1)
    eye = torch.eye(8, device=a.device, dtype=a.dtype)
    lsq, _ = torch.linalg.solve_ex(ata + damp * eye, at @ b)
    ok = (info == 0).view(n, 1, 1) & torch.isfinite(sol).all(1, keepdim=True)
    sol = torch.where(ok, sol, lsq).squeeze(-1)
    return torch.cat([sol, torch.ones(n, 1, device=src.device, dtype=torch.float64)], 1).view(n, 3, 3)


def perspective_from_jitter(images: torch.Tensor, jitter: torch.Tensor, *, cval: float = 0.0) -> torch.Tensor:
    """imgaug PerspectiveTransform(keep_size=True) for given corner jitter [n, 4, 2] (fractions).

    Corners at ``|jitter| mod 1`` inwards from (tl, tr, br, bl), ordered as imgaug orders them,
    warped onto a ``max_width x max_height`` canvas (bilinear, ``cval`` border), rounded to uint8,
    then resized back with imgaug's keep-size resize (INTER_AREA enlargement / INTER_LINEAR).

    Batched with static shapes: every image's canvas sits in the top-left corner of one buffer as
    large as any canvas can be (the image diagonal), and the resize back reads only the image's
    own canvas (taps are clamped into it), so the result equals the per-image two-step pipeline.
    """
    n, _, h, w = images.shape
    dev = images.device
    pts = torch.remainder(jitter.abs().float(), 1.0)
    flip = const([[0, 0], [1, 0], [1, 1], [0, 1]], dev, torch.bool)
    pts = torch.where(flip, 1.0 - pts, pts) * const([float(w), float(h)], dev)
    ssum, sdiff = pts.sum(-1), pts[..., 1] - pts[..., 0]
    order = torch.stack([ssum.argmin(1), sdiff.argmin(1), ssum.argmax(1), sdiff.argmax(1)], 1)
    ordered = pts.gather(1, order.unsqueeze(-1).expand(n, 4, 2))
    tl, tr, br, bl = ordered.unbind(1)
    side = hypot_floor(h, w)
    max_w = torch.maximum((tr - tl).norm(dim=-1), (br - bl).norm(dim=-1)).floor().clamp(2, side)
    max_h = torch.maximum((tr - br).norm(dim=-1), (tl - bl).norm(dim=-1)).floor().clamp(2, side)
    zero = torch.zeros_like(max_w)
    rect = torch.stack([zero, zero, max_w, zero, max_w, max_h, zero, max_h], 1).view(n, 4, 2)
    inv = _homography(rect, ordered)  # canvas pixel → source pixel
    grid = projective_grid_px(inv, out_hw=(side, side), in_hw=(h, w))
    canvas = sample(_f(images), grid, cval=cval).add_(0.5).floor_().clamp_(0, 255)  # warp's uint8
    area = (max_h < h) | (max_w < w)
    zi = torch.zeros(n, device=dev, dtype=torch.int64)
    hh, ww = max_h.long(), max_w.long()
    gy = resize_coords(canvas=hh, pad_before=zi, valid=hh, offset=zi, dst=h, area=area)
    gx = resize_coords(canvas=ww, pad_before=zi, valid=ww, offset=zi, dst=w, area=area)
    return to_uint8(sample(canvas, separable_grid(gx, gy, in_hw=(side, side))))


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
    keep-size resize (INTER_AREA when a side grows, else INTER_LINEAR). Crop, pad and resize are
    one separable sampling grid, so the whole batch is a single grid_sample.
    """
    n, _, h, w = images.shape
    crop = torch.clamp(-px, min=0)
    pad = torch.clamp(px, min=0)
    valid_h = h - crop[:, 0] - crop[:, 2]
    valid_w = w - crop[:, 1] - crop[:, 3]
    canvas_h = valid_h + pad[:, 0] + pad[:, 2]
    canvas_w = valid_w + pad[:, 1] + pad[:, 3]
    area = (canvas_h < h) | (canvas_w < w)
    gy = resize_coords(
        canvas=canvas_h, pad_before=pad[:, 0], valid=valid_h, offset=crop[:, 0], dst=h, area=area
    )
    gx = resize_coords(
        canvas=canvas_w, pad_before=pad[:, 3], valid=valid_w, offset=crop[:, 3], dst=w, area=area
    )
    grid = separable_grid(gx, gy, in_hw=(h, w))
    return to_uint8(sample(_f(images), grid, cval=float(pad_cval)))


def _side_px(images: torch.Tensor, seeds: torch.Tensor, percent) -> torch.Tensor:
    """Per-side (t, r, b, l) fractions from U(lo, hi) → pixels, float32 size x fraction, half-even."""
    n, _, h, w = images.shape
    if isinstance(percent, list | tuple):
        lo, hi = float(percent[0]), float(percent[1])
        frac = lo + (hi - lo) * rng.uniform(seeds, (4,), stream=1)
    else:
        frac = torch.full((n, 4), float(percent), device=images.device)
    sizes = const([float(h), float(w), float(h), float(w)], images.device)
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


def piecewise_jitter(seeds: torch.Tensor, scale, *, rows: int, cols: int) -> torch.Tensor:
    """float32 [n, rows*cols, 2]: imgaug's control-point jitter (dy, dx) as fractions of the
    height and width, N(0, ``scale``) per coordinate; ``scale`` a number or ``[lo, hi]`` (one
    value per image, as imgaug draws it per call)."""
    s = rng.per_image(seeds, scale, stream=1).view(-1, 1, 1)
    return rng.normal(seeds, (rows * cols, 2), stream=2) * s


def piecewise_affine_from_jitter(
    images: torch.Tensor, jitter: torch.Tensor, *, rows: int, cols: int, cval: float = 0.0
) -> torch.Tensor:
    """imgaug PiecewiseAffine for given control-point jitter [n, rows*cols, 2] (dy, dx fractions).

    Points at ``linspace(0, H, rows) x linspace(0, W, cols)`` move by jitter times (H, W), clipped
    into ``[0, H-1] x [0, W-1]``; output pixel p samples the input at the image of p under the
    triangle-wise affine map sending the grid onto the moved points (qhull's Delaunay triangles of
    the grid, as scikit-image uses): a piecewise-linear displacement field, built for the whole
    batch by :func:`~robusteval.corrupt.batched.geometry.mesh_grid`. Bilinear, ``cval`` outside,
    rounded half to even (scikit-image's float64 → imgaug's uint8). An image whose jitter has no
    positive component is returned unchanged, as imgaug does.
    """
    n, _, h, w = images.shape
    if h <= 1 or w <= 1:  # imgaug leaves degenerate images alone (qhull cannot triangulate them)
        return images.clone()
    dev = images.device
    points = mesh_tables(h, w, rows, cols, dev)[3]  # [K, (x, y)] px
    moved = points + jitter.flip(-1) * const([float(w), float(h)], dev)
    moved = torch.minimum(moved.clamp(min=0.0), const([float(w - 1), float(h - 1)], dev))
    grid = mesh_grid(moved - points, h=h, w=w, rows=rows, cols=cols)
    out = round_half_even_uint8(sample(_f(images), grid, cval=cval))
    warped = (jitter > 0).flatten(1).any(1).view(n, 1, 1, 1)
    return torch.where(warped, out, images)


@register_batch_op("iaa_piecewise_affine", exact=False)
def piecewise_affine(
    images: torch.Tensor,
    *,
    seeds: torch.Tensor,
    scale=0.0,
    nb_rows: int = 4,
    nb_cols: int = 4,
    order: int = 1,
    cval=0,
    mode: str = "constant",
    absolute_scale: bool = False,
) -> torch.Tensor:
    """imgaug PiecewiseAffine (scikit-image's piecewise-affine warp), batched.

    ``scale``: std of the control-point jitter as a fraction of the image height (rows) and
    width (columns), a number or ``[lo, hi]`` drawn per image; ``nb_rows``/``nb_cols`` (≥ 2,
    fixed ints as in the study's ladders): the grid of control points; ``cval`` (0..255): fill
    outside the image. See :func:`piecewise_affine_from_jitter` for the warp.
    """
    if order != 1 or mode != "constant" or absolute_scale:
        raise ValueError("torch piecewise_affine supports order=1, mode='constant', relative scale")
    if isinstance(nb_rows, list | tuple) or isinstance(nb_cols, list | tuple):
        raise ValueError("torch piecewise_affine needs fixed nb_rows and nb_cols (ints)")
    rows, cols = max(int(nb_rows), 2), max(int(nb_cols), 2)  # imgaug clips the grid to >= 2
    jitter = piecewise_jitter(seeds, scale, rows=rows, cols=cols)
    return piecewise_affine_from_jitter(images, jitter, rows=rows, cols=cols, cval=float(cval))
