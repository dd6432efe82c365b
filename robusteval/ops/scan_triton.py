"""``triton`` scan backend: fused VMamba cross selective scan for d_state = 1 (inference only).

What one kernel launch does, per image b and block of G channels (one program each):

* reads x (B, D, H, W) and the per-pixel projections ``dbl = x_proj_weight @ x`` (B, 4, R+2, H, W)
  in **pixel order** — the four scan orders are index math, never materialised copies;
* forms dt = dt_projs_weight[k] @ dbl[k, :R] on the tensor cores, delta = softplus(dt + bias) and
  a = exp(delta * A) in float32;
* runs the four scalar recurrences h = a * h + delta * B * u, adds C * h and the summed D skip,
  and writes y (B, D, H, W) float32.

Work goes row by row over a (G, W) register tile. Row-major directions (k = 0, 2) need a scan
along the row plus a scalar carry per channel between rows. Column-major directions (k = 1, 3)
advance one step per row for every column at once; the state entering column w is the end state of
the column before it (k = 1) or after it (k = 3), which depends on the whole image. Hence three
sweeps over the rows:

  A (top → bottom)  column aggregates for k = 1, 3  → entry states S1[w], S3[w] (scan over columns)
  C (bottom → top)  k = 2 and k = 3, store y
  B (top → bottom)  k = 0 and k = 1 and the D skip, y += (read-modify-write)

The sweeps run serpentine (A ends where C starts, C ends where B starts), so the rows re-read by the
next sweep are the most recently touched ones. Each element is discretised 6 times (4 directions
plus the 2 aggregate passes); a single-pass design needs inter-program communication (the column
entry states depend on the whole image) and was not attempted. HBM bytes model (``hbm_bytes``): x
and dbl read once, y written once, weights.

Two kernels implement this plan (``KERNELS``):

* ``v1`` — the first version: dt by the dot with the bias added after, softplus through libdevice
  ``log``, selects for off-image columns, Triton's row scan plus a masked-sum carry pick; ≈540 SASS
  instructions per element for the six discretisations (offline sm_90 disassembly, 255 registers).
* ``v2`` — the same sweeps with less arithmetic per element (≈140 instructions, 128 registers):
  log2-domain weights (W log2 e, bias log2 e) so that the dot yields dt + bias directly (the bias as
  a hi + lo pair, exact to ~2^-16 in a 16-bit dot); ``lg2.approx`` for softplus (float32 inputs add
  a degree-7 series below e = 1/8, relative error 1.3e-7); a = exp2(A L); the ln 2 of delta applied
  once to y; off-image columns become the identity (1, 0) through a -1e30 row in the dot instead of
  selects; a two-level row scan (8 elements in registers, lane totals across lanes) with no
  ``reverse=True`` scans; H and W compile-time so that row loads vectorise (16 bytes); the next
  row's x (and y partial) loaded before the current row is worked on.

Measured (H100 SXM, Triton 3.6, VMamba-B stage 1, batch 128, bytes model x + dbl + y = 649 MB for
bf16; ``scripts/bench_scan.py --shapes B.stage1 --sweep``): v1 4.64 ms (4.2% of the 3.35 TB/s
datasheet bandwidth), v2 1.37 ms (14.1%); float32 5.38 → 2.98 ms. mamba-ssm's kernel alone takes
2.69 ms on its (4 D)-channel inputs. The 80% target (0.24 ms) is out of reach for this plan: the
special-function unit alone (3 MUFU ops per element and direction: exp2, lg2, exp2; 6
discretisations per element, 16 ops per clock per SM) needs 0.45-0.5 ms at this shape, i.e. at most
~40% of the roofline. v2 issues about a third of the instructions the SMs could (latency-bound: 16
resident warps per SM, ~20 barriers per row step from the layout conversions around the dot).
A single pass (4 discretisations) would need the column entry states exchanged between programs
(decoupled look-back; Triton's interpreter cannot run that) and still meets a MUFU floor near
0.3 ms (~60%); 80% would also need part of the exp2/lg2 work moved to polynomial code on the FMA
units.

The x projection (``dbl``) runs before the kernel as one batched GEMM over x; it needs every channel
of a pixel, while a program owns only G channels of the whole image.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import torch

from robusteval.ops.selective_scan import SCAN_BACKENDS, BackendUnavailable, ScanOps

LOG2E = 1.0 / math.log(2.0)

# Per-kernel launch settings, the fastest measured by scripts/bench_scan.py --sweep on the H100
# (VMamba-B stage 1, bf16, batch 128). ``DEFAULT_KERNEL`` is what the backend runs.
DEFAULT_CONFIG = {"block_g": 16, "num_warps": 2, "dt_dot": True}  # v1
DEFAULT_CONFIG_V2 = {"block_g": 16, "num_warps": 4, "rows": 1, "prefetch": True, "maxnreg": 0}
DEFAULT_KERNEL = "v2"

_JIT: dict[str, Any] = {}


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _jit(name: str) -> Any:
    """The @triton.jit kernel ``name`` of scan_triton_kernels (imported on first use)."""
    if name not in _JIT:
        from robusteval.ops import scan_triton_kernels

        _JIT[name] = getattr(scan_triton_kernels, name)
    return _JIT[name]


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
    kernel: str | None = None,
    **config: Any,
) -> torch.Tensor:
    """Fused forward of :func:`~robusteval.ops.selective_scan.cross_selective_scan` (d_state = 1).

    Returns float32 (B, D, H, W). ``kernel`` picks a :data:`KERNELS` entry (default
    :data:`DEFAULT_KERNEL`); ``config`` overrides its launch settings (block_g, num_warps, rows, dt_dot).
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
        kernel=kernel,
        **config,
    )


