"""Time the selective-scan paths on VMamba shapes and compare with the HBM roofline (GPU machine).

    PYTHONPATH=. python scripts/bench_scan.py [--out DIR] [--batch 128] [--sweep]

For each shape and dtype (bf16, fp32) it times, with ``triton.testing.do_bench`` (median):

* ``triton``       the whole ``cross_selective_scan`` on the fused path (x-projection GEMM + kernel);
* ``triton.kernel`` the fused kernel alone (projections precomputed);
* ``mamba``        the whole ``cross_selective_scan`` with mamba-ssm's kernel (torch cross-scan/merge);
* ``mamba.kernel`` mamba-ssm's ``selective_scan_fn`` alone on the 4*D-channel cross-scanned inputs;
* ``torch``        the reference (parallel prefix scan in PyTorch).

Bytes models (each input read once, each output written once):
* fused kernel: x + dbl (B,4,R+2,H,W) in x's dtype, y float32, weights;
* whole cross_selective_scan: x once, y float32 once (what an ideal single fused op must move);
* mamba kernel: u, delta (B,4D,L), B, C (B,4,1,L) in x's dtype, y (B,4D,L) in x's dtype.
GB/s = bytes / time; "% peak" against the datasheet HBM3 bandwidth (H100 SXM 3.35 TB/s), "% copy"
against a device-to-device copy measured in the same run (bytes read + written).
Every timed path is first checked against the float32 torch reference (relative L2 error of the scan
part, y minus the exact D skip, shown).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from robusteval.ops import scan_triton  # noqa: E402
from robusteval.ops import selective_scan as ss  # noqa: E402

PEAK_HBM = {"H100": 3.35e12, "H200": 4.8e12}

# (name, d_inner, H, W, dt_rank): VMamba v2 stages (d_inner = ssm_ratio * dim, dt_rank = ceil(dim / 16)).
SHAPES = [
    ("B.stage1", 256, 56, 56, 8),
    ("S.stage1", 192, 56, 56, 6),
    ("T.stage1", 96, 56, 56, 6),
    ("B.stage2", 512, 28, 28, 16),
    ("B.stage3", 1024, 14, 14, 32),
]


def weights(d: int, r: int, device: str = "cuda") -> dict:
    g = torch.Generator().manual_seed(0)
    u = lambda *s: torch.rand(*s, generator=g)  # noqa: E731
    dt = torch.exp(u(4, d) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
    w = dict(
        x_proj_weight=(u(4, r + 2, d) * 2 - 1) / math.sqrt(d),
        dt_projs_weight=(u(4, d, r) * 2 - 1) / math.sqrt(r),
        dt_projs_bias=dt + torch.log(-torch.expm1(-dt)),
        A_logs=0.3 * u(4 * d, 1),
        Ds=1.0 + 0.1 * u(4 * d),
    )
    return {k: v.to(device) for k, v in w.items()}


def bench(fn, *, warmup: int = 10, rep: int = 40) -> float:
    import triton.testing

    return float(triton.testing.do_bench(fn, warmup=warmup, rep=rep, return_mode="median")) * 1e-3


def copy_bandwidth() -> float:
    src = torch.randn(512 * 1024 * 1024 // 4 * 4, device="cuda")  # 2 GiB float32
    dst = torch.empty_like(src)
    t = bench(lambda: dst.copy_(src))
    return 2 * src.numel() * 4 / t


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--sweep", action="store_true", help="try block_g x num_warps on B.stage1")
    ap.add_argument("--shapes", default=",".join(s[0] for s in SHAPES))
    ap.add_argument("--configs", default="fma-g8-w2,dot-g16-w4,dot-g16-w2,dot-g32-w4,dot-g32-w8")
    args = ap.parse_args()
    dev = torch.cuda.get_device_name()
    peak = next((v for k, v in PEAK_HBM.items() if k in dev), float("nan"))
    copy_bw = copy_bandwidth()
    print(f"device {dev}; torch {torch.__version__}; device copy {copy_bw / 1e9:.0f} GB/s", flush=True)
    avail = ss.available_backends()
    print("backends:", avail, flush=True)
    rows: list[dict] = []
    B = args.batch

    def record(shape, dtype, path, seconds, nbytes, err, note=""):
        row = dict(
            shape=shape,
            dtype=str(dtype).replace("torch.", ""),
            path=path,
            ms=seconds * 1e3,
            GBps=nbytes / seconds / 1e9,
            pct_peak=100 * nbytes / seconds / peak,
            pct_copy=100 * nbytes / seconds / copy_bw,
            rel_err=err,
            note=note,
        )
        rows.append(row)
        print(json.dumps(row), flush=True)

    if args.sweep:
        d, h, w, r = 256, 56, 56, 8
        wt = weights(d, r)
        x = torch.randn(B, d, h, w, device="cuda").to(torch.bfloat16)
        dbl = scan_triton.projections(x, wt["x_proj_weight"]).contiguous()
        nbytes = scan_triton.hbm_bytes(B=B, D=d, H=h, W=w, R=r, in_bytes=x.element_size())
        best: tuple[float, dict] | None = None
        for cfg in args.configs.split(","):  # e.g. dot-g16-w4, fma-g8-w2
            kind, g_, w_ = cfg.split("-")
            kw = dict(block_g=int(g_[1:]), num_warps=int(w_[1:]), dt_dot=kind == "dot")
            try:
                t = bench(partial(scan_triton.fused_kernel_only, x, dbl, **kw, **wt))
                record("B.stage1", x.dtype, f"triton.kernel {cfg}", t, nbytes, float("nan"))
                if best is None or t < best[0]:
                    best = (t, kw)
            except Exception as err:  # a config that does not compile is reported, not fatal
                print(f"sweep {cfg}: {type(err).__name__}: {err}"[:400], flush=True)
        if best is not None:
            scan_triton.DEFAULT_CONFIG.update(best[1])
        print("using", scan_triton.DEFAULT_CONFIG, flush=True)
        del x, dbl

    wanted = set(args.shapes.split(","))
    for name, d, h, w, r in SHAPES:
        if name not in wanted:
            continue
        wt = weights(d, r)
        L = h * w
        for dtype in (torch.bfloat16, torch.float32):
            torch.manual_seed(0)
            x = (torch.randn(B, d, h, w, device="cuda") * 0.5).to(dtype)
            s = x.element_size()
            # Errors compare the scan part only: the D skip (sum_k D_k * x) is exact everywhere and large.
            skip = wt["Ds"].view(4, d).sum(0).view(1, d, 1, 1) * x.float()
            ref = ss.cross_selective_scan(x, **wt, backend="torch") - skip
            whole = B * d * L * s + B * d * L * 4
            for path in ("triton", "mamba", "torch"):
                if avail.get(path) is not None:
                    continue
                fn = partial(ss.cross_selective_scan, x, **wt, backend=path)
                err = rel(fn() - skip, ref)
                record(name, dtype, path, bench(fn), whole, err, "bytes: x + y once")
            if avail.get("triton") is None:
                dbl = scan_triton.projections(x, wt["x_proj_weight"]).contiguous()
                err = rel(scan_triton.fused_kernel_only(x, dbl, **wt) - skip, ref)
                nbytes = scan_triton.hbm_bytes(B=B, D=d, H=h, W=w, R=r, in_bytes=s)
                t = bench(partial(scan_triton.fused_kernel_only, x, dbl, **wt))
                record(name, dtype, "triton.kernel", t, nbytes, err, "bytes: x + dbl + y")
                t = bench(partial(scan_triton.projections, x, wt["x_proj_weight"]))
                record(name, dtype, "x_proj GEMM", t, B * d * L * s + B * 4 * (r + 2) * L * s, float("nan"))
            if avail.get("mamba") is None:
                from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

                dts, Bs, Cs = ss.project(
                    x, x_proj_weight=wt["x_proj_weight"], dt_projs_weight=wt["dt_projs_weight"]
                )
                xs = ss.cross_scan(x).reshape(B, 4 * d, L).contiguous()
                dts = ss._to_scan_order(dts, h, w).reshape(B, 4 * d, L).contiguous()
                Bs = ss._to_scan_order(Bs, h, w).contiguous()
                Cs = ss._to_scan_order(Cs, h, w).contiguous()
                As = -torch.exp(wt["A_logs"].float())
                Ds = wt["Ds"].float()
                bias = wt["dt_projs_bias"].float().reshape(-1)
                kfn = partial(selective_scan_fn, xs, dts, As, Bs, Cs, Ds, None, bias, True)
                nbytes = 3 * B * 4 * d * L * s + 2 * B * 4 * L * s
                record(name, dtype, "mamba.kernel", bench(kfn), nbytes, float("nan"), "bytes: u,delta,B,C,y")
            del x, ref
            torch.cuda.empty_cache()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = dict(
        device=dev,
        torch=torch.__version__,
        copy_GBps=copy_bw / 1e9,
        batch=B,
        time=time.time(),
        triton_config=scan_triton.DEFAULT_CONFIG,
    )
    (out / "bench_scan.json").write_text(json.dumps(dict(meta=meta, rows=rows), indent=1))
    lines = [
        f"device {dev}, batch {B}, device copy {copy_bw / 1e9:.0f} GB/s, datasheet {peak / 1e9:.0f} GB/s",
        "",
        "| shape | dtype | path | ms | GB/s | % peak | % copy | rel err | bytes model |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r_ in rows:
        lines.append(
            f"| {r_['shape']} | {r_['dtype']} | {r_['path']} | {r_['ms']:.3f} | {r_['GBps']:.0f} | "
            f"{r_['pct_peak']:.0f} | {r_['pct_copy']:.0f} | {r_['rel_err']:.1e} | {r_['note']} |"
        )
    table = "\n".join(lines)
    (out / "bench_scan.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
