"""``triton`` scan backend: fused VMamba cross selective scan for d_state = 1 (inference only).

One launch does, per image b and block of G channels (one program each): read x (B, D, H, W) and
the per-pixel projections ``dbl = x_proj_weight @ x`` (B, 4, R+2, H, W) through their strides, in
**pixel order** (the four scan orders are index math, never materialised copies); form
dt = dt_projs_weight[k] @ dbl[k, :R] on the tensor cores, delta = softplus(dt + bias) and
a = exp(delta A) in float32; run the four scalar recurrences h = a h + delta B u; add C h and the
summed D skip; write y float32. Two kernels do it, picked per shape (``LAUNCH_TABLE``):

* ``v2`` — row by row over a (G, W) register tile, for large images. Row-major directions (k = 0, 2)
  scan along the row with a carry per channel between rows; column-major ones (k = 1, 3) advance one
  step per row for every column at once, but the state entering column w depends on the whole
  image, hence three sweeps: A (top → bottom) column aggregates of k = 1, 3 → entry states; C
  (bottom → top) k = 2, 3, store y; B (top → bottom) k = 0, 1 and the D skip, y +=. Six
  discretisations per element. Arithmetic (≈140 SASS instructions per element): log2-domain weights
  so the dot yields (dt + bias) log2 e (the bias as a hi + lo pair in two extra rank rows, exact to
  ~2^-16 in a 16-bit dot, and a -1e30 row that makes off-image columns the identity (1, 0) without
  selects); ``lg2.approx`` softplus (float32 inputs: a degree-7 series below e = 1/8); a = exp2(A L);
  ln 2 applied once to y; a two-level row scan (8 elements in registers, lane totals across lanes);
  H, W and strides compile-time so that row loads vectorise; next row prefetched.
* ``img`` — the whole image in one tile: a program holds (G, next_pow2(H W)) and runs each
  direction as ONE forward scan over the image in that direction's order (the loads gather x and
  dbl in that order; steps past H W are identities at the end); the other directions' C h are
  brought back to pixel order by a gather along the tile row. Four discretisations per element,
  no sequential row loop, one pass. For H W <= 256 (VMamba's 14x14 and 7x7 stages); at 28x28 the
  tile spills (a 1024-pixel tile: 8-17 kB of stack per thread in offline sm_90 compiles).

``v1`` (the first version: 4.6 ms at stage 1, ≈540 instructions per element) is kept for comparison.

Both take the raw parameters: the dt weights (with the bias rows), A = -exp(A_logs) and the summed
D skip are built per program from (4, D, R), (4, D), (4 D, 1), (4 D) — no host-side preparation
and no extra launches per call. Where the three extra rank rows would double the padded rank
(R = 16, 32, 64: VMamba-B stages 2-4), bias and off-image mask are instead two adds after the dot.

**Layouts around the kernel.** SS2D hands x as a (B, D, H, W) view of channels_last memory (the
depthwise conv's output) and its out-norm reads y as (B, H, W, D). The kernels read x through its
strides and, by default, write y in x's memory format: channels_last y is (B, H, W, D) contiguous
memory returned as the permuted (B, D, H, W) view the interface promises, so neither
``x.contiguous()`` nor the copy in ``out_norm(y.permute(0, 2, 3, 1))`` happens. The projections
are then one plain GEMM x (B H W, D) @ W^T giving (B, H, W, 4, R+2) memory ("pixel" layout).
Measured at VMamba-B stage 1 (bf16, batch 128): the old path (x copied, y contiguous and copied
by the out-norm's permute) costs 3.05 ms for a 1.36 ms kernel — the two permute-copies and the GEMM
take 1.7 ms; reading and writing channels_last costs the v2 kernel registers (197 instead of 138:
the loads and stores vectorise along channels and go through shared memory to the row layout), so
the kernel alone is slower (2.05 ms with a 128-register cap), but the whole op is 2.15 ms.
Pixel-major projections are as fast as channel-major or faster (ms per op, stages 1-4: 2.39 vs
2.57, 1.10 vs 1.11, 0.79 vs 1.10, 0.37 vs 0.67).

**Launch configs** (``LAUNCH_TABLE``, text as :func:`parse_config` reads it): one setting per
(D, H, W, dtype) from ``scripts/benchmarks/bench_scan.py --sweep``; the first tuning (G = 16, 4 warps, on stage 1
only) left small images latency-bound — at 14x14 a program held 2 elements per thread and row step.
Per VMamba-B stage (H100 SXM, Triton 3.6, bf16, batch 128; "op" = projections + kernel + what the
out-norm reads, "old" = the old path's op; kernel % of a measured 3.02 TB/s device copy, bytes
model x + dbl + y once):

    stage (D @ HxW)     config                old op ms  op ms  kernel ms  kernel % copy
    1  (256 @ 56x56)    v2:g16-w4-r1-p1-m128  3.05       2.15   2.05       10.5
    2  (512 @ 28x28)    v2:g16-w4-r1-p1       1.76       1.10   1.05       10.2
    3  (1024 @ 14x14)   img:g16-w8-m128       1.53       0.68   0.64        8.4
    4  (2048 @ 7x7)     img:g16-w2            1.88       0.37   0.35        7.8

Summed over VMamba-B's blocks (2, 2, 15, 2): 36.3 → 17.4 ms of scan per 128 images. The model
(bf16 autocast, random weights, ``scripts/benchmarks/bench_models.py``, with the sweep's table before the
register caps of stages 1 and 3): eager 1,683 → 2,453 img/s at batch 128 (1,730 → 2,528 at 256);
``torch.compile`` 3,215 / 3,330 img/s (official VMamba-B: 1,198 / 1,246).

**Roofline.** Each kernel stays at 8-11% of the copy bandwidth: issue- and latency-bound, not
memory-bound. The floors (``scripts/benchmarks/bench_scan_floor.py``, ``reports/bench/scan_floor_h100.md``):
every element needs 12 special-function ops (exp2, lg2, exp2 in each of four directions), and at
the H100's measured 3.8 T ops/s those alone cap a bf16 kernel at 65-67% of copy speed (0.328 ms
at stage 1, where 80% of the roofline allows 0.269 ms), so 80% is out of reach there; the same
arithmetic with the recurrence removed (x once, y once) reaches 19-35%. The img program needs ~200
registers (one 8-warp program per SM; the 128-register cap spills a little and fits two, 16% faster
at 14x14). At stage 1 v2 runs at 30% of the no-recurrence floor's speed: it
discretises each element 6 times and writes y twice; a single pass needs the column entry states
exchanged between programs (decoupled look-back, which Triton's interpreter cannot run) or the whole
image of a channel block on chip (shared memory, which Triton does not expose; the img tile spills
at 28x28).

**torch.compile.** The kernel runs as the custom op ``robusteval::cross_scan_fused`` (with a fake
implementation giving the real output strides), so a compiled VMamba is one graph with the scan as
one opaque node; the projection GEMM before it stays visible to the compiler.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import torch

from robusteval.models.kernels.scan import SCAN_BACKENDS, BackendUnavailable, ScanOps

LOG2E = 1.0 / math.log(2.0)

# Read once: Dynamo (torch.compile) then sees a constant instead of tracing os.environ.
_INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"

# Every launch setting a kernel takes, with its default (``config`` text: see :func:`parse_config`).
KERNEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "v1": {"block_g": 16, "num_warps": 2, "dt_dot": True},
    "v2": {"block_g": 16, "num_warps": 4, "rows": 1, "prefetch": True, "maxnreg": 0},
    "img": {"block_g": 16, "num_warps": 4, "maxnreg": 0},
}
# Settings of the data around the kernel (any kernel): ``dbl`` the layout of the x projections
# ("pixel": (B, H, W, 4, R+2) memory from a channels-last GEMM; "channel": (B, 4, R+2, H, W));
# ``x_mem`` "strided" (the kernel reads x through its strides) or "copy" (x.contiguous() first);
# ``y_mem`` the output memory: "x" like x (channels_last x -> channels_last y), "cl", or "contiguous".
IO_DEFAULTS: dict[str, str] = {"dbl": "auto", "x_mem": "strided", "y_mem": "x"}
# The whole image as one tile row: at most this many pixels (registers hold (block_g, next_pow2(H W))).
IMG_MAX_PIXELS = 1024

# Launch settings per shape (D = d_inner, H, W, x dtype): the fastest measured on the H100 SXM (Triton
# 3.6, torch 2.11; batch 128; channels_last x as SS2D passes it, y consumed as (B, H, W, D)) by
#     PYTHONPATH=. python scripts/benchmarks/bench_scan.py --sweep --sweep-dtypes bf16,fp32 --budget-s 105 \
#         --shapes "" --skip-torch --skip-mamba --jobs 14 --out $OUT
# (B stages in bf16: every candidate of bench_scan.candidates; fp32 and the S/T stages a short list),
# then for B.stage1/3 bf16 a 128-register cap (more resident programs), which beat the sweep's winners
# (2.39 -> 2.15 ms, 0.80 -> 0.68 ms) in
#     PYTHONPATH=. python scripts/benchmarks/bench_scan.py --shapes B.stage1,B.stage3,B.stage4 --dtypes-off \
#         --compare v2:g16-w4-r1-p1-m128,img:g16-w8,img:g16-w8-m128,img:g16-w2,img:g16-w2-m128,...
# S/T stage 2 in bf16 are left to the heuristic (B.stage2's winner, v2:g16-w4): their short list
# held only 32-64 channel tiles, which at B.stage2 ran 1.4-3x slower than 16.
# Shapes not listed get :func:`heuristic_config`.
LAUNCH_TABLE: dict[tuple[int, int, int, str], str] = {
    (256, 56, 56, "bfloat16"): "v2:g16-w4-r1-p1-m128",  # B.stage1: 2.15 ms
    (512, 28, 28, "bfloat16"): "v2:g16-w4-r1-p1",  # B.stage2: 1.10 ms
    (1024, 14, 14, "bfloat16"): "img:g16-w8-m128",  # B.stage3: 0.68 ms
    (2048, 7, 7, "bfloat16"): "img:g16-w2",  # B.stage4: 0.37 ms
    (768, 14, 14, "bfloat16"): "img:g16-w8",  # S.stage3: 0.59 ms
    (384, 14, 14, "bfloat16"): "img:g16-w8",  # T.stage3: 0.32 ms
    (1536, 7, 7, "bfloat16"): "img:g16-w4",  # S.stage4: 0.41 ms
    (768, 7, 7, "bfloat16"): "img:g32-w8-dc",  # T.stage4: 0.28 ms
    (192, 56, 56, "bfloat16"): "v2:g16-w8-r1-p1",  # S.stage1: 1.92 ms
    (96, 56, 56, "bfloat16"): "v2:g16-w8-r1-p1",  # T.stage1: 0.96 ms
    (256, 56, 56, "float32"): "v2:g32-w8-r1-p1",  # B.stage1: 4.69 ms
    (512, 28, 28, "float32"): "v2:g64-w8-r1-p1",  # B.stage2: 3.37 ms
    (1024, 14, 14, "float32"): "img:g16-w8",  # B.stage3: 1.33 ms
    (2048, 7, 7, "float32"): "img:g16-w4",  # B.stage4: 1.01 ms
    (768, 14, 14, "float32"): "img:g16-w8",  # S.stage3: 0.96 ms
    (384, 14, 14, "float32"): "img:g16-w8",  # T.stage3: 0.51 ms
    (1536, 7, 7, "float32"): "img:g16-w4",  # S.stage4: 0.72 ms
    (768, 7, 7, "float32"): "img:g16-w4",  # T.stage4: 0.37 ms
    (192, 56, 56, "float32"): "v2:g32-w8-r1-p1",  # S.stage1: 3.63 ms
    (96, 56, 56, "float32"): "v2:g32-w8-r1-p1",  # T.stage1: 1.83 ms
    (384, 28, 28, "float32"): "v2:g64-w8-r1-p1",  # S.stage2: 2.45 ms
    (192, 28, 28, "float32"): "v2:g64-w8-r1-p1",  # T.stage2: 1.25 ms
}

_JIT: dict[str, Any] = {}


def _interpreting() -> bool:
    return _INTERPRET


def _jit(name: str) -> Any:
    """The @triton.jit kernel ``name`` of scan_triton_kernels (imported on first use)."""
    if name not in _JIT:
        from robusteval.models.kernels import triton_kernels as scan_triton_kernels

        _JIT[name] = getattr(scan_triton_kernels, name)
    return _JIT[name]


def _pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


# ----------------------------------------------------------------------------------------------
# Launch configurations: "kernel:setting-setting..." text, per-shape table, heuristic
# ----------------------------------------------------------------------------------------------

_LETTERS = {"g": "block_g", "w": "num_warps", "r": "rows", "m": "maxnreg"}
_IO_CODES = {
    "dbl": {"dp": "pixel", "dc": "channel", "da": "auto"},
    "x_mem": {"xs": "strided", "xc": "copy"},
    "y_mem": {"yx": "x", "yl": "cl", "yc": "contiguous"},
}


def parse_config(text: str) -> tuple[str, dict[str, Any]]:
    """'v2:g16-w4-r2-p1-m0-dp-yx' → ('v2', {block_g: 16, num_warps: 4, rows: 2, prefetch: True, ...}).

    Letters: g block_g (channels per program), w num_warps, r rows per loop step, p prefetch (p0/p1),
    m maxnreg (0: no cap); dot / fma (v1's dt); dp / dc / da projections layout (pixel, channel,
    auto); xs / xc x read strided or copied contiguous first; yx / yl / yc output like x, channels_last,
    contiguous. Absent settings keep the kernel's defaults.
    """
    kernel, _, rest = text.partition(":")
    if kernel not in KERNEL_DEFAULTS:
        raise ValueError(f"unknown triton scan kernel {kernel!r}; choose from {sorted(KERNEL_DEFAULTS)}")
    cfg: dict[str, Any] = {}
    for part in filter(None, rest.split("-")):
        io = next((key for key, codes in _IO_CODES.items() if part in codes), None)
        if io is not None:
            cfg[io] = _IO_CODES[io][part]
        elif part in ("dot", "fma"):
            cfg["dt_dot"] = part == "dot"
        elif part in ("p0", "p1"):
            cfg["prefetch"] = part == "p1"
        elif part[:1] in _LETTERS and part[1:].isdigit():
            cfg[_LETTERS[part[:1]]] = int(part[1:])
        else:
            raise ValueError(f"config {text!r}: cannot read {part!r}")
    return kernel, cfg


def format_config(kernel: str, cfg: dict[str, Any]) -> str:
    """Inverse of :func:`parse_config` (settings in a fixed order)."""
    parts = []
    for letter, key in _LETTERS.items():
        if key in cfg:
            parts.append(f"{letter}{int(cfg[key])}")
    if "prefetch" in cfg:
        parts.append("p1" if cfg["prefetch"] else "p0")
    if "dt_dot" in cfg:
        parts.append("dot" if cfg["dt_dot"] else "fma")
    for io, codes in _IO_CODES.items():
        if io in cfg:
            parts.append(next(code for code, value in codes.items() if value == cfg[io]))
    return f"{kernel}:{'-'.join(parts)}"


def heuristic_config(*, D: int, H: int, W: int) -> str:
    """Launch settings for a shape the table does not list, after what the sweep found on the H100.

    Small images (H W <= 256) run whole in one tile (``img``: 16 channels, 8 warps and at most 128
    registers for a 256-pixel tile, 4 warps for smaller ones), 2-4x faster than row by row at 14x14
    and 7x7. Larger images run row by row (``v2``, 16 channels, 4 warps; capped at 128 registers at
    64-wide rows, where channels_last reads and writes otherwise need ~200).
    """
    if H * W <= 256:
        return "img:g16-w8-m128" if _pow2(H * W) >= 256 else "img:g16-w4"
    return "v2:g16-w4-r1-p1-m128" if _pow2(W) >= 64 else "v2:g16-w4-r1-p1"


def launch_config(*, D: int, H: int, W: int, dtype: torch.dtype) -> str:
    """The config text the backend runs for this shape: :data:`LAUNCH_TABLE`, else the heuristic."""
    key = (int(D), int(H), int(W), str(dtype).replace("torch.", ""))
    return LAUNCH_TABLE.get(key) or heuristic_config(D=D, H=H, W=W)


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

    x: (B, D, H, W), any strides (SS2D passes a channels_last view). Returns float32 (B, D, H, W)
    whose memory follows x by default: a channels_last x gives a channels_last y, i.e. (B, H, W, D)
    contiguous memory, which the out-norm reads after its permute without a copy.

    ``config`` is launch-config text (:func:`parse_config`; default :func:`launch_config` of the shape);
    ``kernel`` and ``overrides`` (block_g, num_warps, rows, prefetch, maxnreg, dt_dot, dbl, x_mem, y_mem)
    replace parts of it. The kernel runs as the custom op ``robusteval::cross_scan_fused``, one
    opaque node for torch.compile; the x projection GEMM before it stays visible to the compiler.
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
    return x.new_empty_strided(tuple(x.shape), _out_strides(x, cfg.get("y_mem", "x")), dtype=torch.float32)


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
        tuple(x.shape), _out_strides(x, cfg.pop("y_mem", "x")), device=x.device, dtype=torch.float32
    )
    for key in IO_DEFAULTS:
        cfg.pop(key, None)
    weights = dict(dt_projs_weight=dt_projs_weight, dt_projs_bias=dt_projs_bias, A_logs=A_logs, Ds=Ds)
    KERNELS[name](x, dbl, y, **weights, **{**KERNEL_DEFAULTS[name], **cfg})
    return y


def _launch_v1(
    x: torch.Tensor,
    dbl: torch.Tensor,
    y: torch.Tensor,
    *,
    dt_projs_weight: torch.Tensor,
    dt_projs_bias: torch.Tensor,
    A_logs: torch.Tensor,
    Ds: torch.Tensor,
    block_g: int,
    num_warps: int,
    dt_dot: bool,
) -> None:
    """The first kernel (kept for comparison): contiguous x and dbl, weights prepared on the host."""
    import triton

    B, D, H, W = x.shape
    K = 4
    R = int(dt_projs_weight.shape[-1])
    x = x.contiguous()
    dbl = dbl.contiguous()
    wdt = dt_projs_weight.detach().float().reshape(K, D, R).contiguous()
    bias = dt_projs_bias.detach().float().reshape(K, D).contiguous()
    A = (-torch.exp(A_logs.detach().float())).reshape(K, D).contiguous()
    dsum = Ds.detach().float().reshape(K, D).sum(0).contiguous()
    out = y if y.is_contiguous() else torch.empty_like(y, memory_format=torch.contiguous_format)
    bg = int(block_g)
    # tl.dot needs every matrix side >= 16: pad the rank and the row width, and keep >= 16 channels.
    dot = bool(dt_dot) and bg >= 16
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
        out,
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
        num_warps=int(num_warps),
    )
    if out is not y:
        y.copy_(out)


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
) -> tuple[list[Any], dict[str, Any]]:
    """Positional and compile-time arguments shared by the v2 and img kernels.

    Strides go in as compile-time constants (with H and W they fix every row's alignment, so loads
    vectorise), the batch strides at run time. The parameters go in raw: the kernels build the
    log2-domain dt weights, A = -exp(A_logs) and the summed D skip themselves.
    """
    B, D, H, W = x.shape
    R = int(dt_projs_weight.shape[-1])
    dot_dtype = _dot_dtype(x)
    sx, sy, sd = x.stride(), y.stride(), dbl.stride()
    bias_dot = max(16, _pow2(R + 3)) == max(16, _pow2(R))
    args = [
        x,
        dbl,
        dt_projs_weight.detach().contiguous(),
        dt_projs_bias.detach().contiguous(),
        A_logs.detach().contiguous(),
        Ds.detach().contiguous(),
        y,
        D,
        sx[0],
        sy[0],
        sd[0],
    ]
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
        *args,
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
        *args,
        **const,
        BLOCK_G=bg,
        BLOCK_L=max(16, _pow2(H * W)),
        num_warps=int(num_warps),
        **extra,
    )


KERNELS: dict[str, Callable[..., None]] = {"v1": _launch_v1, "v2": _launch_v2, "img": _launch_img}


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
