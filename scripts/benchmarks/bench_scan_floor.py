"""How close can a fused VMamba scan get to the HBM roofline? Floors measured side by side (GPU machine).

    PYTHONPATH=. python scripts/benchmarks/bench_scan_floor.py [--out DIR] [--batch 128] [--shapes B.stage1,...]

The fused kernel reads x once and writes y once, so its bytes are few: about 6.3 bytes per element
(x bf16, y float32, the projections) against 12 special-function (MUFU) operations per element —
three per element and direction (2^v, log2(1 + 2^v), 2^(A L)), four directions. On an H100 the
MUFU pipe does 16 of those per clock per SM, so this script measures, in one run:

* ``copy``: device-to-device copy bandwidth (the roofline's slope);
* ``mufu``: the special-function rate, a kernel of independent ``ex2.approx`` / ``lg2.approx``
  chains (ops/s), and from it each shape's MUFU floor = 12 x elements / rate;
* ``floor kernel``: the fused kernel's per-element arithmetic with the recurrence taken out — the
  same dt dot, softplus, exp and D skip over all four directions, each (pixel, channel) on its
  own, x read once, y written once — in a few tile shapes (best reported). Whatever a scan kernel
  adds (sequence order, carries, entry states) only costs time on top of it;
* ``fused kernel``: the real kernel (``scan_triton``, the launch table's config) on the same inputs.

Each is reported as ms and as % of the copy bandwidth under the fused kernel's bytes model
(``bench_scan.hbm_bytes``); "80% target" is the time at 80% of it.
``--smoke`` runs the kernels on tiny shapes under ``TRITON_INTERPRET=1`` (CPU).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import torch
import triton
import triton.language as tl

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_scan  # noqa: E402

from robusteval.models.kernels import triton_scan as scan_triton  # noqa: E402
from robusteval.models.kernels.triton.common import (  # noqa: E402
    _dsum,
    _dt_weights,
    _lg2,
    _neg_exp,
    _softplus2,
)

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
MUFU_PER_ELEMENT = 12  # 3 per direction (exp2, lg2, exp2) x 4 directions
LN2 = math.log(2.0)
# Floor-kernel tiles tried per shape: (pixels, channels, warps).
FLOOR_TILES = ((32, 64, 4), (64, 32, 4), (32, 32, 2), (16, 64, 2), (64, 64, 8))


@triton.jit
def mufu_kernel(out_ptr, n_iter, BLOCK: tl.constexpr, ASM: tl.constexpr):
    """Eight independent chains per element, each step one ex2 or lg2 (plus one FMA): 8 n_iter ops.

    tl.exp2 of float32 is one ``MUFU.EX2`` (as in the scan kernels); ``_lg2`` the ``lg2.approx`` asm.
    """
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    base = offs.to(tl.float32) * 1e-7
    v0 = base + 0.1
    v1 = base + 0.2
    v2 = base + 0.3
    v3 = base + 0.4
    v4 = base + 0.5
    v5 = base + 0.6
    v6 = base + 0.7
    v7 = base + 0.8
    for _ in range(n_iter):
        # 2^(-v/2) stays in (0.5, 1]; log2(v + 1.5) in (1, 1.33): every chain stays bounded.
        v0 = tl.exp2(v0 * -0.5)
        v1 = _lg2(v1 + 1.5, ASM)
        v2 = tl.exp2(v2 * -0.5)
        v3 = _lg2(v3 + 1.5, ASM)
        v4 = tl.exp2(v4 * -0.5)
        v5 = _lg2(v5 + 1.5, ASM)
        v6 = tl.exp2(v6 * -0.5)
        v7 = _lg2(v7 + 1.5, ASM)
    tl.store(out_ptr + offs, v0 + v1 + v2 + v3 + v4 + v5 + v6 + v7)


@triton.jit
def floor_kernel(
    x_ptr,  # (N, D) pixels x channels, contiguous: channels_last x flattened
    dbl_ptr,  # (N, 4, R + 2) contiguous: the pixel-major projections
    dtw_ptr,  # (4, D, R) dt_projs_weight
    dtb_ptr,  # (4, D) dt_projs_bias
    alog_ptr,  # (4 D, 1) A_logs
    ds_ptr,  # (4 D,) Ds
    y_ptr,  # (N, D) float32
    N,
    D,
    R: tl.constexpr,
    R_PAD: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_G: tl.constexpr,
    PREC: tl.constexpr,
    DOT_F32: tl.constexpr,
    ACCURATE: tl.constexpr,
    ASM: tl.constexpr,
):
    """y = Ds_sum u + sum_k C_k (a_k + delta_k B_k) u: the fused scan's arithmetic per (pixel, channel)
    with the recurrence removed (h_k = a_k u + delta_k B_k u instead of a_k h_prev + delta_k B_k u)."""
    p_idx = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    g_idx = tl.program_id(1) * BLOCK_G + tl.arange(0, BLOCK_G)
    r_idx = tl.arange(0, R_PAD)
    p_mask = p_idx < N
    g_mask = g_idx < D
    tile = p_mask[:, None] & g_mask[None, :]
    p64 = p_idx.to(tl.int64)
    u = tl.load(x_ptr + p64[:, None] * D + g_idx[None, :], mask=tile, other=0.0).to(tl.float32)
    y = _dsum(ds_ptr, D, g_idx, g_mask)[None, :] * u
    row = dbl_ptr + p64 * (4 * (R + 2))
    for k in tl.static_range(4):
        wm, b = _dt_weights(dtw_ptr, dtb_ptr, x_ptr, k, D, g_idx, g_mask, r_idx, R, DOT_F32, False)
        A = _neg_exp(alog_ptr, k, D, g_idx, g_mask)
        dtr = tl.load(
            row[:, None] + k * (R + 2) + r_idx[None, :],
            mask=p_mask[:, None] & (r_idx[None, :] < R),
            other=0.0,
        )
        v = tl.dot(dtr.to(wm.dtype), tl.trans(wm), input_precision=PREC) + b[None, :]
        L = _softplus2(v, ACCURATE, ASM)
        Bv = tl.load(row + k * (R + 2) + R, mask=p_mask, other=0.0).to(tl.float32)
        Cv = tl.load(row + k * (R + 2) + R + 1, mask=p_mask, other=0.0).to(tl.float32)
        a = tl.exp2(L * A[None, :])
        y += Cv[:, None] * ((a + (L * 0.6931471805599453) * Bv[:, None]) * u)
    tl.store(y_ptr + p64[:, None] * D + g_idx[None, :], y, mask=tile)


def floor_reference(x: torch.Tensor, dbl: torch.Tensor, w: dict) -> torch.Tensor:
    """What ``floor_kernel`` computes, in float64: x (B, D, H, W), dbl (B, 4, R+2, H, W) → (B, D, H, W)."""
    xd = x.double()
    D = x.shape[1]
    R = w["dt_projs_weight"].shape[-1]
    y = w["Ds"].double().view(4, D).sum(0).view(1, D, 1, 1) * xd
    for k in range(4):
        dt = torch.einsum("dr,brhw->bdhw", w["dt_projs_weight"][k].double(), dbl[:, k, :R].double())
        delta = torch.nn.functional.softplus(dt + w["dt_projs_bias"][k].double().view(1, D, 1, 1))
        A = -torch.exp(w["A_logs"].double().view(4, D)[k]).view(1, D, 1, 1)
        Bv, Cv = dbl[:, k, R : R + 1].double(), dbl[:, k, R + 1 : R + 2].double()
        y = y + Cv * (torch.exp(delta * A) + delta * Bv) * xd
    return y


def floor_op(x: torch.Tensor, dbl: torch.Tensor, w: dict, *, tile: tuple[int, int, int]) -> torch.Tensor:
    """Launch ``floor_kernel`` on channels_last x (B, D, H, W) and pixel-major dbl; → channels_last y."""
    B, D, H, W = x.shape
    R = int(w["dt_projs_weight"].shape[-1])
    xf = x.permute(0, 2, 3, 1)
    df = dbl.permute(0, 3, 4, 1, 2)
    if not (xf.is_contiguous() and df.is_contiguous()):
        raise ValueError("floor_op wants channels_last x and pixel-major projections")
    N = B * H * W
    y = torch.empty(B, H, W, D, device=x.device, dtype=torch.float32)
    bp, bg, warps = tile
    f32 = x.dtype == torch.float32 or INTERPRET
    floor_kernel[(triton.cdiv(N, bp), triton.cdiv(D, bg))](
        xf,
        df,
        w["dt_projs_weight"].contiguous(),
        w["dt_projs_bias"].contiguous(),
        w["A_logs"].contiguous(),
        w["Ds"].contiguous(),
        y,
        N,
        D,
        R=R,
        R_PAD=max(16, scan_triton._pow2(R)),
        BLOCK_P=bp,
        BLOCK_G=bg,
        PREC="tf32x3" if f32 else "tf32",
        DOT_F32=f32,
        ACCURATE=x.dtype == torch.float32,
        ASM=not INTERPRET,
        num_warps=warps,
    )
    return y.permute(0, 3, 1, 2)


def mufu_rate(*, n_iter: int) -> float:
    """Measured special-function ops/s (ex2/lg2 approx, float32) over the whole device."""
    block = 256
    programs = 132 * 16 if bench_scan.DEVICE == "cuda" else 2
    out = torch.empty(programs * block, device=bench_scan.DEVICE)

    def run():
        mufu_kernel[(programs,)](out, n_iter, BLOCK=block, ASM=not INTERPRET, num_warps=8)

    seconds = bench_scan.bench(run)
    if not torch.isfinite(out).all():
        raise RuntimeError("mufu kernel produced non-finite values")
    return programs * block * n_iter * 8 / seconds


def measure(*, name: str, dtype: torch.dtype, shape: tuple[int, int, int, int], batch: int) -> dict:
    """Time the best floor-kernel tile and the fused kernel on one shape (ms), after checking
    every floor tile against :func:`floor_reference` on one image."""
    d, h, w, r = shape
    wt = bench_scan.weights(d, r)
    x = bench_scan.inputs(B=batch, d=d, h=h, w=w, dtype=dtype)
    dbl = scan_triton.projections(x, wt["x_proj_weight"].to(dtype), layout="pixel")
    ref = floor_reference(x[:1], dbl[:1], wt)
    best = None
    for tile in FLOOR_TILES:
        err = bench_scan.rel(floor_op(x[:1], dbl[:1], wt, tile=tile), ref)
        if not err < (1e-4 if dtype == torch.float32 else 2e-2):
            raise RuntimeError(f"floor kernel {tile} on {name} {dtype}: error {err:.2e}")
        t = bench_scan.bench(lambda tile=tile: floor_op(x, dbl, wt, tile=tile))
        if best is None or t < best[0]:
            best = (t, tile, err)
    config = scan_triton.launch_config(D=d, H=h, W=w, dtype=dtype)
    fused = dict(dt_projs_weight=wt["dt_projs_weight"], dt_projs_bias=wt["dt_projs_bias"])
    fused.update(A_logs=wt["A_logs"], Ds=wt["Ds"], config=config)
    fused_s = bench_scan.bench(lambda: scan_triton.fused_kernel_only(x, dbl, **fused))
    out = dict(bytes=bench_scan.hbm_bytes(B=batch, D=d, H=h, W=w, R=r, in_bytes=x.element_size()))
    out.update(
        elements=batch * d * h * w, floor_ms=best[0] * 1e3, floor_tile=list(best[1]), floor_err=best[2]
    )
    out.update(fused_ms=fused_s * 1e3, fused_config=config)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--shapes", default="B.stage1,B.stage2,B.stage3,B.stage4")
    ap.add_argument("--dtypes", default="bf16,fp32")
    ap.add_argument("--smoke", action="store_true", help="tiny shapes (CPU: TRITON_INTERPRET=1)")
    args = ap.parse_args()
    shapes = {s[0]: s[1:] for s in (bench_scan.SMOKE_SHAPES if args.smoke else bench_scan.SHAPES)}
    names = list(shapes) if args.smoke else args.shapes.split(",")
    B = 2 if args.smoke else args.batch
    dev = torch.cuda.get_device_name() if bench_scan.DEVICE == "cuda" else "cpu (smoke)"
    copy_bw = bench_scan.copy_bandwidth()
    rate = mufu_rate(n_iter=2 if args.smoke else 4096)
    head = dict(device=dev, torch=torch.__version__, triton=triton.__version__, copy_GBps=copy_bw / 1e9)
    head["mufu_Gops"] = rate / 1e9
    print(json.dumps(head), flush=True)
    rows = []
    for dname in args.dtypes.split(","):
        for name in names:
            r = dict(shape=name, dtype=dname)
            r.update(measure(name=name, dtype=bench_scan.DTYPES[dname], shape=shapes[name], batch=B))
            r["copy_ms"] = r["bytes"] / copy_bw * 1e3
            r["target80_ms"] = r["copy_ms"] / 0.8
            r["mufu_floor_ms"] = MUFU_PER_ELEMENT * r["elements"] / rate * 1e3
            for key in ("mufu_floor", "floor", "fused"):
                r[f"{key}_pct_copy"] = 100 * r["copy_ms"] / r[f"{key}_ms"]
            rows.append(r)
            print(json.dumps(r), flush=True)
            bench_scan._empty_cache()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "scan_floor.json").write_text(json.dumps(dict(head, rows=rows), indent=1) + "\n")
    lines = [
        f"{dev}; copy {copy_bw / 1e9:.0f} GB/s; special-function rate {rate / 1e9:.0f} G ops/s; batch {B}",
        "",
        "| shape | dtype | copy ms | 80% target ms | MUFU floor ms (% copy) | floor kernel ms (% copy) "
        "| fused kernel ms (% copy) | fused config |",
        "|---|---|--:|--:|--:|--:|--:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['shape']} | {r['dtype']} | {r['copy_ms']:.3f} | {r['target80_ms']:.3f} "
            f"| {r['mufu_floor_ms']:.3f} ({r['mufu_floor_pct_copy']:.0f}) | {r['floor_ms']:.3f} "
            f"({r['floor_pct_copy']:.0f}) | {r['fused_ms']:.3f} ({r['fused_pct_copy']:.1f}) "
            f"| `{r['fused_config']}` |"
        )
    (out / "scan_floor.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
