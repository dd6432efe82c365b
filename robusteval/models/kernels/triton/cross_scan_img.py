"""Whole-image fused cross scan (``img``): one program per (image, block of channels) holds the
(BLOCK_G, next_pow2(H W)) tile and runs each direction as one forward scan in that direction's
order (the loads gather x and dbl in that order; steps past H W are identities at the end); the
other directions' C h come back to pixel order by a gather along the tile row. For H W <= 256
(VMamba's 14x14 and 7x7 stages; at 28x28 the tile spills). Measurements: reports/bench/scan_h100.md.
"""

import triton
import triton.language as tl
from robusteval.models.kernels.triton.common import _combine, _dsum, _dt_weights, _neg_exp, _softplus2


@triton.jit
def _img_pixel(l_idx, H: tl.constexpr, W: tl.constexpr, COL: tl.constexpr, REV: tl.constexpr):
    """(h, w) of the pixel a direction visits at step l (steps past H W clamp to a pixel, masked later).

    Row-major (COL False) or column-major (COL True), from the far end when REV.
    """
    s = tl.minimum(l_idx, H * W - 1)
    if REV:
        s = H * W - 1 - s
    if COL:
        h = s % H
        w = s // H
    else:
        h = s // W
        w = s % W
    return h, w


@triton.jit
def _img_direction(
    x_base,
    d_base,  # dbl[b, k] (pointer)
    wmat,  # (BLOCK_G, R_PAD) dt weights of this direction (``_dt_weights``)
    A,  # (BLOCK_G,) float32 = -exp(A_logs)
    extra,  # BIAS_DOT: (R_PAD, BLOCK_L) what the rank tile holds past row R (as in ``_disc2``)
    bias,  # not BIAS_DOT: (BLOCK_G,) bias log2 e, added after the dot
    off,  # not BIAS_DOT: (BLOCK_L,) 0 for steps on the image, -1e30 past it
    g_idx,
    tile_mask,
    l_idx,
    l_mask,
    r_idx,
    SXD: tl.constexpr,
    SXH: tl.constexpr,
    SXW: tl.constexpr,
    SDC: tl.constexpr,
    SDH: tl.constexpr,
    SDW: tl.constexpr,
    H: tl.constexpr,
    W: tl.constexpr,
    R: tl.constexpr,
    COL: tl.constexpr,
    REV: tl.constexpr,
    PREC: tl.constexpr,
    ACCURATE: tl.constexpr,
    ASM: tl.constexpr,
    BIAS_DOT: tl.constexpr,
    BLOCK_G: tl.constexpr,
    BLOCK_L: tl.constexpr,
):
    """One direction over the whole image, in its own scan order: (C h (BLOCK_G, BLOCK_L), u).

    The loads gather x and dbl in the direction's order (index math, no reordered copies), so the
    recurrence is one forward scan of length H W; steps past H W are the identity (a = 1, b = 0) and
    sit at the end, where they cannot touch earlier states.
    """
    h, w = _img_pixel(l_idx=l_idx, H=H, W=W, COL=COL, REV=REV)
    u = tl.load(x_base + g_idx[:, None] * SXD + (h * SXH + w * SXW)[None, :], mask=tile_mask, other=0.0)
    u = u.to(tl.float32)
    drow = d_base + h * SDH + w * SDW
    r_mask = (r_idx[:, None] < R) & l_mask[None, :]
    if BIAS_DOT:
        dtr = tl.load(drow[None, :] + r_idx[:, None] * SDC, mask=r_mask, other=extra)
        v = tl.dot(wmat, dtr.to(wmat.dtype), input_precision=PREC)
    else:
        dtr = tl.load(drow[None, :] + r_idx[:, None] * SDC, mask=r_mask, other=0.0)
        v = tl.dot(wmat, dtr.to(wmat.dtype), input_precision=PREC) + bias[:, None] + off[None, :]
    L = _softplus2(v, ACCURATE, ASM)
    Bv = tl.load(drow + R * SDC, mask=l_mask, other=0.0).to(tl.float32)
    Cv = tl.load(drow + (R + 1) * SDC, mask=l_mask, other=0.0).to(tl.float32)
    a = tl.exp2(L * A[:, None])
    _, hs = tl.associative_scan((a, L * (Bv[None, :] * u)), axis=1, combine_fn=_combine)
    return Cv[None, :] * hs, u


