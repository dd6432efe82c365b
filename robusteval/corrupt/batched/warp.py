"""Geometry ops (affine, perspective, crop, crop-and-pad, piecewise affine): one grid_sample per batch.

The contract of every op (dtype, seeds, determinism) is in :mod:`robusteval.corrupt.batched`.
"""

from __future__ import annotations

import math

import torch

from robusteval.corrupt.batched import register_batch_op, rng
from robusteval.corrupt.batched.geometry import (
    affine_grid_px,
    as_float,
    const,
    hypot_floor,
    mesh_grid,
    mesh_tables,
    projective_grid_px,
    resize_coords,
    round_half_even_uint8,
    sample,
    separable_grid,
    to_uint8,
)

_RAD = math.pi / 180.0


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
    return to_uint8(sample(as_float(images), grid, cval=float(cval)))


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
    canvas = sample(as_float(images), grid, cval=cval).add_(0.5).floor_().clamp_(0, 255)  # warp's uint8
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
    return to_uint8(sample(as_float(images), grid, cval=float(pad_cval)))


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
    out = round_half_even_uint8(sample(as_float(images), grid, cval=cval))
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
