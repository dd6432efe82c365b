"""Triton helpers shared by the cross-scan kernels: the combine of linear recurrences, log2-domain
softplus, and the per-program parameter loads (dt weights with the bias rows, A, the summed D skip).

Triton resolves a helper ``@triton.jit`` function through the calling kernel's module globals, so
each kernel file imports the helpers it calls by name.
"""

import triton
import triton.language as tl


@triton.jit
def _combine(a1, b1, a2, b2):
    # (a1, b1) applied first, then (a2, b2):  h -> a2 * (a1 * h + b1) + b2
    return a1 * a2, a2 * b1 + b2


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
