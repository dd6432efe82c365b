"""libjpeg's baseline JPEG round trip as batched integer-exact torch ops (no codec, no host).

imgaug's JpegCompression saves with PIL and reads back, i.e. libjpeg(-turbo) with its defaults:
RGB → YCbCr (16-bit fixed point), 4:2:0 chroma (2x2 average with an alternating 1/2 rounding
bias), the "islow" integer DCT, quantisation by the IJG tables scaled to the quality (clamped to
1..255, baseline), then the inverse: islow IDCT, "fancy" triangle-filter chroma upsampling and
fixed-point YCbCr → RGB. Entropy coding is lossless, so the pixels depend on these steps only, and
all of them are integer arithmetic that can be reproduced exactly:

- each DCT pass is an integer linear map (the butterfly without its final descale) followed by a
  rounding shift, so it runs as one float64 matmul per pass (every product and sum is an integer
  below 2**53, hence exact) and a floor;
- quantisation uses libjpeg-turbo's reciprocal multiply (its ``compute_reciprocal``), done in
  float64 where it is exact too.

Per-image quality is a gather into tables built once per device. Only images whose height and
width are multiples of 16 (whole 4:2:0 MCUs; the study's 224 crops) are handled: libjpeg's edge
padding for partial MCUs is not reproduced, so callers fall back to the host codec otherwise.
"""

from __future__ import annotations

import numpy as np
import torch

from robusteval.corrupt.batched.geometry import device_cached

# ITU-T T.81 Annex K tables (what jpeg_set_quality scales), natural (row-major) order.
_LUMA = [
    [16, 11, 10, 16, 24, 40, 51, 61],
    [12, 12, 14, 19, 26, 58, 60, 55],
    [14, 13, 16, 24, 40, 57, 69, 56],
    [14, 17, 22, 29, 51, 87, 80, 62],
    [18, 22, 37, 56, 68, 109, 103, 77],
    [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101],
    [72, 92, 95, 98, 112, 100, 103, 99],
]
_CHROMA = [
    [17, 18, 24, 47, 99, 99, 99, 99],
    [18, 21, 26, 66, 99, 99, 99, 99],
    [24, 26, 56, 99, 99, 99, 99, 99],
    [47, 66, 99, 99, 99, 99, 99, 99],
] + [[99] * 8 for _ in range(4)]

# islow DCT constants: FIX(c) = round(c * 2**13) (CONST_BITS = 13), libjpeg's FIX_* values.
_C = {
    "0_298": 2446,
    "0_390": 3196,
    "0_541": 4433,
    "0_765": 6270,
    "0_899": 7373,
    "1_175": 9633,
    "1_501": 12299,
    "1_847": 15137,
    "1_961": 16069,
    "2_053": 16819,
    "2_562": 20995,
    "3_072": 25172,
}

# 16-bit fixed point colour conversion (libjpeg's SCALEBITS = 16; FIX rounds half up).
_SCALE = 16
_HALF = 1 << (_SCALE - 1)


def _fix(x: float) -> int:
    return int(x * (1 << _SCALE) + 0.5)


def _odd_part(a: int, b: int, c: int, d: int) -> tuple[int, int, int, int]:
    """Shared odd-part rotation of both DCT directions on inputs (a, b, c, d).

    Returns the four rotated sums; the forward DCT feeds (x3-x4, x2-x5, x1-x6, x0-x7) and reads
    coefficients 7, 5, 3, 1; the inverse feeds coefficients (7, 5, 3, 1) and reads its odd terms.
    """
    z5 = (a + b + c + d) * _C["1_175"]
    z1 = (a + d) * -_C["0_899"]
    z2 = (b + c) * -_C["2_562"]
    z3 = (a + c) * -_C["1_961"] + z5
    z4 = (b + d) * -_C["0_390"] + z5
    return (
        a * _C["0_298"] + z1 + z3,
        b * _C["2_053"] + z2 + z4,
        c * _C["3_072"] + z2 + z3,
        d * _C["1_501"] + z1 + z4,
    )


