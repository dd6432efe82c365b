"""``triton`` scan backend: fused VMamba cross selective scan for d_state = 1, forward and backward.

One forward launch does, per image and block of channels: read x (B, D, H, W) and the per-pixel
projections ``dbl = x_proj_weight @ x`` (B, 4, R+2, H, W) through their strides in pixel order (the
four scan orders are index math, never copies); dt = dt_projs_weight[k] @ dbl[k, :R] on the tensor
cores, softplus(dt + bias), a = exp(delta A) in float32; the four scalar recurrences; C h plus the
summed D skip; y float32 in x's memory format (channels_last x gives channels_last y). Kernels, one
per file in :mod:`robusteval.models.kernels.triton`:

* ``v2`` (``cross_scan_rows.py``): row by row, three sweeps, for large images;
* ``img`` (``cross_scan_img.py``): the whole image in one tile, for H W <= 256;
* ``chunked`` (``cross_scan_bwd.py``): a plain chunked forward in any float dtype (float64 for
  gradcheck), and the fused **backward**: gradients for x, dbl (hence x_proj_weight, through the
  projection GEMM that autograd differentiates), dt_projs_weight, dt_projs_bias, A_logs and Ds.

The forward runs as the custom op ``robusteval::cross_scan_fused`` (a fake implementation gives the
real output strides, so torch.compile keeps the scan as one opaque node) with ``register_autograd``
calling the custom op ``robusteval::cross_scan_fused_bwd``: first derivatives only (no double
backward; sharpness code asks :func:`~robusteval.models.kernels.scan.resolve_backend` for
``grad="second"``, which only the torch reference gives).

Launch configs per shape (``LAUNCH_TABLE``) come from ``scripts/benchmarks/bench_scan.py --sweep``;
measurements, rooflines and floors: ``reports/bench/scan_h100.md`` and ``reports/bench/scan_floor_h100.md``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import torch

from robusteval.models.kernels.scan import SCAN_BACKENDS, BackendUnavailable, ScanOps
from robusteval.models.kernels.triton_config import (  # noqa: F401  (re-exported: the benchmarks use them)
    BACKWARD_DEFAULTS,
    IMG_MAX_PIXELS,
    IO_DEFAULTS,
    KERNEL_DEFAULTS,
    LAUNCH_TABLE,
    _pow2,
    format_config,
    heuristic_config,
    launch_config,
    parse_config,
)

LOG2E = 1.0 / math.log(2.0)

# Read once: Dynamo (torch.compile) then sees a constant instead of tracing os.environ.
_INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"

_JIT: dict[str, Any] = {}


def _interpreting() -> bool:
    return _INTERPRET


# kernel name -> module of robusteval.models.kernels.triton that defines it (imported on first use)
_KERNEL_MODULES = {
    "cross_scan_kernel_v2": "cross_scan_rows",
    "cross_scan_kernel_img": "cross_scan_img",
    "cross_scan_fwd_chunked_kernel": "cross_scan_bwd",
    "cross_scan_bwd_kernel": "cross_scan_bwd",
}


def _jit(name: str) -> Any:
    """The @triton.jit kernel ``name`` (its module is imported on first use: triton loads lazily)."""
    if name not in _JIT:
        import importlib

        module = importlib.import_module(f"robusteval.models.kernels.triton.{_KERNEL_MODULES[name]}")
        _JIT[name] = getattr(module, name)
    return _JIT[name]


def _resolve(text: str | None, *, x: torch.Tensor, kernel: str | None, overrides: dict[str, Any]) -> str:
    """Config text for this call: ``text`` (or the table's), with ``kernel`` / setting overrides."""
    B, D, H, W = x.shape
    base = text or launch_config(D=D, H=H, W=W, dtype=x.dtype)
    if kernel is None and not overrides:
        return base
    name, cfg = parse_config(base)
    if kernel is not None and kernel != name:
        name, cfg = kernel, {k: v for k, v in cfg.items() if k in IO_DEFAULTS}
    cfg.update(overrides)
    return format_config(name, cfg)


# ----------------------------------------------------------------------------------------------
# Entry points
# ----------------------------------------------------------------------------------------------


def _channels_last(x: torch.Tensor) -> bool:
    """x (B, D, H, W) has channels-last memory (channel stride 1), as SS2D's conv output has."""
    return x.shape[1] > 1 and x.stride(1) == 1 and x.stride(3) == x.shape[1]


def projections(x: torch.Tensor, x_proj_weight: torch.Tensor, *, layout: str = "channel") -> torch.Tensor:
    """dbl = x_proj_weight @ x per pixel, (B, 4, R+2N, H, W) in x's dtype, as one GEMM.

    ``layout`` "channel": contiguous (B, 4, R+2N, H, W) memory, the batched GEMM W @ x[b] (natural for
    (B, D, H, W) x). "pixel": (B, H, W, 4, R+2N) memory returned as a permuted view, the GEMM
    x (B H W, D) @ W^T (natural for channels_last x: no operand transposes). "auto": pixel for
    channels_last x, else channel.
    """
    B, D, H, W = x.shape
    K, CD, _ = x_proj_weight.shape
    w = x_proj_weight.to(x.dtype).reshape(K * CD, D)
    if layout == "auto":
        layout = "pixel" if _channels_last(x) else "channel"
    if layout == "pixel":
        out = torch.matmul(x.permute(0, 2, 3, 1).reshape(B * H * W, D), w.t())
        return out.view(B, H, W, K, CD).permute(0, 3, 4, 1, 2)
    if layout != "channel":
        raise ValueError(f"projections layout {layout!r}: use channel, pixel or auto")
    return torch.matmul(w, x.reshape(B, D, H * W)).view(B, K, CD, H, W)


def cross_selective_scan_triton(
    x: torch.Tensor,
    *,
    x_proj_weight: torch.Tensor,
    dt_projs_weight: torch.Tensor,
    dt_projs_bias: torch.Tensor,
    A_logs: torch.Tensor,
    Ds: torch.Tensor,
    config: str | None = None,
    kernel: str | None = None,
    **overrides: Any,
) -> torch.Tensor:
    """Fused forward of :func:`~robusteval.models.kernels.scan.cross_selective_scan` (d_state = 1).

    x: (B, D, H, W), any strides (SS2D passes a channels_last view). Returns float32 (float64 for
    float64 x) (B, D, H, W) whose memory follows x by default: a channels_last x gives a channels_last
    y, i.e. (B, H, W, D) contiguous memory, which the out-norm reads after its permute without a copy.

    ``config`` is launch-config text (:func:`parse_config`; default :func:`launch_config` of the shape);
    ``kernel`` and ``overrides`` (block_g, block_l, num_warps, rows, prefetch, maxnreg, dbl, x_mem,
    y_mem) replace parts of it. The kernel runs as the custom op ``robusteval::cross_scan_fused``, one
    opaque node for torch.compile; the x projection GEMM before it stays visible to the compiler, and
    autograd differentiates it (the op's backward is the fused backward kernel).
    """
    R = int(dt_projs_weight.shape[-1])
    if x_proj_weight.shape[1] != R + 2:
        raise ValueError(
            f"the triton scan needs d_state = 1 (x_proj_weight rows {x_proj_weight.shape[1]} != R + 2 = {R + 2})"
        )
    text = _resolve(config, x=x, kernel=kernel, overrides=overrides)
    _, cfg = parse_config(text)
    if cfg.get("x_mem") == "copy":
        x = x.contiguous()
    layout = cfg.get("dbl", "auto")
    dbl = projections(x, x_proj_weight, layout=layout)
    return torch.ops.robusteval.cross_scan_fused(x, dbl, dt_projs_weight, dt_projs_bias, A_logs, Ds, text)


def _out_strides(x: torch.Tensor, y_layout: str) -> tuple[int, ...]:
    """Strides of the float32 (B, D, H, W) output for ``y_layout`` ("x", "cl", "contiguous")."""
    B, D, H, W = x.shape
    cl = y_layout == "cl" or (y_layout == "x" and _channels_last(x))
    return (H * W * D, 1, W * D, D) if cl else (D * H * W, H * W, W, 1)


@torch.library.custom_op("robusteval::cross_scan_fused", mutates_args=())
def _cross_scan_fused(
    x: torch.Tensor,
    dbl: torch.Tensor,
    dt_projs_weight: torch.Tensor,
    dt_projs_bias: torch.Tensor,
    A_logs: torch.Tensor,
    Ds: torch.Tensor,
    config: str,
) -> torch.Tensor:
    """The fused kernel as a PyTorch operator (x (B, D, H, W), dbl (B, 4, R+2, H, W) → float32 y)."""
    return fused_kernel_only(
        x,
        dbl,
        dt_projs_weight=dt_projs_weight,
        dt_projs_bias=dt_projs_bias,
        A_logs=A_logs,
        Ds=Ds,
        config=config,
    )


@_cross_scan_fused.register_fake
def _cross_scan_fused_fake(
    x: torch.Tensor,
    dbl: torch.Tensor,
    dt_projs_weight: torch.Tensor,
    dt_projs_bias: torch.Tensor,
    A_logs: torch.Tensor,
    Ds: torch.Tensor,
    config: str,
) -> torch.Tensor:
    _, cfg = parse_config(config)
    return x.new_empty_strided(tuple(x.shape), _out_strides(x, cfg.get("y_mem", "x")), dtype=_acc_dtype(x))


def fused_kernel_only(
    x: torch.Tensor,
    dbl: torch.Tensor,
    *,
    dt_projs_weight: torch.Tensor,
    dt_projs_bias: torch.Tensor,
    A_logs: torch.Tensor,
    Ds: torch.Tensor,
    config: str | None = None,
    kernel: str | None = None,
    **overrides: Any,
) -> torch.Tensor:
    """The kernel launch alone on x (B, D, H, W) and dbl = :func:`projections` (x), any strides.

    Returns float32 y (B, D, H, W) with the strides :func:`_out_strides` gives for the config's ``y_mem``.
    """
    text = _resolve(config, x=x, kernel=kernel, overrides=overrides)
    name, cfg = parse_config(text)
    y = torch.empty_strided(
        tuple(x.shape), _out_strides(x, cfg.pop("y_mem", "x")), device=x.device, dtype=_acc_dtype(x)
    )
    if x.dtype == torch.float64 and name != "chunked":
        raise ValueError(f"float64 inputs run on the chunked kernel only (config {text!r})")
    for key in IO_DEFAULTS:
        cfg.pop(key, None)
    weights = dict(dt_projs_weight=dt_projs_weight, dt_projs_bias=dt_projs_bias, A_logs=A_logs, Ds=Ds)
    KERNELS[name](x, dbl, y, **weights, **{**KERNEL_DEFAULTS[name], **cfg})
    return y


def _acc_dtype(x: torch.Tensor) -> torch.dtype:
    """Arithmetic and output dtype: float64 for float64 x, else float32."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _dot_dtype(x: torch.Tensor) -> torch.dtype:
    """Operand dtype of the dt dot: x's own 16-bit type, else float32 (always under the interpreter,
    whose 16-bit dot is unreliable)."""
    if x.dtype in (torch.float16, torch.bfloat16) and not _interpreting():
        return x.dtype
    return torch.float32


def _common_args(
    x: torch.Tensor,
    dbl: torch.Tensor,
    y: torch.Tensor,
    *,
    dt_projs_weight: torch.Tensor,
    dt_projs_bias: torch.Tensor,
    A_logs: torch.Tensor,
    Ds: torch.Tensor,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run-time and compile-time (keyword) arguments shared by the v2 and img kernels.

    Strides go in as compile-time constants (with H and W they fix every row's alignment, so loads
    vectorise), the batch strides at run time. The parameters go in raw: the kernels build the
    log2-domain dt weights, A = -exp(A_logs) and the summed D skip themselves.
    """
    B, D, H, W = x.shape
    R = int(dt_projs_weight.shape[-1])
    dot_dtype = _dot_dtype(x)
    sx, sy, sd = x.stride(), y.stride(), dbl.stride()
    bias_dot = max(16, _pow2(R + 3)) == max(16, _pow2(R))
    args = dict(
        x_ptr=x,
        dbl_ptr=dbl,
        dtw_ptr=dt_projs_weight.detach().contiguous(),
        dtb_ptr=dt_projs_bias.detach().contiguous(),
        alog_ptr=A_logs.detach().contiguous(),
        ds_ptr=Ds.detach().contiguous(),
        y_ptr=y,
        D=D,
        sxb=sx[0],
        syb=sy[0],
        sdb=sd[0],
    )
    const = dict(
        SXD=sx[1], SXH=sx[2], SXW=sx[3],
        SYD=sy[1], SYH=sy[2], SYW=sy[3],
        SDK=sd[1], SDC=sd[2], SDH=sd[3], SDW=sd[4],
        H=H, W=W, R=R,
        # The rank tile holds R rows of dt, then (BIAS_DOT) the off-image row and two bias rows;
        # those go in only where the padding has room (R_PAD >= 16 for tl.dot either way), else
        # bias and mask are two adds after the dot rather than a dot and a rank tile twice as large.
        R_PAD=max(16, _pow2(R + 3)) if bias_dot else max(16, _pow2(R)),
        BIAS_DOT=bias_dot,
        # float32 operands: three tf32 passes keep dt at float32 accuracy.
        PREC="tf32x3" if dot_dtype == torch.float32 else "tf32",
        DOT_F32=dot_dtype == torch.float32,
        ACCURATE=x.dtype in (torch.float32, torch.float64),
        ASM=not _interpreting(),
    )  # fmt: skip
    return args, const


