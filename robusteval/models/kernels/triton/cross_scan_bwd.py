"""Chunked cross scan: a plain forward in any float dtype, and the fused backward (d_state = 1).

One program per (image, block of BLOCK_G channels) walks the four directions in turn; each direction
runs over its own scan order (index math on the pixel-order tensors, as in the ``img`` kernel) in
chunks of BLOCK_L steps: a tile scan (``tl.associative_scan``) per chunk with the state carried
between chunks. The arithmetic dtype is the output's (float32, or float64 for float64 inputs), with
IEEE dots: this is the numerically plain path the fast forward kernels are checked against, and the
one gradcheck differentiates.

Backward, per direction k and channel (scan order t, h_{-1} = 0, a_t = exp(delta_t A),
delta_t = softplus(v_t), v_t = W_k dbl_t[:R] + bias):

    h_t  = a_t h_{t-1} + delta_t B_t u_t             (forward, recomputed per chunk from the
                                                      chunk-start states of a first pass)
    gh_t = gy_t C_t + a_{t+1} gh_{t+1}               (reverse tile scan, carry from the next chunk)
    gdelta_t = gh_t (h_{t-1} a_t A + B_t u_t),  gv_t = gdelta_t sigmoid(v_t)
    gu_t += gh_t delta_t B_t;  gB_t += sum_c gh_t delta_t u_t;  gC_t += sum_c gy_t h_t
    gW_k += gv dbl[:R]^T;  gdbl[:R] += W_k^T gv;  gbias_k += sum_t gv_t;  gA_k += sum_t gh_t h_{t-1} a_t delta_t

plus the D skip (y += sum_k D_k u): gu += (sum_k D_k) gy, gD_k = sum_pixels gy u. A program owns its
channels of gx (read-modify-write, a barrier between directions); gdbl (summed over channel blocks)
and the parameter gradients (summed over images) are atomic adds into zeroed buffers.
"""

import triton
import triton.language as tl
from robusteval.models.kernels.triton.common import _combine


@triton.jit
def _step_pixels(s, H, W, COL: tl.constexpr, REV: tl.constexpr):
    """(h, w) that a direction visits at step s: row-major (COL False) or column-major, reversed if
    REV. Steps past H W clamp to a pixel (callers mask them)."""
    t = tl.minimum(s, H * W - 1)
    if REV:
        t = H * W - 1 - t
    if COL:
        h = t % H
        w = t // H
    else:
        h = t // W
        w = t % W
    return h, w


@triton.jit
def _col(t, j, at):
    """Column ``at`` of a (BLOCK_G, BLOCK_L) tile as a (BLOCK_G,) vector."""
    return tl.sum(tl.where(j[None, :] == at, t, 0.0), axis=1)


@triton.jit
def _chunk(
    x_base,
    d_base,  # dbl[b, k] (pointer)
    wm,  # (BLOCK_G, R_PAD) dt_projs_weight[k] rows, ACC
    bias,  # (BLOCK_G,) dt_projs_bias[k], ACC
    A,  # (BLOCK_G,) -exp(A_logs[k]), ACC
    s,  # (BLOCK_L,) steps of this chunk
    g_idx,
    g_mask,
    r_idx,
    H,
    W,
    sxd,
    sxh,
    sxw,
    sdc,
    sdh,
    sdw,
    R: tl.constexpr,
    COL: tl.constexpr,
    REV: tl.constexpr,
    ACC: tl.constexpr,
):
    """Load and discretise one chunk of one direction. Steps past H W and channels past D are the
    identity (a = 1, b = 0) with u = B = C = 0."""
    s_mask = s < H * W
    h, w = _step_pixels(s, H, W, COL, REV)
    m = g_mask[:, None] & s_mask[None, :]
    u = tl.load(x_base + g_idx[:, None] * sxd + (h * sxh + w * sxw)[None, :], mask=m, other=0.0).to(ACC)
    drow = d_base + h * sdh + w * sdw
    dtr = tl.load(
        drow[None, :] + r_idx[:, None] * sdc, mask=(r_idx[:, None] < R) & s_mask[None, :], other=0.0
    ).to(ACC)
    Bv = tl.load(drow + R * sdc, mask=s_mask, other=0.0).to(ACC)
    Cv = tl.load(drow + (R + 1) * sdc, mask=s_mask, other=0.0).to(ACC)
    v = tl.dot(wm, dtr, input_precision="ieee") + bias[:, None]
    e = tl.exp(v)
    # softplus as mamba-ssm computes it (v > 20 -> v); exp(v) where 1 + e rounds to 1
    delta = tl.where(v > 20.0, v, tl.where(v < -15.0, e, tl.log(1.0 + e)))
    a = tl.where(m, tl.exp(delta * A[:, None]), 1.0)
    bu = tl.where(m, delta * Bv[None, :] * u, 0.0)
    return u, dtr, Bv, Cv, v, delta, a, bu, h, w, m


