"""Triton kernels of the fused cross selective scan (imported only when the ``triton`` backend loads).

``cross_scan_kernel`` is the first version (``v1``), ``cross_scan_kernel_v2`` the row-by-row kernel
(``v2``) and ``cross_scan_kernel_img`` the whole-image one (``img``); the launch table picks per shape.

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


# ------------------------------------------------------------------------------------------------
# v2: same three sweeps, cheaper arithmetic per element (see scan_triton.py, "v2")
# ------------------------------------------------------------------------------------------------

LOG2E = tl.constexpr(1.4426950408889634)
# softplus(v) = v above v = 20 (mamba-ssm's threshold); in log2 units (v * log2 e).
SP_THRESH = tl.constexpr(28.853900817779268)


@triton.jit
def _lg2(q, ASM: tl.constexpr):
    """log2 of q >= 1: the hardware approximation on the GPU, libdevice under the interpreter."""
    if ASM:
        return tl.inline_asm_elementwise(
            "lg2.approx.f32 $0, $1;", "=r,r", [q], dtype=tl.float32, is_pure=True, pack=1
        )
    else:
        return tl.log2(q)


@triton.jit
def _softplus2(v, ACCURATE: tl.constexpr, ASM: tl.constexpr):
    """log2(1 + 2^v) for v in log2 units (= softplus(v ln2) * log2 e); v itself above the threshold.

    ACCURATE (float32 inputs): below e = 2^v = 1/8 a degree-7 series of log2(1 + e), since 1 + e drops
    e's low bits and lg2.approx is accurate only in absolute terms (~2^-22) near 1.
    """
    e = tl.exp2(v)
    lq = _lg2(1.0 + e, ASM)
    if ACCURATE:
        p = 0.14285714285714285 * LOG2E
        p = p * e - 0.16666666666666666 * LOG2E
        p = p * e + 0.2 * LOG2E
        p = p * e - 0.25 * LOG2E
        p = p * e + 0.3333333333333333 * LOG2E
        p = p * e - 0.5 * LOG2E
        p = p * e + LOG2E
        lq = tl.where(e < 0.125, e * p, lq)
    return tl.where(v > SP_THRESH, v, lq)


@triton.jit
def _dt_weights(
    dtw_ptr,  # (4, D, R) dt_projs_weight, any float dtype, contiguous
    dtb_ptr,  # (4, D) dt_projs_bias
    ref_ptr,  # any pointer of x's dtype (the dot's operand dtype unless DOT_F32)
    k,
    D,
    g_idx,
    g_mask,
    r_idx,
    R: tl.constexpr,
    DOT_F32: tl.constexpr,
    BIAS_DOT: tl.constexpr,
):
    """Direction k's dt weights for the dot, in its dtype, and the bias b = dt_bias log2 e (float32).

    BIAS_DOT: (BLOCK_G, R_PAD) [dt_proj log2 e | 1 | b_hi | b_lo | 0 ...], b = b_hi + b_lo with b_hi
    rounded to the dot's dtype, so that a 16-bit dot still carries the bias to ~2^-16 relative and
    yields dt + bias directly. Otherwise [dt_proj log2 e | 0 ...] and the caller adds b after the dot
    (when the three extra rows would double the padded rank). Built once per program from the raw
    parameters: no host-side preparation (and no extra launches) per call.
    """
    rr = r_idx[None, :]
    w = tl.load(dtw_ptr + (k * D + g_idx[:, None]) * R + rr, mask=g_mask[:, None] & (rr < R), other=0.0)
    w = w.to(tl.float32) * LOG2E
    b = tl.load(dtb_ptr + k * D + g_idx, mask=g_mask, other=0.0).to(tl.float32) * LOG2E
    if BIAS_DOT:
        if DOT_F32:  # noqa: SIM108 (a statement-level constexpr branch for Triton)
            hi = b
        else:
            hi = b.to(ref_ptr.dtype.element_ty).to(tl.float32)
        w = tl.where(rr == R, 1.0, w)
        w = tl.where(rr == R + 1, hi[:, None], w)
        w = tl.where(rr == R + 2, (b - hi)[:, None], w)
    if DOT_F32:  # noqa: SIM108 (a statement-level constexpr branch for Triton)
        out = w
    else:
        out = w.to(ref_ptr.dtype.element_ty)
    return out, b


@triton.jit
def _neg_exp(alog_ptr, k, D, g_idx, g_mask):
    """A = -exp(A_logs) of direction k, (BLOCK_G,) float32 (A_logs is (4 D, 1))."""
    return -tl.exp(tl.load(alog_ptr + k * D + g_idx, mask=g_mask, other=0.0).to(tl.float32))


@triton.jit
def _dsum(ds_ptr, D, g_idx, g_mask):
    """sum over the four directions of Ds (4 D,): the skip weight of each channel, (BLOCK_G,) float32."""
    d = tl.load(ds_ptr + g_idx, mask=g_mask, other=0.0).to(tl.float32)
    d += tl.load(ds_ptr + D + g_idx, mask=g_mask, other=0.0).to(tl.float32)
    d += tl.load(ds_ptr + 2 * D + g_idx, mask=g_mask, other=0.0).to(tl.float32)
    d += tl.load(ds_ptr + 3 * D + g_idx, mask=g_mask, other=0.0).to(tl.float32)
    return d


@triton.jit
def _disc2(
    dbl_row,  # pointer to dbl[b, k, 0, h, 0]
    extra,  # BIAS_DOT: (R_PAD, BLOCK_W) in the dot's dtype, what the rank tile holds past row R
    bias,  # not BIAS_DOT: (BLOCK_G,) float32 bias log2 e, added after the dot
    off,  # not BIAS_DOT: (BLOCK_W,) float32, 0 on the image, -1e30 off it (added after the dot)
    u,  # (BLOCK_G, BLOCK_W) float32 inputs of this row (0 off-image)
    wmat,  # (BLOCK_G, R_PAD) dt weights in the dot's dtype (``_dt_weights``)
    A,  # (BLOCK_G,) float32 = -exp(A_logs)
    r_idx,
    w_idx,
    w_mask,
    SDC: tl.constexpr,  # dbl strides (elements) along the projection row and the image column
    SDW: tl.constexpr,
    R: tl.constexpr,
    PREC: tl.constexpr,
    ACCURATE: tl.constexpr,
    ASM: tl.constexpr,
    BIAS_DOT: tl.constexpr,
):
    """(a, L * B * u) of one row: a = exp(delta A), delta = L ln 2 (L = delta in log2 units).

    BIAS_DOT: the rank tile gets three rows from ``extra`` (as the masked load's fill value): row
    R = -1e30 off-image (0 on it), rows R+1 and R+2 = 1, which meet the weights' 1 and bias columns.
    So the dot gives dt + bias, and off-image columns come out as the identity (1, 0) with no
    selects: e = 0, L = 0, a = 1 (and u = 0 there). Otherwise ``bias`` and ``off`` bring them.
    """
    if BIAS_DOT:
        dtr = tl.load(
            dbl_row + r_idx[:, None] * SDC + w_idx[None, :] * SDW,
            mask=(r_idx[:, None] < R) & w_mask[None, :],
            other=extra,
        )
        v = tl.dot(wmat, dtr.to(wmat.dtype), input_precision=PREC)
    else:
        dtr = tl.load(
            dbl_row + r_idx[:, None] * SDC + w_idx[None, :] * SDW,
            mask=(r_idx[:, None] < R) & w_mask[None, :],
            other=0.0,
        )
        v = tl.dot(wmat, dtr.to(wmat.dtype), input_precision=PREC) + bias[:, None] + off[None, :]
    L = _softplus2(v, ACCURATE, ASM)
    Bv = tl.load(dbl_row + R * SDC + w_idx * SDW, mask=w_mask, other=0.0).to(tl.float32)
    a = tl.exp2(L * A[:, None])
    return a, L * (Bv[None, :] * u)


@triton.jit
def _row_scan(a, b, carry, BLOCK_G: tl.constexpr, BLOCK_W: tl.constexpr, REVERSE: tl.constexpr):
    """h_w = a_w h_{w-1} + b_w along each row (right to left when REVERSE), entering with ``carry``.

    Two levels, so that the long part runs inside threads: the row is viewed as (BLOCK_W / 8) lanes
    of 8 in-register elements (the layout of the vectorised loads), scanned in registers; the lane
    totals are scanned across lanes and folded with the carry; each element then takes its lane's
    entry state. Returns (h, state after the row).

    No ``reverse=True`` scans: Triton lowers those with many shuffles (160 per thread and row in
    Triton 3.6). Right to left instead flips the in-register axis (free: register renaming) and
    reverses the 8 lane totals with one gather.
    """
    a3 = tl.reshape(a, [BLOCK_G, BLOCK_W // 8, 8])
    b3 = tl.reshape(b, [BLOCK_G, BLOCK_W // 8, 8])
    if REVERSE:
        a3 = tl.flip(a3, 2)
        b3 = tl.flip(b3, 2)
    ca, cb = tl.associative_scan((a3, b3), axis=2, combine_fn=_combine)
    j = tl.arange(0, 8)[None, None, :]
    li = tl.arange(0, BLOCK_W // 8)[None, :] + tl.zeros([BLOCK_G, BLOCK_W // 8], dtype=tl.int32)
    # Lane totals = the in-register scan at its last element. The -0.0 fill makes this in-register
    # "sum" fold to picking one register (x + -0.0 == x exactly).
    Pl = tl.sum(tl.where(j == 7, ca, -0.0), axis=2)
    Hl = tl.sum(tl.where(j == 7, cb, -0.0), axis=2)
    if REVERSE:  # scan the lanes from the right: reverse their order, scan, index back
        Pl = tl.gather(Pl, BLOCK_W // 8 - 1 - li, axis=1)
        Hl = tl.gather(Hl, BLOCK_W // 8 - 1 - li, axis=1)
    Pi, Hi = tl.associative_scan((Pl, Hl), axis=1, combine_fn=_combine)
    T = Hi + Pi * carry[:, None]  # state after each lane (in scan order)
    E = tl.gather(T, tl.maximum(li - 1, 0), axis=1)
    E = tl.where(li == 0, carry[:, None], E)  # state entering each lane (in scan order)
    out = tl.sum(tl.where(li == BLOCK_W // 8 - 1, T, 0.0), axis=1)
    if REVERSE:
        E = tl.gather(E, BLOCK_W // 8 - 1 - li, axis=1)
    h = cb + ca * E[:, :, None]
    if REVERSE:
        h = tl.flip(h, 2)
    return tl.reshape(h, [BLOCK_G, BLOCK_W]), out


@triton.jit
def cross_scan_kernel_v2(
    x_ptr,  # (B, D, H, W) any float dtype, any strides (SX*)
    dbl_ptr,  # (B, 4, R + 2, H, W) in x's dtype, any strides (SD*)
    dtw_ptr,  # (4, D, R) dt_projs_weight, contiguous
    dtb_ptr,  # (4, D) dt_projs_bias, contiguous
    alog_ptr,  # (4 D, 1) A_logs, contiguous
    ds_ptr,  # (4 D,) Ds
    y_ptr,  # (B, D, H, W) float32, any strides (SY*)
    D,
    sxb,  # batch strides (elements) of x, y, dbl: runtime, the rest compile-time
    syb,
    sdb,
    # Strides compile-time: with H and W they give every row offset a known alignment, so row loads
    # vectorise along whichever axis is contiguous (w for (B, D, H, W) memory, channels for channels_last).
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
    BLOCK_W: tl.constexpr,
    ROWS: tl.constexpr,
    PREC: tl.constexpr,
    DOT_F32: tl.constexpr,
    ACCURATE: tl.constexpr,
    ASM: tl.constexpr,
    PREFETCH: tl.constexpr,  # load the next row's x (and y partial) before working on this one
    BIAS_DOT: tl.constexpr,  # bias and off-image mask as rows of the dot (else added after it)
):
    pid = tl.program_id(0)
    n_gblk = tl.cdiv(D, BLOCK_G)
    b = pid // n_gblk
    g0 = (pid % n_gblk) * BLOCK_G
    g_idx = g0 + tl.arange(0, BLOCK_G)
    g_mask = g_idx < D
    w_idx = tl.arange(0, BLOCK_W)
    w_mask = w_idx < W
    r_idx = tl.arange(0, R_PAD)
    # int64 bases: B*D*H*W overflows int32 at full batch sizes.
    x_base = x_ptr + b.to(tl.int64) * sxb
    y_base = y_ptr + b.to(tl.int64) * syb
    dbl_base = dbl_ptr + b.to(tl.int64) * sdb
    x_off = g_idx[:, None] * SXD + w_idx[None, :] * SXW
    y_off = g_idx[:, None] * SYD + w_idx[None, :] * SYW
    zero_i = tl.zeros([BLOCK_G, BLOCK_W], dtype=tl.int32)
    zero_r = tl.zeros([R_PAD, BLOCK_W], dtype=tl.int32)
    tile_mask = g_mask[:, None] & w_mask[None, :]
    w2 = w_idx[None, :] + zero_i

    A0 = _neg_exp(alog_ptr, 0, D, g_idx, g_mask)
    A1 = _neg_exp(alog_ptr, 1, D, g_idx, g_mask)
    A2 = _neg_exp(alog_ptr, 2, D, g_idx, g_mask)
    A3 = _neg_exp(alog_ptr, 3, D, g_idx, g_mask)
    dsum = _dsum(ds_ptr, D, g_idx, g_mask)
    wm0, b0 = _dt_weights(dtw_ptr, dtb_ptr, x_ptr, 0, D, g_idx, g_mask, r_idx, R, DOT_F32, BIAS_DOT)
    wm1, b1 = _dt_weights(dtw_ptr, dtb_ptr, x_ptr, 1, D, g_idx, g_mask, r_idx, R, DOT_F32, BIAS_DOT)
    wm2, b2 = _dt_weights(dtw_ptr, dtb_ptr, x_ptr, 2, D, g_idx, g_mask, r_idx, R, DOT_F32, BIAS_DOT)
    wm3, b3 = _dt_weights(dtw_ptr, dtb_ptr, x_ptr, 3, D, g_idx, g_mask, r_idx, R, DOT_F32, BIAS_DOT)
    # Rows appended to each dt-rank tile: R -> -1e30 off-image (0 on it), R+1 and R+2 -> 1 (bias hi, lo).
    rr = r_idx[:, None]
    ones = tl.where((rr == R + 1) | (rr == R + 2), 1.0, 0.0) + tl.zeros([R_PAD, BLOCK_W], dtype=tl.float32)
    extra_in = tl.where((rr == R) & (w_idx[None, :] >= W), -1e30, ones).to(wm0.dtype)
    extra_out = tl.where(rr == R, -1e30, ones).to(wm0.dtype)  # a row below the image: all identity
    # The same terms when the bias is added after the dot (not BIAS_DOT).
    off_in = tl.where(w_mask, 0.0, -1e30)
    off_out = tl.full([BLOCK_W], -1e30, tl.float32)
    n_it = tl.cdiv(H, ROWS)

    # ---- sweep A (top -> bottom): per-column aggregates of k=1 (down) and k=3 (up) ----------
    P1 = tl.full([BLOCK_G, BLOCK_W], 1.0, tl.float32)
    H1 = tl.zeros([BLOCK_G, BLOCK_W], dtype=tl.float32)
    P3 = tl.full([BLOCK_G, BLOCK_W], 1.0, tl.float32)
    H3 = tl.zeros([BLOCK_G, BLOCK_W], dtype=tl.float32)
    x_next = tl.load(x_base + x_off, mask=tile_mask, other=0.0)
    for it in range(n_it):
        for j in tl.static_range(ROWS):
            h = it * ROWS + j
            hh = tl.minimum(h, H - 1)  # rows past the image (H % ROWS) load row H-1, act as identity
            if H % ROWS == 0:
                extra = extra_in
                off = off_in
            else:
                extra = tl.where(zero_r + h < H, extra_in, extra_out)
                off = tl.where(h < H, off_in, off_out)
            if PREFETCH:
                u = x_next.to(tl.float32)
                x_next = tl.load(x_base + x_off + tl.minimum(h + 1, H - 1) * SXH, mask=tile_mask, other=0.0)
            else:
                u = tl.load(x_base + x_off + hh * SXH, mask=tile_mask, other=0.0).to(tl.float32)
            row = dbl_base + hh * SDH
            a1, bu1 = _disc2(
                row + 1 * SDK,
                extra,
                b1,
                off,
                u,
                wm1,
                A1,
                r_idx,
                w_idx,
                w_mask,
                SDC,
                SDW,
                R,
                PREC,
                ACCURATE,
                ASM,
                BIAS_DOT,
            )
            H1 = a1 * H1 + bu1
            P1 = P1 * a1
            a3, bu3 = _disc2(
                row + 3 * SDK,
                extra,
                b3,
                off,
                u,
                wm3,
                A3,
                r_idx,
                w_idx,
                w_mask,
                SDC,
                SDW,
                R,
                PREC,
                ACCURATE,
                ASM,
                BIAS_DOT,
            )
            H3 = H3 + P3 * bu3
            P3 = P3 * a3
    _, E1 = tl.associative_scan((P1, H1), axis=1, combine_fn=_combine)
    _, E3 = tl.associative_scan((P3, H3), axis=1, combine_fn=_combine, reverse=True)
    S1 = tl.gather(E1, tl.maximum(w2 - 1, 0), axis=1)
    S1 = tl.where(w2 == 0, 0.0, S1)
    S3 = tl.gather(E3, tl.minimum(w2 + 1, BLOCK_W - 1), axis=1)
    S3 = tl.where(w2 + 1 >= BLOCK_W, 0.0, S3)

    # ---- sweep C (bottom -> top): k=2 (rows reversed) and k=3; first write of y ---------------
    h3 = S3
    carry2 = tl.zeros([BLOCK_G], dtype=tl.float32)
    x_next = tl.load(x_base + x_off + (H - 1) * SXH, mask=tile_mask, other=0.0)
    for it in range(n_it):
        for j in tl.static_range(ROWS):
            h = n_it * ROWS - 1 - (it * ROWS + j)
            hh = tl.minimum(h, H - 1)  # rows past the image (H % ROWS) load row H-1, act as identity
            if H % ROWS == 0:
                extra = extra_in
                off = off_in
            else:
                extra = tl.where(zero_r + h < H, extra_in, extra_out)
                off = tl.where(h < H, off_in, off_out)
            m = tile_mask & (zero_i + h < H)
            if PREFETCH:
                u = x_next.to(tl.float32)
                nxt = tl.minimum(tl.maximum(h - 1, 0), H - 1)
                x_next = tl.load(x_base + x_off + nxt * SXH, mask=tile_mask, other=0.0)
            else:
                u = tl.load(x_base + x_off + hh * SXH, mask=tile_mask, other=0.0).to(tl.float32)
            row = dbl_base + hh * SDH
            a2, bu2 = _disc2(
                row + 2 * SDK,
                extra,
                b2,
                off,
                u,
                wm2,
                A2,
                r_idx,
                w_idx,
                w_mask,
                SDC,
                SDW,
                R,
                PREC,
                ACCURATE,
                ASM,
                BIAS_DOT,
            )
            h2, carry2 = _row_scan(a2, bu2, carry2, BLOCK_G, BLOCK_W, True)
            a3, bu3 = _disc2(
                row + 3 * SDK,
                extra,
                b3,
                off,
                u,
                wm3,
                A3,
                r_idx,
                w_idx,
                w_mask,
                SDC,
                SDW,
                R,
                PREC,
                ACCURATE,
                ASM,
                BIAS_DOT,
            )
            h3 = a3 * h3 + bu3
            C2 = tl.load(row + 2 * SDK + (R + 1) * SDC + w_idx * SDW, mask=w_mask, other=0.0).to(tl.float32)
            C3 = tl.load(row + 3 * SDK + (R + 1) * SDC + w_idx * SDW, mask=w_mask, other=0.0).to(tl.float32)
            y = C2[None, :] * h2 + C3[None, :] * h3
            tl.store(y_base + y_off + h * SYH, y, mask=m)

    # ---- sweep B (top -> bottom): k=0 and k=1, the ln 2 of delta and the D skip; y += --------
    h1 = S1
    carry0 = tl.zeros([BLOCK_G], dtype=tl.float32)
    # y written by sweep C is read back by other threads of this program: order the two sweeps.
    tl.debug_barrier()
    x_next = tl.load(x_base + x_off, mask=tile_mask, other=0.0)
    y_next = tl.load(y_base + y_off, mask=tile_mask, other=0.0)
    for it in range(n_it):
        for j in tl.static_range(ROWS):
            h = it * ROWS + j
            hh = tl.minimum(h, H - 1)  # rows past the image (H % ROWS) load row H-1, act as identity
            if H % ROWS == 0:
                extra = extra_in
                off = off_in
            else:
                extra = tl.where(zero_r + h < H, extra_in, extra_out)
                off = tl.where(h < H, off_in, off_out)
            m = tile_mask & (zero_i + h < H)
            ptrs = y_base + y_off + h * SYH
            if PREFETCH:
                u = x_next.to(tl.float32)
                yc = y_next
                nxt = tl.minimum(h + 1, H - 1)
                x_next = tl.load(x_base + x_off + nxt * SXH, mask=tile_mask, other=0.0)
                y_next = tl.load(y_base + y_off + nxt * SYH, mask=tile_mask, other=0.0)
            else:
                u = tl.load(x_base + x_off + hh * SXH, mask=tile_mask, other=0.0).to(tl.float32)
                yc = tl.load(ptrs, mask=m, other=0.0)
            row = dbl_base + hh * SDH
            a0, bu0 = _disc2(
                row + 0 * SDK,
                extra,
                b0,
                off,
                u,
                wm0,
                A0,
                r_idx,
                w_idx,
                w_mask,
                SDC,
                SDW,
                R,
                PREC,
                ACCURATE,
                ASM,
                BIAS_DOT,
            )
            h0, carry0 = _row_scan(a0, bu0, carry0, BLOCK_G, BLOCK_W, False)
            a1, bu1 = _disc2(
                row + 1 * SDK,
                extra,
                b1,
                off,
                u,
                wm1,
                A1,
                r_idx,
                w_idx,
                w_mask,
                SDC,
                SDW,
                R,
                PREC,
                ACCURATE,
                ASM,
                BIAS_DOT,
            )
            h1 = a1 * h1 + bu1
            C0 = tl.load(row + 0 * SDK + (R + 1) * SDC + w_idx * SDW, mask=w_mask, other=0.0).to(tl.float32)
            C1 = tl.load(row + 1 * SDK + (R + 1) * SDC + w_idx * SDW, mask=w_mask, other=0.0).to(tl.float32)
            y = 0.6931471805599453 * (yc + C0[None, :] * h0 + C1[None, :] * h1) + dsum[:, None] * u
            tl.store(ptrs, y, mask=m)


# ------------------------------------------------------------------------------------------------
# img: the whole image in one tile, one pass (see scan_triton.py, "img")
# ------------------------------------------------------------------------------------------------


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
    h, w = _img_pixel(l_idx, H, W, COL, REV)
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
    wm, bias = _dt_weights(dtw_ptr, dtb_ptr, x_ptr, 0, D, g_idx, g_mask, r_idx, R, DOT_F32, BIAS_DOT)
    extra = tl.where((rr == R) & (l_idx[None, :] >= H * W), -1e30, ones).to(wm.dtype)
    y, u0 = _img_direction(
        x_base, d_base, wm, _neg_exp(alog_ptr, 0, D, g_idx, g_mask), extra, bias, off, g_idx, tile_mask,
        l_idx, l_mask, r_idx, SXD, SXH, SXW, SDC, SDH, SDW, H, W, R, False, False, PREC, ACCURATE, ASM,
        BIAS_DOT, BLOCK_G, BLOCK_L,
    )  # fmt: skip
    wm, bias = _dt_weights(dtw_ptr, dtb_ptr, x_ptr, 2, D, g_idx, g_mask, r_idx, R, DOT_F32, BIAS_DOT)
    yk, _ = _img_direction(
        x_base, d_base + 2 * SDK, wm, _neg_exp(alog_ptr, 2, D, g_idx, g_mask), extra, bias, off, g_idx,
        tile_mask, l_idx, l_mask, r_idx, SXD, SXH, SXW, SDC, SDH, SDW, H, W, R, False, True, PREC,
        ACCURATE, ASM, BIAS_DOT, BLOCK_G, BLOCK_L,
    )  # fmt: skip
    y += tl.gather(yk, (H * W - 1 - p)[None, :] + zero_i, axis=1)
    wm, bias = _dt_weights(dtw_ptr, dtb_ptr, x_ptr, 1, D, g_idx, g_mask, r_idx, R, DOT_F32, BIAS_DOT)
    yk, _ = _img_direction(
        x_base, d_base + 1 * SDK, wm, _neg_exp(alog_ptr, 1, D, g_idx, g_mask), extra, bias, off, g_idx,
        tile_mask, l_idx, l_mask, r_idx, SXD, SXH, SXW, SDC, SDH, SDW, H, W, R, True, False, PREC,
        ACCURATE, ASM, BIAS_DOT, BLOCK_G, BLOCK_L,
    )  # fmt: skip
    y += tl.gather(yk, col_step[None, :] + zero_i, axis=1)
    wm, bias = _dt_weights(dtw_ptr, dtb_ptr, x_ptr, 3, D, g_idx, g_mask, r_idx, R, DOT_F32, BIAS_DOT)
    yk, _ = _img_direction(
        x_base, d_base + 3 * SDK, wm, _neg_exp(alog_ptr, 3, D, g_idx, g_mask), extra, bias, off, g_idx,
        tile_mask, l_idx, l_mask, r_idx, SXD, SXH, SXW, SDC, SDH, SDW, H, W, R, True, True, PREC,
        ACCURATE, ASM, BIAS_DOT, BLOCK_G, BLOCK_L,
    )  # fmt: skip
    y += tl.gather(yk, (H * W - 1 - col_step)[None, :] + zero_i, axis=1)
    dsum = _dsum(ds_ptr, D, g_idx, g_mask)
    out = 0.6931471805599453 * y + dsum[:, None] * u0
    y_off = g_idx[:, None] * SYD + ((p // W) * SYH + (p % W) * SYW)[None, :]
    tl.store(y_base + y_off, out, mask=tile_mask)
