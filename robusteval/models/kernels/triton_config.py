"""Launch configurations of the fused cross-scan kernels: per-kernel settings, the per-shape table
measured on the H100, a heuristic for other shapes, and the config text that names a setting
(``"v2:g16-w4-r1-p1-m128"``) — the custom op takes it as a string argument, the benchmarks sweep it.
"""

from __future__ import annotations

from typing import Any

import torch

# Every launch setting a kernel takes, with its default (``config`` text: see :func:`parse_config`).
KERNEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "v2": {"block_g": 16, "num_warps": 4, "rows": 1, "prefetch": True, "maxnreg": 0},
    "img": {"block_g": 16, "num_warps": 4, "maxnreg": 0},
    # the plain chunked forward (any dtype; float64 runs only here) and the backward's tiles
    "chunked": {"block_g": 16, "block_l": 64, "num_warps": 4},
}
# Tiles of the backward kernel (channels per program, steps per chunk).
BACKWARD_DEFAULTS: dict[str, int] = {"block_g": 16, "block_l": 64, "num_warps": 4}
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


def _pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


# ----------------------------------------------------------------------------------------------
# Launch configurations: "kernel:setting-setting..." text, per-shape table, heuristic
# ----------------------------------------------------------------------------------------------

_LETTERS = {"g": "block_g", "l": "block_l", "w": "num_warps", "r": "rows", "m": "maxnreg"}
_IO_CODES = {
    "dbl": {"dp": "pixel", "dc": "channel", "da": "auto"},
    "x_mem": {"xs": "strided", "xc": "copy"},
    "y_mem": {"yx": "x", "yl": "cl", "yc": "contiguous"},
}


def parse_config(text: str) -> tuple[str, dict[str, Any]]:
    """'v2:g16-w4-r2-p1-m0-dp-yx' → ('v2', {block_g: 16, num_warps: 4, rows: 2, prefetch: True, ...}).

    Letters: g block_g (channels per program), l block_l (steps per chunk), w num_warps, r rows per loop step, p prefetch (p0/p1),
    m maxnreg (0: no cap); dp / dc / da projections layout (pixel, channel,
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
    if dtype == torch.float64:  # the fast kernels compute in float32
        return "chunked:g16-l64-w4"
    key = (int(D), int(H), int(W), str(dtype).replace("torch.", ""))
    return LAUNCH_TABLE.get(key) or heuristic_config(D=D, H=H, W=W)
