"""Row-by-row fused cross scan (``rows``; was ``v2``): one program per (image, block of channels)
holds a (BLOCK_G, W) tile and sweeps the rows three times.

Row-major directions (k = 0, 2) scan along the row with a carry per channel between rows;
column-major ones (k = 1, 3) advance one step per row for every column at once, but the state
entering column w depends on the whole image, hence three sweeps: A (top to bottom) column
aggregates of k = 1, 3 give the entry states; C (bottom to top) k = 2, 3, store y; B (top to
bottom) k = 0, 1 and the D skip, y +=. Log2-domain weights make the dot yield (dt + bias) log2 e;
a two-level row scan (8 elements in registers, lane totals across lanes). Measurements:
reports/bench/scan_h100.md.
"""

import triton
import triton.language as tl
from robusteval.models.kernels.triton.common import _combine, _dsum, _dt_weights, _neg_exp, _softplus2


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
    wm0, b0 = _dt_weights(
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
    wm1, b1 = _dt_weights(
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
    wm2, b2 = _dt_weights(
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
    wm3, b3 = _dt_weights(
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
                dbl_row=row + 1 * SDK,
                extra=extra,
                bias=b1,
                off=off,
                u=u,
                wmat=wm1,
                A=A1,
                r_idx=r_idx,
                w_idx=w_idx,
                w_mask=w_mask,
                SDC=SDC,
                SDW=SDW,
                R=R,
                PREC=PREC,
                ACCURATE=ACCURATE,
                ASM=ASM,
                BIAS_DOT=BIAS_DOT,
            )
            H1 = a1 * H1 + bu1
            P1 = P1 * a1
            a3, bu3 = _disc2(
                dbl_row=row + 3 * SDK,
                extra=extra,
                bias=b3,
                off=off,
                u=u,
                wmat=wm3,
                A=A3,
                r_idx=r_idx,
                w_idx=w_idx,
                w_mask=w_mask,
                SDC=SDC,
                SDW=SDW,
                R=R,
                PREC=PREC,
                ACCURATE=ACCURATE,
                ASM=ASM,
                BIAS_DOT=BIAS_DOT,
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
                dbl_row=row + 2 * SDK,
                extra=extra,
                bias=b2,
                off=off,
                u=u,
                wmat=wm2,
                A=A2,
                r_idx=r_idx,
                w_idx=w_idx,
                w_mask=w_mask,
                SDC=SDC,
                SDW=SDW,
                R=R,
                PREC=PREC,
                ACCURATE=ACCURATE,
                ASM=ASM,
                BIAS_DOT=BIAS_DOT,
            )
            h2, carry2 = _row_scan(a2, bu2, carry2, BLOCK_G, BLOCK_W, True)
            a3, bu3 = _disc2(
                dbl_row=row + 3 * SDK,
                extra=extra,
                bias=b3,
                off=off,
                u=u,
                wmat=wm3,
                A=A3,
                r_idx=r_idx,
                w_idx=w_idx,
                w_mask=w_mask,
                SDC=SDC,
                SDW=SDW,
                R=R,
                PREC=PREC,
                ACCURATE=ACCURATE,
                ASM=ASM,
                BIAS_DOT=BIAS_DOT,
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
                dbl_row=row + 0 * SDK,
                extra=extra,
                bias=b0,
                off=off,
                u=u,
                wmat=wm0,
                A=A0,
                r_idx=r_idx,
                w_idx=w_idx,
                w_mask=w_mask,
                SDC=SDC,
                SDW=SDW,
                R=R,
                PREC=PREC,
                ACCURATE=ACCURATE,
                ASM=ASM,
                BIAS_DOT=BIAS_DOT,
            )
            h0, carry0 = _row_scan(a0, bu0, carry0, BLOCK_G, BLOCK_W, False)
            a1, bu1 = _disc2(
                dbl_row=row + 1 * SDK,
                extra=extra,
                bias=b1,
                off=off,
                u=u,
                wmat=wm1,
                A=A1,
                r_idx=r_idx,
                w_idx=w_idx,
                w_mask=w_mask,
                SDC=SDC,
                SDW=SDW,
                R=R,
                PREC=PREC,
                ACCURATE=ACCURATE,
                ASM=ASM,
                BIAS_DOT=BIAS_DOT,
            )
            h1 = a1 * h1 + bu1
            C0 = tl.load(row + 0 * SDK + (R + 1) * SDC + w_idx * SDW, mask=w_mask, other=0.0).to(tl.float32)
            C1 = tl.load(row + 1 * SDK + (R + 1) * SDC + w_idx * SDW, mask=w_mask, other=0.0).to(tl.float32)
            y = 0.6931471805599453 * (yc + C0[None, :] * h0 + C1[None, :] * h1) + dsum[:, None] * u
            tl.store(ptrs, y, mask=m)