def _fdct_linear(x: list[int]) -> list[int]:
    """One 8-point islow forward pass before its descale: outputs 0..7 (0 and 4 unscaled,
    the others scaled by 2**13)."""
    s = [x[i] + x[7 - i] for i in range(4)]  # tmp0..tmp3
    d = [x[i] - x[7 - i] for i in range(4)]  # tmp7, tmp6, tmp5, tmp4
    t10, t13 = s[0] + s[3], s[0] - s[3]
    t11, t12 = s[1] + s[2], s[1] - s[2]
    z1 = (t12 + t13) * _C["0_541"]
    o7, o5, o3, o1 = _odd_part(d[3], d[2], d[1], d[0])
    return [t10 + t11, o1, z1 + t13 * _C["0_765"], o3, t10 - t11, o5, z1 - t12 * _C["1_847"], o7]


def _idct_linear(c: list[int]) -> list[int]:
    """One 8-point islow inverse pass before its descale (all outputs scaled by 2**13)."""
    z1 = (c[2] + c[6]) * _C["0_541"]
    t2 = z1 - c[6] * _C["1_847"]
    t3 = z1 + c[2] * _C["0_765"]
    t0 = (c[0] + c[4]) << 13
    t1 = (c[0] - c[4]) << 13
    t10, t13, t11, t12 = t0 + t3, t0 - t3, t1 + t2, t1 - t2
    o0, o1, o2, o3 = _odd_part(c[7], c[5], c[3], c[1])
    return [t10 + o3, t11 + o2, t12 + o1, t13 + o0, t13 - o0, t12 - o1, t11 - o2, t10 - o3]


def _matrix(linear) -> np.ndarray:
    """8x8 integer matrix M with M @ x == linear(x) (the passes are linear before descaling)."""
    eye = np.eye(8, dtype=np.int64)
    return np.array([linear(list(map(int, eye[j]))) for j in range(8)], dtype=np.int64).T


