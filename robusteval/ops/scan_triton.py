"""``triton`` scan backend: fused VMamba cross selective scan for d_state = 1 (inference only).

What one kernel launch does, per image b and block of G channels (one program each):

* reads x (B, D, H, W) and the per-pixel projections ``dbl = x_proj_weight @ x`` (B, 4, R+2, H, W)
  in **pixel order** — the four scan orders are index math, never materialised copies;
* forms dt = dt_projs_weight[k] @ dbl[k, :R] in registers (R fused multiply-adds per element),
  delta = softplus(dt + bias) and a = exp(delta * A) in float32;
* runs the four scalar recurrences h = a * h + delta * B * u, adds C * h and the summed D skip,
  and writes y (B, D, H, W) float32.

Work goes row by row over a (G, W) register tile. Row-major directions (k = 0, 2) need a scan
along the row (``tl.associative_scan``, reversed for k = 2) plus a scalar carry per channel between
rows. Column-major directions (k = 1, 3) advance one step per row for every column at once; the
state entering column w is the end state of the column before it (k = 1) or after it (k = 3), which
depends on the whole image. Hence three sweeps over the rows:

  A (top → bottom)  column aggregates for k = 1, 3  → entry states S1[w], S3[w] (scan over columns)
  C (bottom → top)  k = 2 and k = 3, store y
  B (top → bottom)  k = 0 and k = 1 and the D skip, y += (read-modify-write)

The sweeps run serpentine (A ends where C starts, C ends where B starts), so the rows re-read by the
next sweep are the most recently touched ones. HBM bytes model (``hbm_bytes``): x once, dbl once,
y once (written; the second touch is meant to hit L2), weights; the kernel also re-reads x twice and
y once from L2 when the per-program slab stays resident (G*H*W*(x bytes + 4) per program).

The x projection (``dbl``) runs before the kernel as one batched GEMM over x; it needs every channel
of a pixel, while a program owns only G channels of the whole image.

Measured (H100, VMamba-B stage 1, batch 128, bf16): 4.6 ms for the kernel, about 5% of the HBM
roofline of this bytes model — far from the 80% target, although 6.8x faster end to end than the
mamba-ssm path (32 ms with its cross-scan copies; its kernel alone 2.7 ms). The kernel is latency
bound: every program walks 3 x H dependent row steps (load, dt, softplus, scan, store) with few
warps per SM (ptxas: 205-255 registers per thread at 8-16 elements per thread). Next steps, in
order of expected gain: several rows per step (fewer, larger dependent steps), prefetching the next
row's loads, fewer live tiles (store S1/S3 instead of carrying them through a sweep).
"""

from __future__ import annotations

import os
from typing import Any

import torch

from robusteval.ops.selective_scan import SCAN_BACKENDS, BackendUnavailable, ScanOps

# Tile: channels per program, warps, dt on tensor cores. Fastest of the configurations swept by
# scripts/bench_scan.py --sweep on the H100 (VMamba-B stage 1, bf16, batch 128): 4.67 ms.
DEFAULT_CONFIG = {"block_g": 16, "num_warps": 2, "dt_dot": True}

_KERNEL: Any = None


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _build_kernel() -> Any:
    from robusteval.ops import scan_triton_kernels

    return scan_triton_kernels.cross_scan_kernel


def _kernel() -> Any:
    global _KERNEL
    if _KERNEL is None:
        _KERNEL = _build_kernel()
    return _KERNEL


def projections(x: torch.Tensor, x_proj_weight: torch.Tensor) -> torch.Tensor:
    """dbl = x_proj_weight @ x per pixel: (B, 4, R+2N, H, W) in x's dtype (one batched GEMM)."""
    B, D, H, W = x.shape
    K, CD, _ = x_proj_weight.shape
    w = x_proj_weight.to(x.dtype).reshape(K * CD, D)
    return torch.matmul(w, x.reshape(B, D, H * W)).view(B, K, CD, H, W)