def _launch_v2(
    x: torch.Tensor,
    dbl: torch.Tensor,
    y: torch.Tensor,
    *,
    block_g: int,
    num_warps: int,
    rows: int,
    prefetch: bool,
    maxnreg: int,
    **weights: torch.Tensor,
) -> None:
    """Row-by-row kernel: one program per (image, block_g channels), three sweeps over the rows."""
    B, D, H, W = x.shape
    args, const = _common_args(x, dbl, y, **weights)
    bg = max(16, int(block_g))  # tl.dot needs >= 16 rows
    # A register cap trades a few spills for more resident warps (the kernel is latency-bound).
    extra = {"maxnreg": int(maxnreg)} if maxnreg and not _interpreting() else {}
    grid = (B * -(-D // bg),)
    _jit("cross_scan_kernel_v2")[grid](
        **args,
        **const,
        BLOCK_G=bg,
        BLOCK_W=max(16, _pow2(W)),
        ROWS=max(1, min(int(rows), H)),
        PREFETCH=bool(prefetch),
        num_warps=int(num_warps),
        **extra,
    )


def _launch_img(
    x: torch.Tensor,
    dbl: torch.Tensor,
    y: torch.Tensor,
    *,
    block_g: int,
    num_warps: int,
    maxnreg: int,
    **weights: torch.Tensor,
) -> None:
    """Whole-image kernel: one program per (image, block_g channels), all H W pixels in one tile."""
    B, D, H, W = x.shape
    if H * W > IMG_MAX_PIXELS:
        raise ValueError(f"the img kernel holds at most {IMG_MAX_PIXELS} pixels per tile; got {H}x{W}")
    args, const = _common_args(x, dbl, y, **weights)
    bg = max(16, int(block_g))
    extra = {"maxnreg": int(maxnreg)} if maxnreg and not _interpreting() else {}
    grid = (B * -(-D // bg),)
    _jit("cross_scan_kernel_img")[grid](
        **args,
        **const,
        BLOCK_G=bg,
        BLOCK_L=max(16, _pow2(H * W)),
        num_warps=int(num_warps),
        **extra,
    )


def _strides(t: torch.Tensor, prefix: str) -> dict[str, int]:
    """{prefix + "b": stride(0), ...} for a (B, D, H, W) tensor (keys b, d, h, w)."""
    return {f"{prefix}{axis}": int(st) for axis, st in zip("bdhw", t.stride(), strict=True)}


def _dbl_strides(dbl: torch.Tensor) -> dict[str, int]:
    return {f"sd{axis}": int(st) for axis, st in zip("bkchw", dbl.stride(), strict=True)}


def _launch_chunked(
    x: torch.Tensor,
    dbl: torch.Tensor,
    y: torch.Tensor,
    *,
    dt_projs_weight: torch.Tensor,
    dt_projs_bias: torch.Tensor,
    A_logs: torch.Tensor,
    Ds: torch.Tensor,
    block_g: int,
    block_l: int,
    num_warps: int,
) -> None:
    """Plain chunked forward (``cross_scan_bwd.py``): any float dtype, arithmetic in y's dtype."""
    B, D, H, W = x.shape
    R = int(dt_projs_weight.shape[-1])
    bg = max(16, int(block_g))
    _jit("cross_scan_fwd_chunked_kernel")[(B * -(-D // bg),)](
        x_ptr=x,
        dbl_ptr=dbl,
        dtw_ptr=dt_projs_weight.detach().contiguous(),
        dtb_ptr=dt_projs_bias.detach().contiguous(),
        alog_ptr=A_logs.detach().contiguous(),
        ds_ptr=Ds.detach().contiguous(),
        y_ptr=y,
        D=D,
        H=H,
        W=W,
        **_strides(x, "sx"),
        **_dbl_strides(dbl),
        **_strides(y, "sy"),
        R=R,
        R_PAD=max(16, _pow2(R)),
        BLOCK_G=bg,
        BLOCK_L=max(16, _pow2(int(block_l))),
        num_warps=int(num_warps),
    )


KERNELS: dict[str, Callable[..., None]] = {"v2": _launch_v2, "img": _launch_img, "chunked": _launch_chunked}


def fused_backward(
    gy: torch.Tensor,
    x: torch.Tensor,
    dbl: torch.Tensor,
    *,
    dt_projs_weight: torch.Tensor,
    dt_projs_bias: torch.Tensor,
    A_logs: torch.Tensor,
    Ds: torch.Tensor,
    block_g: int | None = None,
    block_l: int | None = None,
    num_warps: int | None = None,
) -> tuple[torch.Tensor, ...]:
    """Gradients of the fused op's inputs (x, dbl, dt_projs_weight, dt_projs_bias, A_logs, Ds) for
    the output gradient ``gy`` (B, D, H, W), each in its input's dtype. ``x``'s is the scan's part
    only (dbl = x_proj_weight @ x is differentiated by autograd outside the op)."""
    B, D, H, W = x.shape
    R = int(dt_projs_weight.shape[-1])
    L = H * W
    acc = _acc_dtype(x)
    bg = max(16, int(block_g or BACKWARD_DEFAULTS["block_g"]))
    bl = max(16, _pow2(int(block_l or BACKWARD_DEFAULTS["block_l"])))
    n_chunks = -(-L // bl)
    gx = torch.empty((B, D, H, W), device=x.device, dtype=acc)
    gdbl = torch.zeros((B, 4, R + 2, H, W), device=x.device, dtype=acc)
    gdtw = torch.zeros((4, D, R), device=x.device, dtype=acc)
    gdtb = torch.zeros((4, D), device=x.device, dtype=acc)
    galog = torch.zeros((4 * D,), device=x.device, dtype=acc)
    gds = torch.zeros((4 * D,), device=x.device, dtype=acc)
    hs = torch.empty((B, 4, n_chunks, D), device=x.device, dtype=acc)
    _jit("cross_scan_bwd_kernel")[(B * -(-D // bg),)](
        x_ptr=x,
        dbl_ptr=dbl,
        dtw_ptr=dt_projs_weight.detach().contiguous(),
        dtb_ptr=dt_projs_bias.detach().contiguous(),
        alog_ptr=A_logs.detach().contiguous(),
        ds_ptr=Ds.detach().contiguous(),
        gy_ptr=gy,
        gx_ptr=gx,
        gdbl_ptr=gdbl,
        gdtw_ptr=gdtw,
        gdtb_ptr=gdtb,
        galog_ptr=galog,
        gds_ptr=gds,
        hs_ptr=hs,
        D=D,
        H=H,
        W=W,
        **_strides(x, "sx"),
        **_dbl_strides(dbl),
        **_strides(gy, "sg"),
        R=R,
        R_PAD=max(16, _pow2(R)),
        BLOCK_G=bg,
        BLOCK_L=bl,
        num_warps=int(num_warps or BACKWARD_DEFAULTS["num_warps"]),
    )
    return (
        gx.to(x.dtype),
        gdbl.to(dbl.dtype),
        gdtw.to(dt_projs_weight.dtype),
        gdtb.to(dt_projs_bias.dtype),
        galog.view(A_logs.shape).to(A_logs.dtype),
        gds.view(Ds.shape).to(Ds.dtype),
    )


@torch.library.custom_op("robusteval::cross_scan_fused_bwd", mutates_args=())
def _cross_scan_fused_bwd(
    gy: torch.Tensor,
    x: torch.Tensor,
    dbl: torch.Tensor,
    dt_projs_weight: torch.Tensor,
    dt_projs_bias: torch.Tensor,
    A_logs: torch.Tensor,
    Ds: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The fused backward as a PyTorch operator (see :func:`fused_backward`)."""
    return fused_backward(
        gy, x, dbl, dt_projs_weight=dt_projs_weight, dt_projs_bias=dt_projs_bias, A_logs=A_logs, Ds=Ds
    )


@_cross_scan_fused_bwd.register_fake
def _cross_scan_fused_bwd_fake(gy, x, dbl, dt_projs_weight, dt_projs_bias, A_logs, Ds):  # type: ignore[no-untyped-def]
    return (
        x.new_empty(x.shape),
        dbl.new_empty(dbl.shape),
        dt_projs_weight.new_empty(dt_projs_weight.shape),
        dt_projs_bias.new_empty(dt_projs_bias.shape),
        A_logs.new_empty(A_logs.shape),
        Ds.new_empty(Ds.shape),
    )


def _fused_setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
    ctx.save_for_backward(*inputs[:6])


def _fused_backward(ctx: Any, gy: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
    grads = torch.ops.robusteval.cross_scan_fused_bwd(gy, *ctx.saved_tensors)
    return (*grads, None)


_cross_scan_fused.register_autograd(_fused_backward, setup_context=_fused_setup_context)


def _supports(kind: str, t: torch.Tensor, d_state: int) -> bool:
    return (
        kind == "cross"
        and d_state == 1
        and (t.is_cuda or _interpreting())
        and t.dtype in (torch.float32, torch.float16, torch.bfloat16, torch.float64)
    )


@SCAN_BACKENDS.register("triton", rank=10, devices="cuda (or TRITON_INTERPRET=1 on CPU)", d_state="1")
def _triton_backend() -> ScanOps:
    """Fused cross-scan + softplus discretisation + scan + D skip + cross-merge, with a fused backward
    (cross_selective_scan only; first derivatives)."""
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
        differentiable=1,
    )