def _quant_tables() -> np.ndarray:
    """int64 [101, 2, 64]: luma/chroma tables for quality 0..100 (jpeg_set_quality, baseline)."""
    out = np.zeros((101, 2, 64), dtype=np.int64)
    base = np.array([_LUMA, _CHROMA], dtype=np.int64).reshape(2, 64)
    for q in range(101):
        qq = min(max(q, 1), 100)
        scale = 5000 // qq if qq < 50 else 200 - 2 * qq
        out[q] = np.clip((base * scale + 50) // 100, 1, 255)
    return out


def _reciprocals() -> np.ndarray:
    """float64 [256, 3]: libjpeg-turbo's (reciprocal, correction, 2**-shift) for divisor 8 q.

    Quantising ``t >= 0`` by divisor ``d`` is ``((t + correction) * reciprocal) >> shift``, with
    ``shift = 16 + floor(log2 d)`` less one for powers of two (16-bit DCT elements).
    """
    out = np.zeros((256, 3), dtype=np.float64)
    out[0] = (1, 0, 1.0)
    for q in range(1, 256):
        d = 8 * q
        b = d.bit_length() - 1
        r = 16 + b
        fq, fr = divmod(1 << r, d)
        c = d // 2
        if fr == 0:
            fq >>= 1
            r -= 1
        elif fr <= d // 2:
            c += 1
        else:
            fq += 1
        out[q] = (fq, c, 2.0**-r)
    return out


def _tables(device: torch.device):
    def build(dev: torch.device):
        f = torch.from_numpy(_matrix(_fdct_linear)).double()
        i = torch.from_numpy(_matrix(_idct_linear)).double()
        # Forward descale: outputs 0 and 4 are shifted left by PASS1_BITS = 2 in pass 1 and right
        # by 2 in pass 2; the others right by 11, then 15 (DESCALE: floor(v / 2**k + 1/2)).
        k1, k2 = 2.0**-11, 2.0**-15
        p1_scale = torch.tensor([4.0, k1, k1, k1, 4.0, k1, k1, k1], dtype=torch.float64)
        p1_add = torch.tensor([0.0, 0.5, 0.5, 0.5, 0.0, 0.5, 0.5, 0.5], dtype=torch.float64)
        p2_scale = torch.tensor([0.25, k2, k2, k2, 0.25, k2, k2, k2], dtype=torch.float64)
        quant = torch.from_numpy(_quant_tables())
        recip = torch.from_numpy(_reciprocals())
        return tuple(t.to(dev) for t in (f, i, p1_scale, p1_add, p2_scale, quant, recip))

    return device_cached(("jpeg",), device, build)


def _blocks(plane: torch.Tensor) -> torch.Tensor:
    """[n, h, w] → [n, h/8 * w/8, 8, 8] (blocks in raster order)."""
    n, h, w = plane.shape
    return plane.view(n, h // 8, 8, w // 8, 8).permute(0, 1, 3, 2, 4).reshape(n, -1, 8, 8)


def _unblocks(blocks: torch.Tensor, h: int, w: int) -> torch.Tensor:
    n = blocks.shape[0]
    return blocks.view(n, h // 8, w // 8, 8, 8).permute(0, 1, 3, 2, 4).reshape(n, h, w)


def _replicate_shift(x: torch.Tensor, dim: int, step: int) -> torch.Tensor:
    """``x`` shifted by one along ``dim`` (step -1: previous sample, +1: next), edges replicated."""
    size = x.shape[dim]
    if step < 0:
        return torch.cat([x.narrow(dim, 0, 1), x.narrow(dim, 0, size - 1)], dim)
    return torch.cat([x.narrow(dim, 1, size - 1), x.narrow(dim, size - 1, 1)], dim)


def supported(images: torch.Tensor) -> bool:
    """Whether :func:`jpeg_roundtrip` handles this shape (3 channels, whole 16x16 MCUs)."""
    return images.shape[1] == 3 and images.shape[2] % 16 == 0 and images.shape[3] % 16 == 0


def jpeg_roundtrip(images: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """uint8 NCHW RGB → uint8 NCHW: encode at per-image ``quality`` (int [n], 1..100) and decode,
    as libjpeg does with its defaults (see the module docstring); any device."""
    if not supported(images):
        raise ValueError(
            f"torch JPEG needs 3-channel images with sides divisible by 16, got {tuple(images.shape)}"
        )
    n, _, h, w = images.shape
    dev = images.device
    fdct, idct, p1_scale, p1_add, p2_scale, quant_lut, recip_lut = _tables(dev)

    # RGB → YCbCr, libjpeg's 16-bit fixed point (all terms non-negative, so >> is a floor).
    x = images.to(torch.int32)
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    off = (128 << _SCALE) + _HALF - 1
    y = (_fix(0.299) * r + _fix(0.587) * g + _fix(0.114) * b + _HALF) >> _SCALE
    cb = (-_fix(0.16874) * r - _fix(0.33126) * g + _fix(0.5) * b + off) >> _SCALE
    cr = (_fix(0.5) * r - _fix(0.41869) * g - _fix(0.08131) * b + off) >> _SCALE

    # 4:2:0: 2x2 sums plus a bias alternating 1, 2 along each row, then >> 2.
    chroma = torch.stack([cb, cr], 1).view(n, 2, h // 2, 2, w // 2, 2).sum((3, 5))
    bias = 1 + (torch.arange(w // 2, device=dev, dtype=torch.int32) & 1)
    chroma = (chroma + bias) >> 2

    # All 8x8 blocks of Y, Cb, Cr in one tensor, level-shifted, as exact float64 integers.
    blocks = (
        torch.cat([_blocks(y), _blocks(chroma[:, 0]), _blocks(chroma[:, 1])], 1).to(torch.float64) - 128.0
    )
    n_luma = (h // 8) * (w // 8)

    # Forward DCT: rows then columns, each an integer matmul and libjpeg's rounding shift. Every
    # product is a right-multiplication by an 8x8 matrix (one tall 2-D GEMM, not millions of tiny
    # batched ones), so the column pass works on transposed blocks and the coefficients stay
    # transposed ([u, v]: horizontal, vertical frequency) until the inverse's last pass.
    # (In-place chains: at a GPU batch of 1024 each float64 block tensor is ~600 MB.)
    rows = torch.matmul(blocks, fdct.T).mul_(p1_scale).add_(p1_add).floor_()
    coef_t = torch.matmul(rows.transpose(-1, -2).contiguous(), fdct.T).mul_(p2_scale).add_(0.5).floor_()

    # Quantise (reciprocal multiply on |coef|, sign restored), dequantise; per-image tables.
    qtab_i = quant_lut[quality.to(torch.int64).clamp(0, 100)]  # int64 [n, 2, 64], natural order
    rc = recip_lut[qtab_i].view(n, 2, 8, 8, 3).transpose(2, 3)  # transposed like coef_t
    qtab = qtab_i.view(n, 2, 8, 8).transpose(2, 3).to(torch.float64)
    deq_t = torch.empty_like(coef_t)
    for part, sl in ((0, slice(0, n_luma)), (1, slice(n_luma, None))):
        recip, corr, inv_shift = (rc[:, part, :, :, k].unsqueeze(1) for k in range(3))
        c = coef_t[:, sl]
        level = c.abs().add_(corr).mul_(recip).mul_(inv_shift).floor_()
        deq_t[:, sl] = level.copysign_(c).mul_(qtab[:, part].unsqueeze(1))

    # Inverse DCT: columns (descale 11), then rows (descale 18), +128, clamp (range_limit).
    cols_t = torch.matmul(deq_t, idct.T).mul_(2.0**-11).add_(0.5).floor_()  # [u, r]
    pix = torch.matmul(cols_t.transpose(-1, -2).contiguous(), idct.T).mul_(2.0**-18).add_(0.5).floor_()
    pix = pix.add_(128.0).clamp_(0, 255)
    pix = pix.to(torch.int32)
    y = _unblocks(pix[:, :n_luma], h, w)
    ch = torch.stack(
        [
            _unblocks(pix[:, n_luma : n_luma + n_luma // 4], h // 2, w // 2),
            _unblocks(pix[:, n_luma + n_luma // 4 :], h // 2, w // 2),
        ],
        1,
    )

    # Fancy upsampling: vertical 3:1 blend (no rounding), then horizontal 3:1 with biases 8 / 7.
    up = torch.stack([3 * ch + _replicate_shift(ch, 2, -1), 3 * ch + _replicate_shift(ch, 2, 1)], 3)
    colsum = up.view(n, 2, h, w // 2)
    left = (3 * colsum + _replicate_shift(colsum, 3, -1) + 8) >> 4
    right = (3 * colsum + _replicate_shift(colsum, 3, 1) + 7) >> 4
    ch = torch.stack([left, right], 4).view(n, 2, h, w)

    # YCbCr → RGB, libjpeg's tables as arithmetic (>> on negative int32 is a floor, as in C).
    xb = ch[:, 0] - 128
    xr = ch[:, 1] - 128
    red = y + ((_fix(1.402) * xr + _HALF) >> _SCALE)
    blue = y + ((_fix(1.772) * xb + _HALF) >> _SCALE)
    green = y + ((-_fix(0.34414) * xb - _fix(0.71414) * xr + _HALF) >> _SCALE)
    return torch.stack([red, green, blue], 1).clamp_(0, 255).to(torch.uint8)