@triton.jit
def _direction_params(
    dtw_ptr, dtb_ptr, alog_ptr, k, D, g_idx, g_mask, r_idx, R: tl.constexpr, ACC: tl.constexpr
):
    """Direction k's dt weights (BLOCK_G, R_PAD), bias and A = -exp(A_logs) (BLOCK_G,), in ACC."""
    wm = tl.load(
        dtw_ptr + (k * D + g_idx[:, None]) * R + r_idx[None, :],
        mask=g_mask[:, None] & (r_idx[None, :] < R),
        other=0.0,
    ).to(ACC)
    bias = tl.load(dtb_ptr + k * D + g_idx, mask=g_mask, other=0.0).to(ACC)
    A = -tl.exp(tl.load(alog_ptr + k * D + g_idx, mask=g_mask, other=0.0).to(ACC))
    return wm, bias, A


@triton.jit
def cross_scan_fwd_chunked_kernel(
    x_ptr,  # (B, D, H, W) any float dtype, strides sx*
    dbl_ptr,  # (B, 4, R + 2, H, W), strides sd*
    dtw_ptr,  # (4, D, R) contiguous
    dtb_ptr,  # (4, D) contiguous
    alog_ptr,  # (4 D, 1) contiguous
    ds_ptr,  # (4 D,)
    y_ptr,  # (B, D, H, W) float32 or float64 (the arithmetic dtype), strides sy*
    D,
    H,
    W,
    sxb,
    sxd,
    sxh,
    sxw,
    sdb,
    sdk,
    sdc,
    sdh,
    sdw,
    syb,
    syd,
    syh,
    syw,
    R: tl.constexpr,
    R_PAD: tl.constexpr,
    BLOCK_G: tl.constexpr,
    BLOCK_L: tl.constexpr,
):
    ACC: tl.constexpr = y_ptr.dtype.element_ty
    pid = tl.program_id(0)
    n_gblk = tl.cdiv(D, BLOCK_G)
    b = pid // n_gblk
    g_idx = (pid % n_gblk) * BLOCK_G + tl.arange(0, BLOCK_G)
    g_mask = g_idx < D
    r_idx = tl.arange(0, R_PAD)
    j = tl.arange(0, BLOCK_L)
    x_base = x_ptr + b.to(tl.int64) * sxb
    d_base = dbl_ptr + b.to(tl.int64) * sdb
    y_base = y_ptr + b.to(tl.int64) * syb
    n_chunks = tl.cdiv(H * W, BLOCK_L)
    dsum = tl.zeros([BLOCK_G], dtype=ACC)
    for k in tl.static_range(4):
        dsum += tl.load(ds_ptr + k * D + g_idx, mask=g_mask, other=0.0).to(ACC)
    for k in tl.static_range(4):
        wm, bias, A = _direction_params(dtw_ptr, dtb_ptr, alog_ptr, k, D, g_idx, g_mask, r_idx, R=R, ACC=ACC)
        carry = tl.zeros([BLOCK_G], dtype=ACC)
        for c in range(n_chunks):
            u, dtr, Bv, Cv, v, delta, a, bu, h, w, m = _chunk(
                x_base=x_base, d_base=d_base + k * sdk, wm=wm, bias=bias, A=A, s=c * BLOCK_L + j,
                g_idx=g_idx, g_mask=g_mask, r_idx=r_idx, H=H, W=W, sxd=sxd, sxh=sxh, sxw=sxw,
                sdc=sdc, sdh=sdh, sdw=sdw, R=R, COL=k % 2 == 1, REV=k >= 2, ACC=ACC,
            )  # fmt: skip
            ca, cb = tl.associative_scan((a, bu), axis=1, combine_fn=_combine)
            hs = cb + ca * carry[:, None]
            carry = _col(hs, j, BLOCK_L - 1)
            ptrs = y_base + g_idx[:, None] * syd + (h * syh + w * syw)[None, :]
            yk = Cv[None, :] * hs
            if k == 0:
                yk += dsum[:, None] * u
            else:
                yk += tl.load(ptrs, mask=m, other=0.0)
            tl.store(ptrs, yk, mask=m)
        tl.debug_barrier()  # the next direction reads y in another order (other threads)