@triton.jit
def cross_scan_kernel_img(
    x_ptr,  # (B, D, H, W) any float dtype, any strides (SX*)
    dbl_ptr,  # (B, 4, R + 2, H, W) in x's dtype, any strides (SD*)
    dtw_ptr,  # (4, D, R) dt_projs_weight, contiguous
    dtb_ptr,  # (4, D) dt_projs_bias, contiguous
    alog_ptr,  # (4 D, 1) A_logs, contiguous
    ds_ptr,  # (4 D,) Ds
    y_ptr,  # (B, D, H, W) float32, any strides (SY*)
    D,
    sxb,
    syb,
    sdb,
    SXD: tl.constexpr,
    SXH: tl.constexpr,
    SXW: tl.constexpr,
    SYD: tl.constexpr,
    SYH: tl.constexpr,
    SYW: tl.constexpr,
    SDK: tl.constexpr,
    SDC: tl.constexpr,
    SDH: tl.constexpr,
    SDW: tl.constexpr,
    H: tl.constexpr,
    W: tl.constexpr,
    R: tl.constexpr,
    R_PAD: tl.constexpr,
    BLOCK_G: tl.constexpr,
    BLOCK_L: tl.constexpr,  # >= H W: the whole image is one tile row per channel
    PREC: tl.constexpr,
    DOT_F32: tl.constexpr,
    ACCURATE: tl.constexpr,
    ASM: tl.constexpr,
    BIAS_DOT: tl.constexpr,
):
    pid = tl.program_id(0)
    n_gblk = tl.cdiv(D, BLOCK_G)
    b = pid // n_gblk
    g0 = (pid % n_gblk) * BLOCK_G
    g_idx = g0 + tl.arange(0, BLOCK_G)
    g_mask = g_idx < D
    l_idx = tl.arange(0, BLOCK_L)
    l_mask = l_idx < H * W
    r_idx = tl.arange(0, R_PAD)
    x_base = x_ptr + b.to(tl.int64) * sxb
    y_base = y_ptr + b.to(tl.int64) * syb
    d_base = dbl_ptr + b.to(tl.int64) * sdb
    tile_mask = g_mask[:, None] & l_mask[None, :]
    rr = r_idx[:, None]
    ones = tl.where((rr == R + 1) | (rr == R + 2), 1.0, 0.0) + tl.zeros([R_PAD, BLOCK_L], dtype=tl.float32)
    zero_i = tl.zeros([BLOCK_G, BLOCK_L], dtype=tl.int32)
    # Step of pixel p = h W + w (row-major, the order of k = 0 and of y) in the other directions:
    # y of those is brought back to pixel order by a gather along the tile row.
    p = tl.minimum(l_idx, H * W - 1)
    col_step = (p % W) * H + p // W

    off = tl.where(l_mask, 0.0, -1e30)
    # Directions in the order 0, 2, 1, 3 (row-major first: its steps are pixel order, y's order).
    wm, bias = _dt_weights(
        dtw_ptr=dtw_ptr,
        dtb_ptr=dtb_ptr,
        ref_ptr=x_ptr,
        k=0,
        D=D,
        g_idx=g_idx,
        g_mask=g_mask,
        r_idx=r_idx,
        R=R,
        DOT_F32=DOT_F32,
        BIAS_DOT=BIAS_DOT,
    )
    extra = tl.where((rr == R) & (l_idx[None, :] >= H * W), -1e30, ones).to(wm.dtype)
    y, u0 = _img_direction(
        x_base=x_base,
        d_base=d_base,
        wmat=wm,
        A=_neg_exp(alog_ptr, 0, D, g_idx, g_mask),
        extra=extra,
        bias=bias,
        off=off,
        g_idx=g_idx,
        tile_mask=tile_mask,
        l_idx=l_idx,
        l_mask=l_mask,
        r_idx=r_idx,
        SXD=SXD,
        SXH=SXH,
        SXW=SXW,
        SDC=SDC,
        SDH=SDH,
        SDW=SDW,
        H=H,
        W=W,
        R=R,
        COL=False,
        REV=False,
        PREC=PREC,
        ACCURATE=ACCURATE,
        ASM=ASM,
        BIAS_DOT=BIAS_DOT,
        BLOCK_G=BLOCK_G,
        BLOCK_L=BLOCK_L,
    )
    wm, bias = _dt_weights(
        dtw_ptr=dtw_ptr,
        dtb_ptr=dtb_ptr,
        ref_ptr=x_ptr,
        k=2,
        D=D,
        g_idx=g_idx,
        g_mask=g_mask,
        r_idx=r_idx,
        R=R,
        DOT_F32=DOT_F32,
        BIAS_DOT=BIAS_DOT,
    )
    yk, _ = _img_direction(
        x_base=x_base,
        d_base=d_base + 2 * SDK,
        wmat=wm,
        A=_neg_exp(alog_ptr, 2, D, g_idx, g_mask),
        extra=extra,
        bias=bias,
        off=off,
        g_idx=g_idx,
        tile_mask=tile_mask,
        l_idx=l_idx,
        l_mask=l_mask,
        r_idx=r_idx,
        SXD=SXD,
        SXH=SXH,
        SXW=SXW,
        SDC=SDC,
        SDH=SDH,
        SDW=SDW,
        H=H,
        W=W,
        R=R,
        COL=False,
        REV=True,
        PREC=PREC,
        ACCURATE=ACCURATE,
        ASM=ASM,
        BIAS_DOT=BIAS_DOT,
        BLOCK_G=BLOCK_G,
        BLOCK_L=BLOCK_L,
    )
    y += tl.gather(yk, (H * W - 1 - p)[None, :] + zero_i, axis=1)
    wm, bias = _dt_weights(
        dtw_ptr=dtw_ptr,
        dtb_ptr=dtb_ptr,
        ref_ptr=x_ptr,
        k=1,
        D=D,
        g_idx=g_idx,
        g_mask=g_mask,
        r_idx=r_idx,
        R=R,
        DOT_F32=DOT_F32,
        BIAS_DOT=BIAS_DOT,
    )
    yk, _ = _img_direction(
        x_base=x_base,
        d_base=d_base + 1 * SDK,
        wmat=wm,
        A=_neg_exp(alog_ptr, 1, D, g_idx, g_mask),
        extra=extra,
        bias=bias,
        off=off,
        g_idx=g_idx,
        tile_mask=tile_mask,
        l_idx=l_idx,
        l_mask=l_mask,
        r_idx=r_idx,
        SXD=SXD,
        SXH=SXH,
        SXW=SXW,
        SDC=SDC,
        SDH=SDH,
        SDW=SDW,
        H=H,
        W=W,
        R=R,
        COL=True,
        REV=False,
        PREC=PREC,
        ACCURATE=ACCURATE,
        ASM=ASM,
        BIAS_DOT=BIAS_DOT,
        BLOCK_G=BLOCK_G,
        BLOCK_L=BLOCK_L,
    )
    y += tl.gather(yk, col_step[None, :] + zero_i, axis=1)
    wm, bias = _dt_weights(
        dtw_ptr=dtw_ptr,
        dtb_ptr=dtb_ptr,
        ref_ptr=x_ptr,
        k=3,
        D=D,
        g_idx=g_idx,
        g_mask=g_mask,
        r_idx=r_idx,
        R=R,
        DOT_F32=DOT_F32,
        BIAS_DOT=BIAS_DOT,
    )
    yk, _ = _img_direction(
        x_base=x_base,
        d_base=d_base + 3 * SDK,
        wmat=wm,
        A=_neg_exp(alog_ptr, 3, D, g_idx, g_mask),
        extra=extra,
        bias=bias,
        off=off,
        g_idx=g_idx,
        tile_mask=tile_mask,
        l_idx=l_idx,
        l_mask=l_mask,
        r_idx=r_idx,
        SXD=SXD,
        SXH=SXH,
        SXW=SXW,
        SDC=SDC,
        SDH=SDH,
        SDW=SDW,
        H=H,
        W=W,
        R=R,
        COL=True,
        REV=True,
        PREC=PREC,
        ACCURATE=ACCURATE,
        ASM=ASM,
        BIAS_DOT=BIAS_DOT,
        BLOCK_G=BLOCK_G,
        BLOCK_L=BLOCK_L,
    )
    y += tl.gather(yk, (H * W - 1 - col_step)[None, :] + zero_i, axis=1)
    dsum = _dsum(ds_ptr, D, g_idx, g_mask)
    out = 0.6931471805599453 * y + dsum[:, None] * u0
    y_off = g_idx[:, None] * SYD + ((p // W) * SYH + (p % W) * SYW)[None, :]
    tl.store(y_base + y_off, out, mask=tile_mask)