def cross_selective_scan_triton(
    x: torch.Tensor,
    *,
    x_proj_weight: torch.Tensor,
    dt_projs_weight: torch.Tensor,
    dt_projs_bias: torch.Tensor,
    A_logs: torch.Tensor,
    Ds: torch.Tensor,
    block_g: int | None = None,
    num_warps: int | None = None,
    dt_dot: bool | None = None,
) -> torch.Tensor:
    """Fused forward of :func:`~robusteval.ops.selective_scan.cross_selective_scan` (d_state = 1).

    Returns float32 (B, D, H, W). ``block_g`` / ``num_warps`` override :data:`DEFAULT_CONFIG`.
    """
    R = int(dt_projs_weight.shape[-1])
    if x_proj_weight.shape[1] != R + 2:
        raise ValueError(
            f"the triton scan needs d_state = 1 (x_proj_weight rows {x_proj_weight.shape[1]} != R + 2 = {R + 2})"
        )
    x = x.contiguous()
    dbl = projections(x, x_proj_weight).contiguous()
    return fused_kernel_only(
        x,
        dbl,
        dt_projs_weight=dt_projs_weight,
        dt_projs_bias=dt_projs_bias,
        A_logs=A_logs,
        Ds=Ds,
        block_g=block_g,
        num_warps=num_warps,
        dt_dot=dt_dot,
    )


def fused_kernel_only(
    x: torch.Tensor,
    dbl: torch.Tensor,
    *,
    dt_projs_weight: torch.Tensor,
    dt_projs_bias: torch.Tensor,
    A_logs: torch.Tensor,
    Ds: torch.Tensor,
    block_g: int | None = None,
    num_warps: int | None = None,
    dt_dot: bool | None = None,
    **_: object,
) -> torch.Tensor:
    """The kernel launch alone, on contiguous x (B, D, H, W) and dbl = :func:`projections` (x)."""
    import triton

    B, D, H, W = x.shape
    K = 4
    R = int(dt_projs_weight.shape[-1])
    wdt = dt_projs_weight.detach().float().reshape(K, D, R).contiguous()
    bias = dt_projs_bias.detach().float().reshape(K, D).contiguous()
    A = (-torch.exp(A_logs.detach().float())).reshape(K, D).contiguous()
    dsum = Ds.detach().float().reshape(K, D).sum(0).contiguous()
    y = torch.empty(B, D, H, W, device=x.device, dtype=torch.float32)
    bg = int(block_g or DEFAULT_CONFIG["block_g"])
    nw = int(num_warps or DEFAULT_CONFIG["num_warps"])
    # tl.dot needs every matrix side >= 16: pad the rank and the row width, and keep >= 16 channels.
    dot = bool(DEFAULT_CONFIG["dt_dot"] if dt_dot is None else dt_dot) and bg >= 16
    block_w = max(16, triton.next_power_of_2(W)) if dot else triton.next_power_of_2(W)
    r_pad = max(16, triton.next_power_of_2(R)) if dot else triton.next_power_of_2(R)
    grid = (B * triton.cdiv(D, bg),)
    _kernel()[grid](
        x,
        dbl,
        wdt,
        bias,
        A,
        dsum,
        y,
        D,
        H,
        W,
        R=R,
        R_PAD=r_pad,
        BLOCK_G=bg,
        BLOCK_W=block_w,
        DT_DOT=dot,
        # float32 inputs: three tf32 passes keep dt at float32 accuracy; 16-bit inputs multiply natively.
        PREC="tf32x3" if x.dtype == torch.float32 or _interpreting() else "tf32",
        DOT_F32=x.dtype == torch.float32 or _interpreting(),
        num_warps=nw,
    )
    return y


def hbm_bytes(*, B: int, D: int, H: int, W: int, R: int, in_bytes: int) -> int:
    """Fewest HBM bytes the fused kernel must move: x and dbl read once, y (float32) written once."""
    L = H * W
    return B * D * L * in_bytes + B * 4 * (R + 2) * L * in_bytes + B * D * L * 4 + 4 * D * (R + 3) * 4


def _supports(kind: str, t: torch.Tensor, d_state: int) -> bool:
    return (
        kind == "cross"
        and d_state == 1
        and (t.is_cuda or _interpreting())
        and t.dtype in (torch.float32, torch.float16, torch.bfloat16)
    )


@SCAN_BACKENDS.register("triton", rank=10, devices="cuda (or TRITON_INTERPRET=1 on CPU)", d_state="1")
def _triton_backend() -> ScanOps:
    """Fused cross-scan + softplus discretisation + scan + D skip + cross-merge (cross_selective_scan only)."""
    try:
        import triton  # noqa: F401
    except Exception as err:
        raise BackendUnavailable(f"triton is not importable ({err}); `pip install triton`") from None
    if not (torch.cuda.is_available() or _interpreting()):
        raise BackendUnavailable("no CUDA device (TRITON_INTERPRET=1 runs the kernel on CPU, slowly)")
    return ScanOps(
        name="triton",
        selective_scan=None,
        cross_selective_scan=cross_selective_scan_triton,
        supports=_supports,
    )