def fused_kernel_only(
    x: torch.Tensor,
    dbl: torch.Tensor,
    *,
    dt_projs_weight: torch.Tensor,
    dt_projs_bias: torch.Tensor,
    A_logs: torch.Tensor,
    Ds: torch.Tensor,
    kernel: str | None = None,
    **config: Any,
) -> torch.Tensor:
    """The kernel launch alone, on contiguous x (B, D, H, W) and dbl = :func:`projections` (x)."""
    name = kernel or DEFAULT_KERNEL
    if name not in KERNELS:
        raise ValueError(f"unknown triton scan kernel {name!r}; choose from {sorted(KERNELS)}")
    return KERNELS[name](
        x, dbl, dt_projs_weight=dt_projs_weight, dt_projs_bias=dt_projs_bias, A_logs=A_logs, Ds=Ds, **config
    )


def _launch_v1(
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
    _jit("cross_scan_kernel")[grid](
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


def _dot_dtype(x: torch.Tensor) -> torch.dtype:
    """Operand dtype of v2's dt dot: x's own 16-bit type, else float32 (always under the interpreter,
    whose 16-bit dot is unreliable)."""
    if x.dtype in (torch.float16, torch.bfloat16) and not _interpreting():
        return x.dtype
    return torch.float32


def augmented_dt_weights(
    dt_projs_weight: torch.Tensor, dt_projs_bias: torch.Tensor, *, r_pad: int, dot_dtype: torch.dtype
) -> torch.Tensor:
    """(4, D, r_pad) float32: [W log2 e | 1 | b_hi | b_lo | 0 ...] with b = bias log2 e = b_hi + b_lo.

    With the kernel's extra rows of the rank tile (-1e30 off-image, then two rows of ones) the dot
    yields (dt + bias) log2 e. b_hi is b rounded to the dot's dtype and b_lo the remainder, so a
    16-bit dot still carries the bias to about 2^-16 relative (a single 16-bit value: ~2^-8).
    """
    K, D, R = dt_projs_weight.shape
    if r_pad < R + 3:
        raise ValueError(f"r_pad {r_pad} < R + 3 = {R + 3}")
    out = torch.zeros(K, D, r_pad, device=dt_projs_weight.device, dtype=torch.float32)
    out[..., :R] = dt_projs_weight.detach().float() * LOG2E
    out[..., R] = 1.0
    bias = dt_projs_bias.detach().float().reshape(K, D) * LOG2E
    hi = bias.to(dot_dtype).float()
    out[..., R + 1] = hi
    out[..., R + 2] = bias - hi
    return out


def _launch_v2(
    x: torch.Tensor,
    dbl: torch.Tensor,
    *,
    dt_projs_weight: torch.Tensor,
    dt_projs_bias: torch.Tensor,
    A_logs: torch.Tensor,
    Ds: torch.Tensor,
    block_g: int | None = None,
    num_warps: int | None = None,
    rows: int | None = None,
    prefetch: bool | None = None,
    maxnreg: int | None = None,
    **_: object,
) -> torch.Tensor:
    import triton

    B, D, H, W = x.shape
    K = 4
    R = int(dt_projs_weight.shape[-1])
    cfg = DEFAULT_CONFIG_V2
    bg = max(16, int(block_g or cfg["block_g"]))  # tl.dot needs >= 16 rows
    nw = int(num_warps or cfg["num_warps"])
    rw = max(1, min(int(rows or cfg["rows"]), H))
    r_pad = max(16, triton.next_power_of_2(R + 3))
    dot_dtype = _dot_dtype(x)
    waug = augmented_dt_weights(dt_projs_weight, dt_projs_bias, r_pad=r_pad, dot_dtype=dot_dtype)
    A = (-torch.exp(A_logs.detach().float())).reshape(K, D).contiguous()
    dsum = Ds.detach().float().reshape(K, D).sum(0).contiguous()
    y = torch.empty(B, D, H, W, device=x.device, dtype=torch.float32)
    pf = bool(cfg["prefetch"] if prefetch is None else prefetch)
    mr = maxnreg if maxnreg is not None else cfg["maxnreg"]
    # A register cap trades a few spills for more resident warps (the kernel is latency-bound).
    extra_opts = {"maxnreg": int(mr)} if mr and not _interpreting() else {}
    grid = (B * triton.cdiv(D, bg),)
    _jit("cross_scan_kernel_v2")[grid](
        x,
        dbl,
        waug,
        A,
        dsum,
        y,
        D,
        H=H,
        W=W,
        R=R,
        R_PAD=r_pad,
        BLOCK_G=bg,
        BLOCK_W=max(16, triton.next_power_of_2(W)),
        ROWS=rw,
        # float32 operands: three tf32 passes keep dt at float32 accuracy.
        PREC="tf32x3" if dot_dtype == torch.float32 else "tf32",
        DOT_F32=dot_dtype == torch.float32,
        ACCURATE=x.dtype in (torch.float32, torch.float64),
        ASM=not _interpreting(),
        PREFETCH=pf,
        num_warps=nw,
        **extra_opts,
    )
    return y


KERNELS: dict[str, Callable[..., torch.Tensor]] = {"v1": _launch_v1, "v2": _launch_v2}


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
