"""Procedural frost textures: the fallback of the ImageNet-C ``frost`` corruption.

The reference blends crops of five photographs of frosted glass. robusteval does not ship them;
``frost`` reads them from the installed ``imagecorruptions`` package (the ``imagenet-c`` extra)
and uses these textures only when it is absent (with a warning and its own spec hash). Each
texture here is drawn from a fixed seed: fern-like ice
dendrites (a stem with side branches at about ±60° that shorten towards the tip, as in frost
crystals) over hazy, low-frequency "glass", tinted and scaled so that every texture has the size
and the per-channel mean and spread (RGB, 0..255) of the photograph it stands in for. Those
numbers are the only things taken from the reference textures; the images differ, so frost
results are close to, not identical with, released ImageNet-C.

Textures are a pure function of their index (fixed seeds, numpy ``RandomState``), built once per
process and cached.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np


@dataclass(frozen=True)
class FrostStyle:
    """How one texture looks: size (H, W) px, per-channel target mean/std, crystal scale."""

    size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    seed: int
    crystal_len: tuple[float, float]  # big dendrite stem length range, px
    density: float  # big dendrites per 10,000 px²
    haze: float  # weight of the low-frequency glass haze


# Sizes and per-channel statistics of the reference textures frost1..frost5 (the reference draws
# one of the first five); frost2 and frost3 decode to the same pixels there, here they differ.
FROST_STYLES: tuple[FrostStyle, ...] = (
    FrostStyle((600, 900), (77.7, 149.1, 165.7), (26.9, 16.5, 15.3), 101, (20, 70), 4.0, 0.9),
    FrostStyle((315, 560), (200.8, 205.4, 214.5), (21.4, 22.1, 22.6), 202, (25, 90), 7.0, 0.3),
    FrostStyle((315, 560), (200.8, 205.4, 214.5), (21.4, 22.1, 22.6), 303, (30, 110), 6.0, 0.3),
    FrostStyle((350, 527), (137.6, 152.8, 165.2), (28.5, 28.5, 29.9), 404, (10, 40), 12.0, 0.4),
    FrostStyle((495, 660), (112.4, 123.4, 134.8), (44.4, 43.3, 41.7), 505, (40, 160), 2.5, 0.6),
)


def _segments(
    rng: np.random.RandomState, h: int, w: int, n: int, length: tuple[float, float]
) -> tuple[np.ndarray, ...]:
    """Stems and side branches of ``n`` dendrites: arrays x0, y0, angle, length, brightness."""
    x0 = rng.uniform(-0.1 * w, 1.1 * w, n)
    y0 = rng.uniform(-0.1 * h, 1.1 * h, n)
    theta = rng.uniform(0, 2 * np.pi, n)
    lo, hi = np.log(length[0]), np.log(length[1])
    stem = np.exp(rng.uniform(lo, hi, n))
    spacing = rng.uniform(2.5, 5.0, n)
    spread = np.deg2rad(rng.uniform(50, 70, n))
    ratio = rng.uniform(0.3, 0.6, n)
    segs = [(x0, y0, theta, stem, np.full(n, 1.0))]
    # Side branches: at every `spacing` px along the stem, one to each side.
    k_max = int(np.ceil((stem / spacing).max()))
    ks = np.arange(1, k_max + 1)
    t = ks[None, :] * spacing[:, None]  # (n, k)
    valid = t < stem[:, None]
    d, k = np.nonzero(valid)
    tt = t[d, k]
    bx = x0[d] + tt * np.cos(theta[d])
    by = y0[d] + tt * np.sin(theta[d])
    blen = (stem[d] - tt) * ratio[d] * rng.uniform(0.7, 1.3, d.size)
    jitter = np.deg2rad(rng.uniform(-8, 8, d.size))
    for sign in (-1.0, 1.0):
        segs.append((bx, by, theta[d] + sign * spread[d] + jitter, blen, np.full(d.size, 0.75)))
    return tuple(np.concatenate(parts) for parts in zip(*segs, strict=True))


def _rasterize(h: int, w: int, segs: tuple[np.ndarray, ...], step: float = 0.5) -> np.ndarray:
    """Accumulate segments into an (h, w) float canvas, sampling every ``step`` px."""
    x0, y0, ang, length, val = segs
    counts = np.maximum(1, np.ceil(length / step).astype(np.int64) + 1)
    seg = np.repeat(np.arange(x0.size), counts)
    start = np.repeat(np.cumsum(counts) - counts, counts)
    t = (np.arange(seg.size) - start) * step
    xs = np.rint(x0[seg] + t * np.cos(ang[seg])).astype(np.int64)
    ys = np.rint(y0[seg] + t * np.sin(ang[seg])).astype(np.int64)
    inside = (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h)
    canvas = np.zeros(h * w)
    np.maximum.at(canvas, ys[inside] * w + xs[inside], val[seg][inside])
    return canvas.reshape(h, w)


def _normalise(a: np.ndarray) -> np.ndarray:
    return (a - a.mean()) / (a.std() + 1e-12)


def _low_frequency(rng: np.random.RandomState, h: int, w: int, cell: float) -> np.ndarray:
    """Smooth noise with features about ``cell`` px across (a coarse grid, bicubic-upsampled)."""
    from PIL import Image

    gh, gw = int(np.ceil(h / cell)) + 1, int(np.ceil(w / cell)) + 1
    grid = Image.fromarray(rng.standard_normal((gh, gw)).astype(np.float32), mode="F")
    return _normalise(np.asarray(grid.resize((w, h), Image.BICUBIC), dtype=np.float64))


@cache
def frost_texture(index: int) -> np.ndarray:
    """Texture ``index`` (0..4) as a read-only uint8 HWC RGB array of ``FROST_STYLES[index].size``."""
    from scipy.ndimage import gaussian_filter

    style = FROST_STYLES[index]
    h, w = style.size
    rng = np.random.RandomState(style.seed)
    n_big = int(style.density * h * w / 10_000)
    big = _rasterize(h, w, _segments(rng, h, w, n_big, style.crystal_len))
    small = _rasterize(h, w, _segments(rng, h, w, 6 * n_big, (3.0, style.crystal_len[0])))
    crystals = np.clip(big + 0.7 * small, 0, 1)
    lines = gaussian_filter(crystals, 0.6)
    glow = gaussian_filter(crystals, 3.0)
    haze = _low_frequency(rng, h, w, min(h, w) / 4)
    grain = _normalise(gaussian_filter(rng.standard_normal((h, w)), 0.8))
    intensity = _normalise(lines) + 0.8 * _normalise(glow) + style.haze * haze + 0.25 * grain
    # A slow colour drift per channel so the channels are not perfect copies of each other.
    out = np.empty((h, w, 3))
    for c in range(3):
        drift = _low_frequency(rng, h, w, min(h, w) / 3)
        chan = _normalise(intensity + 0.15 * drift)
        out[..., c] = chan * style.std[c] + style.mean[c]
    tex = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    tex.setflags(write=False)
    return tex
