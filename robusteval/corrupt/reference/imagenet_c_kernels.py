"""Building blocks of the ImageNet-C corruptions, written from their published descriptions.

Every random draw comes from the ``np.random.RandomState`` the caller passes in, in the order the
reference script draws from numpy's global state, so an op seeded with ``s`` reproduces the
reference run after ``np.random.seed(s)`` wherever the reference is itself deterministic.
"""

from __future__ import annotations

import math

import numpy as np


def to_uint8(x01: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] (clipped) to uint8 by truncation, as the reference saver's ``np.uint8``."""
    return (np.clip(x01, 0.0, 1.0) * 255).astype(np.uint8)


# ---------------------------------------------------------------- motion blur (ImageMagick semantics)


def motion_blur_taps(radius: float, sigma: float, angle_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Weights and (dy, dx) offsets of ImageMagick's ``MotionBlurImage`` kernel.

    ImageMagick uses ``width = 2*ceil(radius) + 1`` taps of a one-sided Gaussian
    ``exp(-i²/2σ²)`` (i = 0..width-1, normalised to sum 1), tap ``i`` reading the pixel
    ``(ceil(i·cos θ − ½), ceil(i·sin θ − ½))`` (x right, y down) away: the blur trails on one side.
    """
    width = int(2 * math.ceil(radius) + 1)
    i = np.arange(width, dtype=np.float64)
    weights = np.exp(-(i * i) / (2.0 * sigma * sigma))
    weights /= weights.sum()
    theta = math.radians(angle_deg)
    px, py = width * math.sin(theta), width * math.cos(theta)
    norm = math.hypot(px, py)
    dx = np.ceil(i * py / norm - 0.5).astype(np.int64)
    dy = np.ceil(i * px / norm - 0.5).astype(np.int64)
    return weights, np.stack([dy, dx], axis=1)


def motion_blur_u8(image: np.ndarray, *, radius: float, sigma: float, angle_deg: float) -> np.ndarray:
    """ImageMagick motion blur of uint8 HW or HWC ``image``; edge pixels repeat past the border.

    Sums in 16-bit quantum units (v·257), rounds to a quantum and keeps its high byte (q // 257),
    which is what ImageMagick Q16 then an 8-bit PNG produce (checked bit-exact against IM 6.9).
    """
    weights, offsets = motion_blur_taps(radius, sigma, angle_deg)
    h, w = image.shape[:2]
    pad = int(np.abs(offsets).max())
    spec = ((pad, pad), (pad, pad)) + ((0, 0),) * (image.ndim - 2)
    padded = np.pad(image.astype(np.float64) * 257.0, spec, mode="edge")
    acc = np.zeros(image.shape, dtype=np.float64)
    for wgt, (oy, ox) in zip(weights, offsets, strict=True):
        acc += wgt * padded[pad + oy : pad + oy + h, pad + ox : pad + ox + w]
    quantum = np.clip(np.floor(acc + 0.5), 0, 65535)
    return (quantum // 257).astype(np.uint8)


# ---------------------------------------------------------------- defocus disk


def disk_kernel(radius: float, alias_blur: float) -> np.ndarray:
    """Normalised anti-aliased disk (float32): a 17×17 grid up to radius 8, else (2r+1)², then a
    3×3 (r ≤ 8) or 5×5 Gaussian of σ = ``alias_blur``, as the reference's ``disk``."""
    import cv2

    if radius <= 8:
        grid, ksize = np.arange(-8, 9), (3, 3)
    else:
        r = int(radius)
        grid, ksize = np.arange(-r, r + 1), (5, 5)
    xx, yy = np.meshgrid(grid, grid)
    disk = ((xx**2 + yy**2) <= radius**2).astype(np.float32)
    disk /= disk.sum()
    return cv2.GaussianBlur(disk, ksize=ksize, sigmaX=alias_blur)


# ---------------------------------------------------------------- zoom


def clipped_zoom(img: np.ndarray, zoom: float) -> np.ndarray:
    """Zoom the central ``ceil(size/zoom)`` crop of HWC ``img`` by ``zoom`` (linear spline, scipy's
    ``zoom`` grid) and trim back to the input size, as the reference's ``clipped_zoom``."""
    from scipy.ndimage import zoom as nd_zoom

    h, w = img.shape[:2]
    ch, cw = int(np.ceil(h / zoom)), int(np.ceil(w / zoom))
    top, left = (h - ch) // 2, (w - cw) // 2
    crop = img[top : top + ch, left : left + cw]
    if img.ndim == 2:
        out = nd_zoom(crop, (zoom, zoom), order=1)
    else:  # channel by channel: same values as one 3-D zoom with factor 1 on channels, ~4× faster
        out = np.stack([nd_zoom(crop[..., c], (zoom, zoom), order=1) for c in range(img.shape[2])], axis=-1)
    tt, tl = (out.shape[0] - h) // 2, (out.shape[1] - w) // 2
    return out[tt : tt + h, tl : tl + w]


# ---------------------------------------------------------------- fog: diamond-square plasma


def plasma_fractal(
    rng: np.random.RandomState, *, mapsize: int = 256, wibble_decay: float = 3.0
) -> np.ndarray:
    """Diamond-square height map, ``mapsize``² (a power of two), values in [0, 1].

    Each midpoint is the mean of its four neighbours (periodic) plus ``wibble · U(−wibble, wibble)``,
    ``wibble`` starting at 100 and divided by ``wibble_decay`` per octave: square step, then the two
    diamond sets (rows between, then columns between), drawing in that order.
    """
    if mapsize & (mapsize - 1):
        raise ValueError(f"mapsize must be a power of two, not {mapsize}")
    hmap = np.zeros((mapsize, mapsize), dtype=np.float64)
    step, wibble = mapsize, 100.0

    def jitter(neigh_sum: np.ndarray) -> np.ndarray:
        return neigh_sum / 4 + wibble * rng.uniform(-wibble, wibble, neigh_sum.shape)

    while step >= 2:
        half = step // 2
        corners = hmap[0:mapsize:step, 0:mapsize:step]
        sq = corners + np.roll(corners, -1, axis=0)
        sq = sq + np.roll(sq, -1, axis=1)
        hmap[half:mapsize:step, half:mapsize:step] = jitter(sq)
        centres = hmap[half:mapsize:step, half:mapsize:step]
        corners = hmap[0:mapsize:step, 0:mapsize:step]
        rows = (centres + np.roll(centres, 1, axis=0)) + (corners + np.roll(corners, -1, axis=1))
        hmap[0:mapsize:step, half:mapsize:step] = jitter(rows)
        cols = (centres + np.roll(centres, 1, axis=1)) + (corners + np.roll(corners, -1, axis=0))
        hmap[half:mapsize:step, 0:mapsize:step] = jitter(cols)
        step //= 2
        wibble /= wibble_decay
    hmap -= hmap.min()
    return hmap / hmap.max()


# ---------------------------------------------------------------- glass blur: local pixel swaps


def glass_permutation(
    rng: np.random.RandomState, *, height: int, width: int, max_delta: int, iterations: int
) -> np.ndarray:
    """Flat source index of every output pixel after the reference's local pixel shuffling.

    The reference visits rows ``H−d … d+1`` and, within each, columns ``W−d … d+1`` (both
    descending), draws ``(dx, dy)`` from ``randint(−d, d)`` (so in [−d, d−1]) and runs
    ``x[h, w], x[h', w'] = x[h', w'], x[h, w]`` on a numpy HWC array. The right-hand side holds
    *views*, so the second assignment reads the pixel just overwritten: it is a copy
    ``x[h, w] = x[h+dy, w+dx]``, not a swap, and released ImageNet-C shows exactly that (pixels
    duplicated from neighbours, some lost). Later visits read pixels that earlier ones placed.

    Here the draws are made in one call (numpy's legacy stream is the same as per-pixel calls) and
    the copies are replayed, in order, on a list of pixel indices instead of on pixel rows: the
    same result as the reference, bit for bit, in about 30 ms instead of tens of seconds for 224².
    """
    d = max_delta
    rows = np.arange(height - d, d, -1)
    cols = np.arange(width - d, d, -1)
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    here = (rr * width + cc).ravel()
    src = list(range(height * width))
    for _ in range(iterations):
        draws = rng.randint(-d, d, size=(here.size, 2))
        there = here + draws[:, 1] * width + draws[:, 0]
        for a, b in zip(here.tolist(), there.tolist(), strict=True):
            src[a] = src[b]
    return np.asarray(src, dtype=np.int64)


# ---------------------------------------------------------------- HSV (skimage's conventions)


def rgb_to_hsv(x: np.ndarray) -> np.ndarray:
    """RGB in [0, 1] (..., 3) to HSV in [0, 1], with skimage's conventions and float operations:
    V = max, S = (max − min)/V (0 for grey), H from whichever channel equals V (blue wins ties,
    then green), H = 0 for grey."""
    v = x.max(axis=-1)
    delta = np.ptp(x, axis=-1)
    grey = delta == 0.0
    safe = np.where(grey, 1.0, delta)
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.where(grey, 0.0, delta / np.where(v == 0, 1.0, v))
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    h6 = np.zeros_like(v)
    h6 = np.where(r == v, (g - b) / safe, h6)
    h6 = np.where(g == v, 2.0 + (b - r) / safe, h6)
    h6 = np.where(b == v, 4.0 + (r - g) / safe, h6)
    h = np.where(grey, 0.0, (h6 / 6.0) % 1.0)
    return np.stack([h, s, v], axis=-1)


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_hsv` (sector ``floor(6H) mod 6``, then the usual p, q, t mix)."""
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    hi = np.floor(h * 6)
    f = h * 6 - hi
    p = v * (1 - s)
    q = v * (1 - f * s)
    t = v * (1 - (1 - f) * s)
    sector = hi.astype(np.int64) % 6
    table = np.stack(
        [np.stack(c, axis=-1) for c in ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))]
    )
    return np.take_along_axis(table, sector[None, ..., None].repeat(3, axis=-1), axis=0)[0]
