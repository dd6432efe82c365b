"""Triton kernels of the fused cross selective scan (imported only when the ``triton`` backend loads).

Kept apart from ``scan_triton.py`` because Triton resolves helper ``@triton.jit`` functions through
module globals, and importing triton at module level must not happen on a plain ``import robusteval``.
See ``scan_triton.py`` for the algorithm and the bytes model.
"""

import triton
import triton.language as tl


@triton.jit
def _combine(a1, b1, a2, b2):
    # (a1, b1) applied first, then (a2, b2):  h -> a2 * (a1 * h + b1) + b2
    return a1 * a2, a2 * b1 + b2


@triton.jit
def _discretise(
    dbl_row,  # pointer to dbl[b, k, 0, h, 0]
    u,
    wdt_ptr,
    bias,
    A,
    g_idx,
    g_mask,
    w_idx,
    w_mask,
    HW,
    wmat,  # (BLOCK_G, R_PAD) dt_projs_weight rows in the dot's dtype (used when DT_DOT)
    R: tl.constexpr,
    R_PAD: tl.constexpr,
    BLOCK_G: tl.constexpr,
    BLOCK_W: tl.constexpr,
    DT_DOT: tl.constexpr,
    PREC: tl.constexpr,
):
    """a = exp(softplus(dt + bias) * A), bu = softplus(dt + bias) * B * u; identity (1, 0) off-image."""
    if DT_DOT:
        # dt = W (G x R) @ dbl[:R] (R x W) on the tensor cores: the rank-R rows pass through shared
        # memory instead of R broadcast vectors held in registers.
        r_idx = tl.arange(0, R_PAD)
        dtr = tl.load(
            dbl_row + r_idx[:, None] * HW + w_idx[None, :],
            mask=(r_idx[:, None] < R) & w_mask[None, :],
            other=0.0,
        )
        dt = tl.dot(wmat, dtr.to(wmat.dtype), input_precision=PREC)
    else:
        dt = tl.zeros([BLOCK_G, BLOCK_W], dtype=tl.float32)
        for r in tl.static_range(R):
            dtr = tl.load(dbl_row + r * HW + w_idx, mask=w_mask, other=0.0).to(tl.float32)
            wr = tl.load(wdt_ptr + g_idx * R + r, mask=g_mask, other=0.0)
            dt += wr[:, None] * dtr[None, :]
    Bv = tl.load(dbl_row + R * HW + w_idx, mask=w_mask, other=0.0).to(tl.float32)
    v = dt + bias[:, None]
    e = tl.exp(v)
    # softplus as mamba-ssm's kernel computes it (v > 20 -> v); exp(v) where 1 + e rounds to 1.
    delta = tl.where(v > 20.0, v, tl.where(v < -15.0, e, tl.log(1.0 + e)))
    a = tl.exp(delta * A[:, None])
    bu = delta * Bv[None, :] * u
    m = g_mask[:, None] & w_mask[None, :]
    return tl.where(m, a, 1.0), tl.where(m, bu, 0.0)