@triton.jit
def cross_scan_bwd_kernel(
    x_ptr,  # (B, D, H, W) strides sx*
    dbl_ptr,  # (B, 4, R + 2, H, W) strides sd*
    dtw_ptr,  # (4, D, R) contiguous
    dtb_ptr,  # (4, D) contiguous
    alog_ptr,  # (4 D, 1) contiguous
    ds_ptr,  # (4 D,)
    gy_ptr,  # (B, D, H, W) gradient of y, strides sg*
    gx_ptr,  # (B, D, H, W) ACC contiguous, written (the scan's part of x's gradient)
    gdbl_ptr,  # (B, 4, R + 2, H, W) ACC contiguous, zeroed (atomic adds)
    gdtw_ptr,  # (4, D, R) ACC zeroed
    gdtb_ptr,  # (4, D) ACC zeroed
    galog_ptr,  # (4 D,) ACC zeroed
    gds_ptr,  # (4 D,) ACC zeroed
    hs_ptr,  # (B, 4, n_chunks, D) ACC scratch: the state entering each chunk
    D,
    H,
    W,
    sxb,
    sxd,
    sxh,
    sxw,
    sdb,
    sdk,
    sdc,
    sdh,
    sdw,
    sgb,
    sgd,
    sgh,
    sgw,
    R: tl.constexpr,
    R_PAD: tl.constexpr,
    BLOCK_G: tl.constexpr,
    BLOCK_L: tl.constexpr,
):
    ACC: tl.constexpr = gx_ptr.dtype.element_ty
    pid = tl.program_id(0)
    n_gblk = tl.cdiv(D, BLOCK_G)
    b = pid // n_gblk
    g_idx = (pid % n_gblk) * BLOCK_G + tl.arange(0, BLOCK_G)
    g_mask = g_idx < D
    r_idx = tl.arange(0, R_PAD)
    j = tl.arange(0, BLOCK_L)
    zero_j = tl.zeros([BLOCK_G, BLOCK_L], dtype=tl.int32) + j[None, :]
    L = H * W
    n_chunks = tl.cdiv(L, BLOCK_L)
    x_base = x_ptr + b.to(tl.int64) * sxb
    d_base = dbl_ptr + b.to(tl.int64) * sdb
    gy_base = gy_ptr + b.to(tl.int64) * sgb
    gx_base = gx_ptr + b.to(tl.int64) * D * L
    gd_base = gdbl_ptr + b.to(tl.int64) * 4 * (R + 2) * L
    hs_base = hs_ptr + b.to(tl.int64) * 4 * n_chunks * D

    # D skip, in pixel order: gx = (sum_k D_k) gy (initialises gx), gD_k = sum gy u (the same for every k)
    dsum = tl.zeros([BLOCK_G], dtype=ACC)
    for k in tl.static_range(4):
        dsum += tl.load(ds_ptr + k * D + g_idx, mask=g_mask, other=0.0).to(ACC)
    gD = tl.zeros([BLOCK_G], dtype=ACC)
    for c in range(n_chunks):
        p = c * BLOCK_L + j
        m = g_mask[:, None] & (p < L)[None, :]
        ph = p // W
        pw = p % W
        u = tl.load(x_base + g_idx[:, None] * sxd + (ph * sxh + pw * sxw)[None, :], mask=m, other=0.0)
        gy = tl.load(gy_base + g_idx[:, None] * sgd + (ph * sgh + pw * sgw)[None, :], mask=m, other=0.0)
        gy = gy.to(ACC)
        tl.store(gx_base + g_idx[:, None] * L + p[None, :], dsum[:, None] * gy, mask=m)
        gD += tl.sum(gy * u.to(ACC), axis=1)
    for k in tl.static_range(4):
        tl.atomic_add(gds_ptr + k * D + g_idx, gD, mask=g_mask)
    tl.debug_barrier()

    for k in tl.static_range(4):
        wm, bias, A = _direction_params(dtw_ptr, dtb_ptr, alog_ptr, k, D, g_idx, g_mask, r_idx, R=R, ACC=ACC)
        # pass 1: the state entering each chunk
        carry = tl.zeros([BLOCK_G], dtype=ACC)
        for c in range(n_chunks):
            tl.store(hs_base + (k * n_chunks + c) * D + g_idx, carry, mask=g_mask)
            u, dtr, Bv, Cv, v, delta, a, bu, h, w, m = _chunk(
                x_base=x_base, d_base=d_base + k * sdk, wm=wm, bias=bias, A=A, s=c * BLOCK_L + j,
                g_idx=g_idx, g_mask=g_mask, r_idx=r_idx, H=H, W=W, sxd=sxd, sxh=sxh, sxw=sxw,
                sdc=sdc, sdh=sdh, sdw=sdw, R=R, COL=k % 2 == 1, REV=k >= 2, ACC=ACC,
            )  # fmt: skip
            ca, cb = tl.associative_scan((a, bu), axis=1, combine_fn=_combine)
            carry = _col(cb + ca * carry[:, None], j, BLOCK_L - 1)
        tl.debug_barrier()
        # pass 2: chunks last to first; carries = gh and a at the first step of the next chunk
        gh_next = tl.zeros([BLOCK_G], dtype=ACC)
        a_next = tl.full([BLOCK_G], 1.0, ACC)
        gW = tl.zeros([BLOCK_G, R_PAD], dtype=ACC)
        gbias = tl.zeros([BLOCK_G], dtype=ACC)
        gA = tl.zeros([BLOCK_G], dtype=ACC)
        for i in range(n_chunks):
            c = n_chunks - 1 - i
            h0 = tl.load(hs_base + (k * n_chunks + c) * D + g_idx, mask=g_mask, other=0.0)
            u, dtr, Bv, Cv, v, delta, a, bu, h, w, m = _chunk(
                x_base=x_base, d_base=d_base + k * sdk, wm=wm, bias=bias, A=A, s=c * BLOCK_L + j,
                g_idx=g_idx, g_mask=g_mask, r_idx=r_idx, H=H, W=W, sxd=sxd, sxh=sxh, sxw=sxw,
                sdc=sdc, sdh=sdh, sdw=sdw, R=R, COL=k % 2 == 1, REV=k >= 2, ACC=ACC,
            )  # fmt: skip
            ca, cb = tl.associative_scan((a, bu), axis=1, combine_fn=_combine)
            hs = cb + ca * h0[:, None]
            h_prev = tl.where(zero_j == 0, h0[:, None], tl.gather(hs, tl.maximum(zero_j - 1, 0), axis=1))
            gy = tl.load(gy_base + g_idx[:, None] * sgd + (h * sgh + w * sgw)[None, :], mask=m, other=0.0)
            gy = gy.to(ACC)
            a_shift = tl.where(
                zero_j == BLOCK_L - 1,
                a_next[:, None],
                tl.gather(a, tl.minimum(zero_j + 1, BLOCK_L - 1), axis=1),
            )
            ra, rb = tl.associative_scan(
                (a_shift, gy * Cv[None, :]), axis=1, combine_fn=_combine, reverse=True
            )
            gh = rb + ra * gh_next[:, None]
            gh_next = _col(gh, j, 0)
            a_next = _col(a, j, 0)
            ga = gh * h_prev * a  # the gradient of the exponent delta_t A of a_t
            gA += tl.sum(ga * delta, axis=1)
            gdelta = ga * A[:, None] + gh * Bv[None, :] * u
            gv = tl.where(m, gdelta / (1.0 + tl.exp(-v)), 0.0)
            gbias += tl.sum(gv, axis=1)
            gW += tl.dot(gv, tl.trans(dtr), input_precision="ieee")
            pix = h * W + w
            gx_ptrs = gx_base + g_idx[:, None] * L + pix[None, :]
            tl.store(gx_ptrs, tl.load(gx_ptrs, mask=m, other=0.0) + gh * delta * Bv[None, :], mask=m)
            s_mask = (c * BLOCK_L + j) < L
            gd_k = gd_base + k * (R + 2) * L
            gdr = tl.dot(tl.trans(wm), gv, input_precision="ieee")  # (R_PAD, BLOCK_L)
            tl.atomic_add(
                gd_k + r_idx[:, None] * L + pix[None, :], gdr, mask=(r_idx[:, None] < R) & s_mask[None, :]
            )
            tl.atomic_add(gd_k + R * L + pix, tl.sum(gh * delta * u, axis=0), mask=s_mask)
            tl.atomic_add(gd_k + (R + 1) * L + pix, tl.sum(gy * hs, axis=0), mask=s_mask)
        w_mask = g_mask[:, None] & (r_idx[None, :] < R)
        tl.atomic_add(gdtw_ptr + (k * D + g_idx[:, None]) * R + r_idx[None, :], gW, mask=w_mask)
        tl.atomic_add(gdtb_ptr + k * D + g_idx, gbias, mask=g_mask)
        tl.atomic_add(galog_ptr + k * D + g_idx, gA * A, mask=g_mask)  # dA / dA_logs = A
        tl.debug_barrier()  # the next direction updates gx in another order (other threads)
