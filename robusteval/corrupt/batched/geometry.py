"""Batched geometry for the torch corruptions: sampling grids, OpenCV-style resizes, meshes.

Conventions follow OpenCV and scikit-image (which imgaug calls): pixel ``i`` has its centre at
coordinate ``i``. Every warp here is one ``grid_sample`` over the whole batch: per-image geometry
only changes the grid, built with a handful of elementwise ops whatever the batch size, so the
number of kernels per batch is O(1) and nothing waits on the host. Grids are built elementwise
(not with ``affine_grid``/matmul) so they stay exact float32 even when TF32 matmuls are enabled.

imgaug's ``imresize_single_image`` (used by ``keep_size`` in Crop/CropAndPad/PerspectiveTransform)
picks ``cv2.INTER_AREA`` when either side grows and ``cv2.INTER_LINEAR`` otherwise; OpenCV's
INTER_AREA on enlargement is a two-tap linear interpolation with "area" weights. Both are two taps
per axis, so :func:`resize_coords` turns a per-image resize into one source coordinate per output
row/column whose bilinear sample reproduces OpenCV's weights exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

# (key, device) -> tensor: constants built once per device (small tables, blur matrices, meshes),
# so a hot call never copies from the host (a synchronous H2D copy would stall the stream).
_DEVICE_CACHE: dict[tuple, torch.Tensor | tuple[torch.Tensor, ...]] = {}
_DEVICE_CACHE_MAX = 256


def device_cached(key: tuple, device: torch.device, build: Callable[[torch.device], object]):
    """``build(device)`` once per (``key``, device); later calls return the same tensors."""
    full = (*key, str(device))
    hit = _DEVICE_CACHE.get(full)
    if hit is None:
        if len(_DEVICE_CACHE) >= _DEVICE_CACHE_MAX:
            _DEVICE_CACHE.clear()
        hit = _DEVICE_CACHE[full] = build(device)
    return hit


def const(values, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A small constant tensor (nested lists of numbers) on ``device``, created once."""

    def build(dev: torch.device) -> torch.Tensor:
        return torch.tensor(values, dtype=dtype).to(dev)

    key = ("const", repr(values), str(dtype))
    return device_cached(key, device, build)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Round half away from zero (OpenCV's saturate_cast on non-negative values) and clip to uint8.

    ``(x + 0.5)`` clamped to [0, 255] and truncated by the cast equals ``floor(x + 0.5)`` clipped,
    one pass shorter than an explicit floor.
    """
    return (x + 0.5).clamp_(0, 255).to(torch.uint8)


def round_half_even_uint8(x: torch.Tensor) -> torch.Tensor:
    """``np.round`` (half to even) then clip to uint8: scikit-image/imgaug's float → uint8."""
    return torch.round(x).clamp_(0, 255).to(torch.uint8)


def sample(images: torch.Tensor, grid: torch.Tensor, *, cval: float = 0.0) -> torch.Tensor:
    """Bilinear sample of float ``images`` [n, c, h, w] at normalised ``grid`` [n, H, W, 2].

    Taps outside the source read ``cval`` (OpenCV's BORDER_CONSTANT, scipy's ``grid-constant``).
    """
    if cval:
        out = F.grid_sample(images - cval, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return out.add_(cval)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _norm(size: int) -> tuple[float, float]:
    """(scale, offset) mapping pixel coordinate x to grid_sample's ``(2x + 1) / size - 1``."""
    return 2.0 / size, 1.0 / size - 1.0


def _pixel_axes(out_hw: tuple[int, int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Output pixel x [1, 1, W] and y [1, H, 1] coordinates (float32) for :func:`_plane`."""
    oh, ow = out_hw
    xs = torch.arange(ow, device=device, dtype=torch.float32).view(1, 1, ow)
    ys = torch.arange(oh, device=device, dtype=torch.float32).view(1, oh, 1)
    return xs, ys


def _plane(row: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """``row`` [n, 3] = (a, b, c) per image → float32 [n, H, W] with ``a x + (b y + c)`` at pixel (x, y).

    Coefficient-wise addcmuls: one full-size kernel per term, no [n, H, W, 3] intermediate.
    """
    n = row.shape[0]
    base = torch.addcmul(row[:, 2].view(n, 1, 1), row[:, 1].view(n, 1, 1), ys)
    return torch.addcmul(base, row[:, 0].view(n, 1, 1), xs)


def affine_grid_px(inv: torch.Tensor, *, out_hw: tuple[int, int], in_hw: tuple[int, int]) -> torch.Tensor:
    """Normalised grid [n, H, W, 2] sampling the source at ``inv`` [n, 2, 3] · (x, y, 1).

    ``inv`` maps output pixel coordinates to source pixel coordinates (any float dtype; the
    normalisation is folded into its coefficients in float64, the grid is float32).
    """
    sx, ox = _norm(in_hw[1])
    sy, oy = _norm(in_hw[0])
    m64 = inv.to(torch.float64)
    row_x = m64[:, 0] * sx
    row_x[:, 2] += ox
    row_y = m64[:, 1] * sy
    row_y[:, 2] += oy
    m = torch.stack([row_x, row_y], 1).float()
    xs, ys = _pixel_axes(out_hw, inv.device)
    return torch.stack([_plane(m[:, 0], xs, ys), _plane(m[:, 1], xs, ys)], -1)


def projective_grid_px(inv: torch.Tensor, *, out_hw: tuple[int, int], in_hw: tuple[int, int]) -> torch.Tensor:
    """Normalised grid [n, H, W, 2] sampling the source at the projective image of each output pixel.

    ``inv`` [n, 3, 3] maps output pixel coordinates (x, y, 1) to homogeneous source coordinates.
    """
    sx, ox = _norm(in_hw[1])
    sy, oy = _norm(in_hw[0])
    m = inv.to(torch.float64)
    # (scale * num / den + offset) = (scale * num + offset * den) / den: fold into the numerators.
    num = torch.stack([sx * m[:, 0] + ox * m[:, 2], sy * m[:, 1] + oy * m[:, 2], m[:, 2]], 1).float()
    xs, ys = _pixel_axes(out_hw, inv.device)
    den = _plane(num[:, 2], xs, ys)
    grid = torch.stack([_plane(num[:, 0], xs, ys).div_(den), _plane(num[:, 1], xs, ys).div_(den)], -1)
    # Beyond a homography's horizon the coordinates blow up (or are 0/0): send those pixels
    # outside the source (±2 is outside [-1, 1]) so the sample reads the border value, not NaN.
    return torch.nan_to_num_(grid, nan=-2.0, posinf=2.0, neginf=-2.0).clamp_(-2.0, 2.0)


def separable_grid(gx: torch.Tensor, gy: torch.Tensor, *, in_hw: tuple[int, int]) -> torch.Tensor:
    """Normalised grid [n, H, W, 2] from per-image source columns ``gx`` [n, W] and rows ``gy`` [n, H]."""
    n, ow = gx.shape
    oh = gy.shape[1]
    sx, ox = _norm(in_hw[1])
    sy, oy = _norm(in_hw[0])
    nx = (gx * sx + ox).view(n, 1, ow, 1).expand(n, oh, ow, 1)
    ny = (gy * sy + oy).view(n, oh, 1, 1).expand(n, oh, ow, 1)
    return torch.cat([nx, ny], -1)


def resize_coords(
    *,
    canvas: torch.Tensor,
    pad_before: torch.Tensor,
    valid: torch.Tensor,
    offset: torch.Tensor,
    dst: int,
    area: torch.Tensor,
) -> torch.Tensor:
    """float32 [n, dst]: source coordinate of each output sample of an OpenCV resize of a padded
    1-D canvas, such that bilinear sampling (zeros outside the source) gives OpenCV's weights.

    Per image: the canvas has ``canvas`` samples; canvas index ``c`` in
    ``[pad_before, pad_before + valid)`` is source index ``c - pad_before + offset``, the rest is
    padding. A side is either padded (its padding maps outside the source, so its taps read the
    pad value) or cropped (taps stay inside the kept span), which is what makes one coordinate per
    output enough. ``area`` (bool [n]) selects OpenCV's INTER_AREA enlargement weights, else
    INTER_LINEAR; taps are clamped into the canvas (replicated border), as OpenCV's resize does.
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
    top = length - 1
    c0 = torch.clamp(s, min=torch.zeros_like(top), max=top)
    c1 = torch.clamp(s + 1, min=torch.zeros_like(top), max=top)
    # c1 == c0 (clamped edge): the single tap itself; else c0 + f interpolates c0 and c0 + 1.
    coord = c0 + (c1 - c0) * f - pad_before.to(torch.float64).view(n, 1) + offset.to(torch.float64).view(n, 1)
    return coord.float()


def reflect101(index: torch.Tensor, size: int) -> torch.Tensor:
    """OpenCV BORDER_REFLECT_101 index folding (``gfedcb|abcdefgh|gfedcba``), any distance."""
    if size == 1:
        return torch.zeros_like(index)
    period = 2 * (size - 1)
    m = torch.remainder(index, period)
    return torch.where(m >= size, period - m, m)


# --- piecewise-affine meshes (scikit-image's PiecewiseAffineTransform on a regular grid) ---------


@lru_cache(maxsize=32)
def _mesh_weights(h: int, w: int, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(corners int64 [h*w, 3], weights float32 [h*w, 3], base float32 [h*w, 2]) for an h x w output.

    The control points sit at ``linspace(0, h, rows) x linspace(0, w, cols)`` (imgaug's grid,
    which spans one pixel past the last centre), indexed row-major. They are Delaunay-triangulated
    with the same qhull call scikit-image makes (a square cell's diagonal is qhull's choice, so it
    is taken from qhull rather than assumed), and each output pixel gets its triangle's three
    corner indices and barycentric weights: the mapped position of a pixel is then the weighted sum
    of the corners' moved positions, which is the per-triangle affine map scikit-image applies.
    ``base`` is the pixel's own (x, y); pixels outside the mesh get zero weights and base (-1, -1),
    where scikit-image sends them.
    """
    from scipy.spatial import Delaunay

    # The exact float64 points imgaug passes: a square cell's four corners are cocircular, and
    # which diagonal qhull picks depends on their last bits (float32-rounded points flip some).
    tri = Delaunay(_mesh_points(h, w, rows, cols, np.float64))
    py, px = np.mgrid[0:h, 0:w]
    pix = np.stack([px.ravel(), py.ravel()], 1).astype(np.float64)
    simplex = tri.find_simplex(pix)
    inside = simplex >= 0
    safe = np.where(inside, simplex, 0)
    trans = tri.transform[safe]
    bary2 = np.einsum("pij,pj->pi", trans[:, :2], pix - trans[:, 2])
    weights = np.concatenate([bary2, 1 - bary2.sum(1, keepdims=True)], 1)
    weights[~inside] = 0.0
    corners = tri.simplices[safe].astype(np.int64)
    base = np.where(inside[:, None], pix, -1.0)
    return corners, weights.astype(np.float32), base.astype(np.float32)


def _mesh_points(h: int, w: int, rows: int, cols: int, dtype=np.float32) -> np.ndarray:
    """[rows*cols, 2]: imgaug's control points (x, y), row-major, as ``dtype``."""
    gx, gy = np.meshgrid(np.linspace(0, w, cols), np.linspace(0, h, rows))
    return np.stack([gx.ravel(), gy.ravel()], 1).astype(dtype)


def mesh_tables(h: int, w: int, rows: int, cols: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """(corners [h*w, 3], weights [h*w, 3], base [h*w, 2] in grid units, points [K, 2] (x, y) px)
    on ``device``, K = rows * cols; built on the host once per shape and device."""

    def build(dev: torch.device):
        corners, weights, base = _mesh_weights(h, w, rows, cols)
        sx, ox = _norm(w)
        sy, oy = _norm(h)
        # base in grid_sample units, so a call only adds the (scaled) displacement field.
        base_n = (base * np.array([sx, sy], np.float32) + np.array([ox, oy], np.float32)).astype(np.float32)
        arrays = (corners, weights, base_n, _mesh_points(h, w, rows, cols))
        return tuple(torch.from_numpy(np.ascontiguousarray(a)).to(dev) for a in arrays)

    return device_cached(("mesh", h, w, rows, cols), device, build)


def mesh_grid(disp: torch.Tensor, *, h: int, w: int, rows: int, cols: int) -> torch.Tensor:
    """Normalised grid [n, h, w, 2] for per-image control-point displacements ``disp`` [n, K, 2]
    (x, y in pixels): each output pixel samples the source at its own position plus the
    barycentric blend of its triangle's corner displacements (the mesh's piecewise-linear field).

    Three gathers and three multiply-adds per pixel, elementwise, so every image's grid is the
    same bits whatever batch it is in.
    """
    n = disp.shape[0]
    corners, weights, base_n, _ = mesh_tables(h, w, rows, cols, disp.device)
    sx, _ = _norm(w)
    sy, _ = _norm(h)
    d = disp * const([sx, sy], disp.device)  # displacements in grid units
    field = base_n.expand(n, h * w, 2)
    for k in range(3):
        field = torch.addcmul(field, weights[:, k : k + 1], d.index_select(1, corners[:, k]))
    return field.view(n, h, w, 2)


def hypot_floor(h: int, w: int) -> int:
    """Largest integer side a quadrilateral with corners inside an h x w image can span."""
    return int(math.floor(math.hypot(h, w)))


def as_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 NCHW → float32 NCHW (0..255), the working type of every op."""
    return images.to(torch.float32)


def per_image(x: torch.Tensor) -> torch.Tensor:
    """[n] → [n, 1, 1, 1], to broadcast a per-image value over NCHW."""
    return x.view(-1, 1, 1, 1)