@triton.jit
def cross_scan_kernel(
    x_ptr,  # (B, D, H, W), any float dtype, contiguous
    dbl_ptr,  # (B, 4, R + 2, H, W) contiguous
    wdt_ptr,  # (4, D, R) float32
    bias_ptr,  # (4, D) float32
    A_ptr,  # (4, D) float32, = -exp(A_logs)
    dsum_ptr,  # (D,) float32, sum over directions of Ds
    y_ptr,  # (B, D, H, W) float32
    D,
    H,
    W,
    R: tl.constexpr,
    R_PAD: tl.constexpr,
    BLOCK_G: tl.constexpr,
    BLOCK_W: tl.constexpr,
    DT_DOT: tl.constexpr,
    PREC: tl.constexpr,
    DOT_F32: tl.constexpr,
):
    pid = tl.program_id(0)
    n_gblk = tl.cdiv(D, BLOCK_G)
    b = pid // n_gblk
    g0 = (pid % n_gblk) * BLOCK_G
    HW = H * W
    g_idx = g0 + tl.arange(0, BLOCK_G)
    g_mask = g_idx < D
    w_idx = tl.arange(0, BLOCK_W)
    w_mask = w_idx < W
    tile_mask = g_mask[:, None] & w_mask[None, :]
    CD = R + 2
    # int64 bases: B*D*H*W overflows int32 at full batch sizes.
    x_base = x_ptr + (b * D).to(tl.int64) * HW
    y_base = y_ptr + (b * D).to(tl.int64) * HW
    dbl_base = dbl_ptr + (b * 4 * CD).to(tl.int64) * HW
    row_off = g_idx[:, None] * HW + w_idx[None, :]

    bias0 = tl.load(bias_ptr + 0 * D + g_idx, mask=g_mask, other=0.0)
    bias1 = tl.load(bias_ptr + 1 * D + g_idx, mask=g_mask, other=0.0)
    bias2 = tl.load(bias_ptr + 2 * D + g_idx, mask=g_mask, other=0.0)
    bias3 = tl.load(bias_ptr + 3 * D + g_idx, mask=g_mask, other=0.0)
    A0 = tl.load(A_ptr + 0 * D + g_idx, mask=g_mask, other=0.0)
    A1 = tl.load(A_ptr + 1 * D + g_idx, mask=g_mask, other=0.0)
    A2 = tl.load(A_ptr + 2 * D + g_idx, mask=g_mask, other=0.0)
    A3 = tl.load(A_ptr + 3 * D + g_idx, mask=g_mask, other=0.0)
    dsum = tl.load(dsum_ptr + g_idx, mask=g_mask, other=0.0)
    wdt0 = wdt_ptr + 0 * D * R
    wdt1 = wdt_ptr + 1 * D * R
    wdt2 = wdt_ptr + 2 * D * R
    wdt3 = wdt_ptr + 3 * D * R
    r_pad = tl.arange(0, R_PAD)
    w_off = g_idx[:, None] * R + r_pad[None, :]
    w_msk = g_mask[:, None] & (r_pad[None, :] < R)
    # The dot runs in x's dtype (float32 when DOT_F32: float32 inputs, or Triton's CPU interpreter,
    # whose 16-bit dot is unreliable).
    if DOT_F32:
        wm0 = tl.load(wdt0 + w_off, mask=w_msk, other=0.0)
        wm1 = tl.load(wdt1 + w_off, mask=w_msk, other=0.0)
        wm2 = tl.load(wdt2 + w_off, mask=w_msk, other=0.0)
        wm3 = tl.load(wdt3 + w_off, mask=w_msk, other=0.0)
    else:
        wm0 = tl.load(wdt0 + w_off, mask=w_msk, other=0.0).to(x_ptr.dtype.element_ty)
        wm1 = tl.load(wdt1 + w_off, mask=w_msk, other=0.0).to(x_ptr.dtype.element_ty)
        wm2 = tl.load(wdt2 + w_off, mask=w_msk, other=0.0).to(x_ptr.dtype.element_ty)
        wm3 = tl.load(wdt3 + w_off, mask=w_msk, other=0.0).to(x_ptr.dtype.element_ty)

    # ---- sweep A: per-column aggregates of the column-major directions -------------------
    P1 = tl.full([BLOCK_G, BLOCK_W], 1.0, tl.float32)  # k=1 (down the column): product of a
    H1 = tl.zeros([BLOCK_G, BLOCK_W], dtype=tl.float32)  # k=1: end state from zero
    P3 = tl.full([BLOCK_G, BLOCK_W], 1.0, tl.float32)  # k=3 (up the column)
    H3 = tl.zeros([BLOCK_G, BLOCK_W], dtype=tl.float32)
    for h in range(H):
        u = tl.load(x_base + row_off + h * W, mask=tile_mask, other=0.0).to(tl.float32)
        row = dbl_base + h * W
        a1, bu1 = _discretise(
            row + 1 * CD * HW,
            u,
            wdt1,
            bias1,
            A1,
            g_idx,
            g_mask,
            w_idx,
            w_mask,
            HW,
            wm1,
            R,
            R_PAD,
            BLOCK_G,
            BLOCK_W,
            DT_DOT,
            PREC,
        )
        H1 = a1 * H1 + bu1
        P1 = P1 * a1
        a3, bu3 = _discretise(
            row + 3 * CD * HW,
            u,
            wdt3,
            bias3,
            A3,
            g_idx,
            g_mask,
            w_idx,
            w_mask,
            HW,
            wm3,
            R,
            R_PAD,
            BLOCK_G,
            BLOCK_W,
            DT_DOT,
            PREC,
        )
        # k=3 visits this row before the rows above it: new aggregate = (rows above) after (this row).
        H3 = H3 + P3 * bu3
        P3 = P3 * a3
    # Entry states: k=1 enters column w with the end state of columns 0..w-1; k=3 with W-1..w+1.
    _, E1 = tl.associative_scan((P1, H1), axis=1, combine_fn=_combine)
    _, E3 = tl.associative_scan((P3, H3), axis=1, combine_fn=_combine, reverse=True)
    zero_i = tl.zeros([BLOCK_G, BLOCK_W], dtype=tl.int32)
    w2 = w_idx[None, :] + zero_i
    S1 = tl.gather(E1, tl.maximum(w2 - 1, 0), axis=1)
    S1 = tl.where(w2 == 0, 0.0, S1)
    S3 = tl.gather(E3, tl.minimum(w2 + 1, BLOCK_W - 1), axis=1)
    S3 = tl.where(w2 + 1 >= BLOCK_W, 0.0, S3)

    # ---- sweep C (bottom -> top): k=2 (row-major reversed) and k=3; first write of y -----
    h3 = S3
    carry2 = tl.zeros([BLOCK_G], dtype=tl.float32)
    for i in range(H):
        h = H - 1 - i
        u = tl.load(x_base + row_off + h * W, mask=tile_mask, other=0.0).to(tl.float32)
        row = dbl_base + h * W
        a2, bu2 = _discretise(
            row + 2 * CD * HW,
            u,
            wdt2,
            bias2,
            A2,
            g_idx,
            g_mask,
            w_idx,
            w_mask,
            HW,
            wm2,
            R,
            R_PAD,
            BLOCK_G,
            BLOCK_W,
            DT_DOT,
            PREC,
        )
        cum_a, cum_b = tl.associative_scan((a2, bu2), axis=1, combine_fn=_combine, reverse=True)
        h2 = cum_b + cum_a * carry2[:, None]
        carry2 = tl.sum(tl.where(w2 == 0, h2, 0.0), axis=1)
        C2 = tl.load(row + 2 * CD * HW + (R + 1) * HW + w_idx, mask=w_mask, other=0.0).to(tl.float32)
        a3, bu3 = _discretise(
            row + 3 * CD * HW,
            u,
            wdt3,
            bias3,
            A3,
            g_idx,
            g_mask,
            w_idx,
            w_mask,
            HW,
            wm3,
            R,
            R_PAD,
            BLOCK_G,
            BLOCK_W,
            DT_DOT,
            PREC,
        )
        h3 = a3 * h3 + bu3
        C3 = tl.load(row + 3 * CD * HW + (R + 1) * HW + w_idx, mask=w_mask, other=0.0).to(tl.float32)
        y = C2[None, :] * h2 + C3[None, :] * h3
        tl.store(y_base + row_off + h * W, y, mask=tile_mask)

    # ---- sweep B (top -> bottom): k=0 (row-major) and k=1, D skip; y += ---------------------
    h1 = S1
    carry0 = tl.zeros([BLOCK_G], dtype=tl.float32)
    for h in range(H):
        u = tl.load(x_base + row_off + h * W, mask=tile_mask, other=0.0).to(tl.float32)
        row = dbl_base + h * W
        a0, bu0 = _discretise(
            row + 0 * CD * HW,
            u,
            wdt0,
            bias0,
            A0,
            g_idx,
            g_mask,
            w_idx,
            w_mask,
            HW,
            wm0,
            R,
            R_PAD,
            BLOCK_G,
            BLOCK_W,
            DT_DOT,
            PREC,
        )
        cum_a, cum_b = tl.associative_scan((a0, bu0), axis=1, combine_fn=_combine)
        h0 = cum_b + cum_a * carry0[:, None]
        carry0 = tl.sum(tl.where(w2 == BLOCK_W - 1, h0, 0.0), axis=1)
        C0 = tl.load(row + 0 * CD * HW + (R + 1) * HW + w_idx, mask=w_mask, other=0.0).to(tl.float32)
        a1, bu1 = _discretise(
            row + 1 * CD * HW,
            u,
            wdt1,
            bias1,
            A1,
            g_idx,
            g_mask,
            w_idx,
            w_mask,
            HW,
            wm1,
            R,
            R_PAD,
            BLOCK_G,
            BLOCK_W,
            DT_DOT,
            PREC,
        )
        h1 = a1 * h1 + bu1
        C1 = tl.load(row + 1 * CD * HW + (R + 1) * HW + w_idx, mask=w_mask, other=0.0).to(tl.float32)
        ptrs = y_base + row_off + h * W
        y = tl.load(ptrs, mask=tile_mask, other=0.0)
        y += C0[None, :] * h0 + C1[None, :] * h1 + dsum[:, None] * u
        tl.store(ptrs, y, mask=tile_mask)
