"""Time the selective-scan paths on VMamba shapes and compare with the HBM roofline (GPU machine).

    PYTHONPATH=. python scripts/benchmarks/bench_scan.py [--out DIR] [--batch 128] [--shapes B.stage1,...]
        [--sweep [--sweep-shapes B.stage1,...] [--budget-s 150] [--jobs 12]] [--dtypes bf16,fp32]
        [--skip-torch] [--compare CONFIG,... [--dtypes-off]]

``--compare`` times the named configs side by side on each ``--shapes`` shape (bf16): the op and the
kernel alone (configs a shape cannot run are reported and skipped).

``--sweep`` times launch configurations of the fused kernels per shape and dtype and prints the
best per shape, as the ``LAUNCH_TABLE`` entries of ``robusteval/models/kernels/triton_scan.py`` (also written
to ``best_configs.json``, which ``scripts/benchmarks/bench_models.py --launch-table`` reads). Candidates: the
row kernel ``v2`` with 16-128 channels per program and 4 or 8 warps, the whole-image kernel ``img``
where the image fits one tile, the 16-channel ones also capped at 128 registers; then, on the fastest, the data layouts around it (projections
channel-major ``dc`` instead of pixel-major, and the old path ``xc-yc-dc``: x copied contiguous
first, y contiguous, so the out-norm's permute copies it). Shapes are swept in the order given
until ``--budget-s`` is spent (B first); fp32 and the T/S shapes get fewer candidates
(:func:`candidates`). Config text: ``scan_triton.parse_config``. Kernels are compiled beforehand in
``--jobs`` processes (Triton's disk cache), so the sweep pays compile time once, in parallel.

What a sweep row times, "op": the whole ``cross_selective_scan`` on the fused path as SS2D runs it
(a channels_last x view in, x projection GEMM, kernel) plus the out-norm's ``y.permute(0, 2, 3, 1)
.contiguous()`` (free when y is channels_last). "kernel": the kernel alone on precomputed
projections.

For each ``--shapes`` shape and dtype, with the table's config (after a sweep: the winners), it
times with ``triton.testing.do_bench`` (median):

* ``triton``            the op as above;
* ``triton.kernel``     the kernel alone;
* ``x_proj GEMM``       the projection that feeds the kernel;
* ``mamba``             the whole ``cross_selective_scan`` with mamba-ssm's kernel (torch cross-scan/merge);
* ``mamba.kernel``      mamba-ssm's ``selective_scan_fn`` alone on the 4*D-channel cross-scanned inputs;
* ``torch``             the reference (parallel prefix scan in PyTorch).

Bytes models (each input read once, each output written once):
* fused kernel: x + dbl (B,4,R+2,H,W) in x's dtype, y float32, weights;
* whole cross_selective_scan: x once, y float32 once (what an ideal single fused op must move);
* mamba kernel: u, delta (B,4D,L), B, C (B,4,1,L) in x's dtype, y (B,4D,L) in x's dtype.
GB/s = bytes / time; "% peak" against the datasheet HBM3 bandwidth (H100 SXM 3.35 TB/s), "% copy"
against a device-to-device copy measured in the same run (bytes read + written).
Every timed path is first checked against the float64 torch reference on the first ``--check-batch``
images (relative L2 error of the scan part, y minus the exact D skip, shown).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import sys
import time
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from robusteval.models.kernels import scan as ss  # noqa: E402
from robusteval.models.kernels import triton_scan as scan_triton  # noqa: E402

PEAK_HBM = {"H100": 3.35e12, "H200": 4.8e12}

# (name, d_inner, H, W, dt_rank): VMamba v2 stages at 224 (d_inner = ssm_ratio * dim,
# dt_rank = ceil(dim / 16)); B: dim 128, ratio 2; S: dim 96, ratio 2; T: dim 96, ratio 1.
SHAPES = [
    ("B.stage1", 256, 56, 56, 8),
    ("B.stage2", 512, 28, 28, 16),
    ("B.stage3", 1024, 14, 14, 32),
    ("B.stage4", 2048, 7, 7, 64),
    ("S.stage1", 192, 56, 56, 6),
    ("S.stage2", 384, 28, 28, 12),
    ("S.stage3", 768, 14, 14, 24),
    ("S.stage4", 1536, 7, 7, 48),
    ("T.stage1", 96, 56, 56, 6),
    ("T.stage2", 192, 28, 28, 12),
    ("T.stage3", 384, 14, 14, 24),
    ("T.stage4", 768, 7, 7, 48),
]
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}
# --smoke: tiny shapes on the CPU under TRITON_INTERPRET=1, to check this script itself.
SMOKE_SHAPES = [("B.stage1", 16, 8, 8, 2), ("B.stage3", 32, 4, 4, 2)]
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# Layout variants tried on each shape's fastest kernel config (see the module docstring).
IO_VARIANTS = ("dc", "xc-yc-dc")
# The path before per-shape configs: 16 channels a program, x copied contiguous, y contiguous (so the
# out-norm's permute copies it), projections channel-major.
BASELINE = "v2:g16-w4-r1-p1-xc-yc-dc"


def hbm_bytes(*, B: int, D: int, H: int, W: int, R: int, in_bytes: int) -> int:
    """Fewest HBM bytes the fused forward kernel must move: x and dbl read once, y (float32) written once."""
    L = H * W
    return B * D * L * in_bytes + B * 4 * (R + 2) * L * in_bytes + B * D * L * 4 + 4 * D * (R + 3) * 4


def candidates(*, D: int, H: int, W: int, full: bool) -> list[str]:
    """Kernel configs to sweep for a shape: every plausible one when ``full``, else at most four.

    Row kernel ``v2``: 16-128 channels per program and 4 or 8 warps, keeping 2-8 elements of a row
    tile per thread (more spills: offline sm_90 compiles reach 255 registers) and tiles of at most
    2048 elements. Whole-image kernel ``img`` where H W <= 256 (at 28x28 its tile spills), with
    8-16 elements of the (channels, pixels) tile per thread. ``full`` adds the 16-channel configs
    with a 128-register cap (``-m128``), which won at B.stage1 and B.stage3.
    """
    bw = max(16, scan_triton._pow2(W))
    rows, imgs = [], []
    for g in (16, 32, 64, 128):
        for w in (4, 8):
            per_thread = g * bw // (32 * w)
            if g <= max(16, D) and g * bw <= 2048 and 2 <= per_thread <= 8:
                rows.append((per_thread, f"v2:g{g}-w{w}-r1-p1"))
    if H * W <= 256:
        tile = scan_triton._pow2(H * W)
        for g in (16, 32, 64):
            for w in (2, 4, 8, 16):
                per_thread = g * tile // (32 * w)
                if g <= max(16, D) and 1024 <= g * tile <= 8192 and 8 <= per_thread <= 16:
                    imgs.append((per_thread, f"img:g{g}-w{w}"))
    if full:  # and 16-channel tiles capped at 128 registers (two resident programs instead of one)
        return [c for _, c in rows + imgs] + [f"{c}-m128" for _, c in rows + imgs if ":g16-" in c]
    # the largest row tiles (4 and 8 elements a thread) and the smallest img tiles
    return [c for p, c in rows if p >= 4][-2:] + [c for _, c in sorted(imgs)][:2]


def weights(d: int, r: int) -> dict:
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
    return {k: v.to(DEVICE) for k, v in w.items()}


def inputs(*, B: int, d: int, h: int, w: int, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    """x as SS2D hands it to the scan: a (B, D, H, W) view of channels-last (B, H, W, D) memory."""
    torch.manual_seed(seed)
    return (torch.randn(B, h, w, d, device=DEVICE) * 0.5).to(dtype).permute(0, 3, 1, 2)


def consume(y: torch.Tensor) -> torch.Tensor:
    """What SS2D's out-norm reads: (B, H, W, D) contiguous (a copy unless y is channels_last)."""
    return y.permute(0, 2, 3, 1).contiguous()


def bench(fn, *, warmup: int = 10, rep: int = 40) -> float:
    if DEVICE == "cpu":  # --smoke: one timed call
        t = time.perf_counter()
        fn()
        return time.perf_counter() - t
    import triton.testing

    return float(triton.testing.do_bench(fn, warmup=warmup, rep=rep, return_mode="median")) * 1e-3


def copy_bandwidth() -> float:
    n = 512 * 1024 * 1024 if DEVICE == "cuda" else 1024 * 1024
    src = torch.randn(n, device=DEVICE)  # 2 GiB float32 on the GPU
    dst = torch.empty_like(src)
    t = bench(lambda: dst.copy_(src))
    return 2 * src.numel() * 4 / t


def _empty_cache() -> None:
    if DEVICE == "cuda":
        torch.cuda.empty_cache()


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def _compile_one(task: tuple) -> tuple[tuple, str | None]:
    """Worker: run one (shape, dtype, config) on 2 images so that Triton compiles it into its cache."""
    d, h, w, r, dname, text = task
    try:
        x = inputs(B=2, d=d, h=h, w=w, dtype=DTYPES[dname])
        scan_triton.cross_selective_scan_triton(x, **weights(d, r), config=text)
        if DEVICE == "cuda":
            torch.cuda.synchronize()
        return task, None
    except Exception as err:  # reported by the sweep, not fatal
        return task, f"{type(err).__name__}: {err}"[:300]


def precompile(tasks: list[tuple], *, jobs: int) -> dict[tuple, str | None]:
    """Compile every task's kernel in ``jobs`` processes; → task → error text or None."""
    if jobs <= 1 or len(tasks) <= 1:
        return dict(_compile_one(t) for t in tasks)
    with mp.get_context("spawn").Pool(min(jobs, len(tasks))) as pool:
        return dict(pool.map(_compile_one, tasks, chunksize=1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--check-batch", type=int, default=4, help="images used for the error column")
    ap.add_argument("--sweep", action="store_true", help="time launch configs per shape first")
    ap.add_argument("--sweep-shapes", default=",".join(s[0] for s in SHAPES))
    ap.add_argument("--sweep-dtypes", default="bf16,fp32")
    ap.add_argument("--budget-s", type=float, default=150.0, help="stop sweeping new shapes after this")
    ap.add_argument("--jobs", type=int, default=12, help="processes compiling sweep kernels")
    ap.add_argument("--shapes", default="B.stage1,B.stage2,B.stage3,B.stage4")
    ap.add_argument("--dtypes", default="bf16,fp32")
    ap.add_argument("--skip-torch", action="store_true", help="do not time the (slow) torch reference")
    ap.add_argument("--skip-mamba", action="store_true", help="do not time mamba-ssm")
    ap.add_argument("--compare", default="", help="configs to time side by side on --shapes (bf16)")
    ap.add_argument("--dtypes-off", action="store_true", help="skip the per-path timings after --compare")
    ap.add_argument("--smoke", action="store_true", help="tiny shapes (CPU: TRITON_INTERPRET=1)")
    args = ap.parse_args()
    if args.smoke:
        SHAPES[:] = SMOKE_SHAPES
    dev = torch.cuda.get_device_name() if DEVICE == "cuda" else "cpu (smoke)"
    peak = next((v for k, v in PEAK_HBM.items() if k in dev), float("nan"))
    copy_bw = copy_bandwidth()
    print(f"device {dev}; torch {torch.__version__}; device copy {copy_bw / 1e9:.0f} GB/s", flush=True)
    avail = ss.available_backends()
    print("backends:", avail, flush=True)
    rows: list[dict] = []
    best: dict[str, dict] = {}
    B = args.batch
    shape_of = {s[0]: s[1:] for s in SHAPES}

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

    def reference(x, wt, d):
        """Scan part (y minus the exact D skip) of the float64 reference on the first images."""
        xc = x[: args.check_batch]
        skip = wt["Ds"].view(4, d).sum(0).view(1, d, 1, 1) * xc.double()
        return xc, skip, ss.cross_selective_scan(xc.double(), **wt, backend="torch") - skip

    if args.sweep and avail.get("triton") is None:
        t_start = time.perf_counter()
        plan = []  # (name, dtype name, [config texts])
        for dname in args.sweep_dtypes.split(","):
            for name in args.sweep_shapes.split(","):
                d, h, w, r = shape_of[name]
                full = dname == "bf16" and name.startswith("B.")
                cands = candidates(D=d, H=h, W=w, full=full)
                plan.append((name, dname, cands + [BASELINE] if full else cands))
        # B shapes in bf16 first (the model's path), then the rest as the budget allows.
        plan.sort(key=lambda p: (not (p[1] == "bf16" and p[0].startswith("B.")), p[1] != "bf16"))
        errors = precompile([(*shape_of[n], dn, c) for n, dn, cs in plan for c in cs], jobs=args.jobs)
        print(f"compiled {len(errors)} kernels in {time.perf_counter() - t_start:.0f} s", flush=True)
        timed: dict[tuple[str, str], dict[str, float]] = {}

        def trials(name: str, dname: str, texts: list[str]) -> None:
            """Check and time each config on this shape (the op, as the module docstring says)."""
            d, h, w, r = shape_of[name]
            dtype = DTYPES[dname]
            tol = 2e-2 if dtype != torch.float32 else 1e-4
            wt = weights(d, r)
            x = inputs(B=B, d=d, h=h, w=w, dtype=dtype)
            xc, skip, ref = reference(x, wt, d)
            nbytes = hbm_bytes(B=B, D=d, H=h, W=w, R=r, in_bytes=x.element_size())
            got = timed.setdefault((name, dname), {})
            for text in texts:
                if errors.get((d, h, w, r, dname, text)):
                    print(f"sweep {name} {dname} {text}: {errors[(d, h, w, r, dname, text)]}", flush=True)
                    continue
                try:
                    fn = partial(scan_triton.cross_selective_scan_triton, **wt, config=text)
                    err = rel(fn(xc) - skip, ref)
                    if not err < tol:
                        raise RuntimeError(f"scan error {err:.2e} over the tolerance {tol}")
                    t = bench(lambda fn=fn: consume(fn(x)))
                except Exception as exc:  # a config that fails is reported, not fatal
                    print(f"sweep {name} {dname} {text}: {type(exc).__name__}: {exc}"[:400], flush=True)
                    continue
                got[text] = t
                record(name, dtype, f"op {text}", t, nbytes, err, "sweep")
            del x, xc, ref
            _empty_cache()

        swept = []
        for name, dname, cands in plan:
            if time.perf_counter() - t_start > args.budget_s:
                print(f"sweep budget spent; {name} {dname} not swept", flush=True)
                continue
            trials(name, dname, cands)
            if timed[(name, dname)]:
                swept.append((name, dname))
        # The data layouts around each shape's fastest kernel config, compiled together.
        variants = {}
        for name, dname in swept:
            got = timed[(name, dname)]
            top = min((t for t in got if t != BASELINE), key=got.get, default=BASELINE)
            variants[(name, dname)] = [f"{top}-{io}" for io in IO_VARIANTS]
        errors.update(
            precompile(
                [(*shape_of[n], dn, v) for (n, dn), vs in variants.items() for v in vs], jobs=args.jobs
            )
        )
        for (name, dname), texts in variants.items():
            trials(name, dname, texts)
            got = timed[(name, dname)]
            win = min(got, key=got.get)
            d, h, w, r = shape_of[name]
            dtype = DTYPES[dname]
            wt = weights(d, r)
            x = inputs(B=B, d=d, h=h, w=w, dtype=dtype)
            _, cfg = scan_triton.parse_config(win)
            xk = x.contiguous() if cfg.get("x_mem") == "copy" else x
            dbl = scan_triton.projections(xk, wt["x_proj_weight"], layout=cfg.get("dbl", "auto"))
            tk = bench(partial(scan_triton.fused_kernel_only, xk, dbl, **wt, config=win))
            nbytes = hbm_bytes(B=B, D=d, H=h, W=w, R=r, in_bytes=x.element_size())
            record(name, dtype, f"kernel {win}", tk, nbytes, float("nan"), "sweep winner, kernel alone")
            best[f"{name}/{dname}"] = dict(
                shape=name, dtype=dname, D=d, H=h, W=w, config=win, op_ms=got[win] * 1e3,
                kernel_ms=tk * 1e3, kernel_pct_copy=100 * nbytes / tk / copy_bw,
                baseline_ms=got.get(BASELINE, float("nan")) * 1e3,
            )  # fmt: skip
            print("best", json.dumps(best[f"{name}/{dname}"]), flush=True)
            scan_triton.LAUNCH_TABLE[(d, h, w, str(dtype).replace("torch.", ""))] = win
            del x, xk, dbl
            _empty_cache()
        print(f"sweep took {time.perf_counter() - t_start:.0f} s", flush=True)

    wanted = [s for s in args.shapes.split(",") if s]
    compare = [c for c in args.compare.split(",") if c]
    if compare and avail.get("triton") is None:
        # Named configs side by side on --shapes (bf16): the op as in the sweep, and the kernel alone.
        tasks = [(*shape_of[n], "bf16", c) for n in wanted for c in compare]
        errors = precompile(tasks, jobs=args.jobs)
        for name in wanted:
            d, h, w, r = shape_of[name]
            wt = weights(d, r)
            x = inputs(B=B, d=d, h=h, w=w, dtype=torch.bfloat16)
            xc, skip, ref = reference(x, wt, d)
            nbytes = hbm_bytes(B=B, D=d, H=h, W=w, R=r, in_bytes=x.element_size())
            for text in compare:
                if errors.get((d, h, w, r, "bf16", text)):
                    print(f"compare {name} {text}: {errors[(d, h, w, r, 'bf16', text)]}", flush=True)
                    continue
                fn = partial(scan_triton.cross_selective_scan_triton, **wt, config=text)
                err = rel(fn(xc) - skip, ref)
                record(
                    name,
                    x.dtype,
                    f"op {text}",
                    bench(lambda fn=fn, x=x: consume(fn(x))),
                    nbytes,
                    err,
                    "compare",
                )
                _, cfg = scan_triton.parse_config(text)
                xk = x.contiguous() if cfg.get("x_mem") == "copy" else x
                dbl = scan_triton.projections(xk, wt["x_proj_weight"], layout=cfg.get("dbl", "auto"))
                t = bench(partial(scan_triton.fused_kernel_only, xk, dbl, **wt, config=text))
                record(name, x.dtype, f"kernel {text}", t, nbytes, float("nan"), "compare")
                del xk, dbl
            del x, xc, ref
            _empty_cache()

    for name in [] if args.dtypes_off else wanted:
        d, h, w, r = shape_of[name]
        wt = weights(d, r)
        L = h * w
        for dname in args.dtypes.split(","):
            dtype = DTYPES[dname]
            x = inputs(B=B, d=d, h=h, w=w, dtype=dtype)
            s = x.element_size()
            xc, skip, ref = reference(x, wt, d)
            whole = B * d * L * s + B * d * L * 4
            text = scan_triton.launch_config(D=d, H=h, W=w, dtype=dtype)
            for path in ("triton", "mamba", "torch"):
                if avail.get(path) is not None or (path == "torch" and args.skip_torch):
                    continue
                if path == "mamba" and args.skip_mamba:
                    continue
                err = rel(ss.cross_selective_scan(xc, **wt, backend=path) - skip, ref)
                fn = partial(ss.cross_selective_scan, **wt, backend=path)
                note = f"bytes: x + y once; {text}" if path == "triton" else "bytes: x + y once"
                record(name, dtype, path, bench(lambda fn=fn, x=x: consume(fn(x))), whole, err, note)
            if avail.get("triton") is None:
                _, cfg = scan_triton.parse_config(text)
                xk = x.contiguous() if cfg.get("x_mem") == "copy" else x
                dbl = scan_triton.projections(xk, wt["x_proj_weight"], layout=cfg.get("dbl", "auto"))
                nbytes = hbm_bytes(B=B, D=d, H=h, W=w, R=r, in_bytes=s)
                t = bench(partial(scan_triton.fused_kernel_only, xk, dbl, **wt, config=text))
                record(name, dtype, "triton.kernel", t, nbytes, float("nan"), f"bytes: x + dbl + y; {text}")
                t = bench(
                    partial(scan_triton.projections, xk, wt["x_proj_weight"], layout=cfg.get("dbl", "auto"))
                )
                record(name, dtype, "x_proj GEMM", t, B * d * L * s + B * 4 * (r + 2) * L * s, float("nan"))
                del dbl
            if avail.get("mamba") is None and not args.skip_mamba:
                from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

                dts, Bs, Cs = ss.project(
                    x, x_proj_weight=wt["x_proj_weight"], dt_projs_weight=wt["dt_projs_weight"]
                )
                xs = ss.cross_scan(x).reshape(B, 4 * d, L).contiguous()
                dts = dts.reshape(B, 4 * d, L)  # project() returns scan order, contiguous
                As = -torch.exp(wt["A_logs"].float())
                Ds = wt["Ds"].float()
                bias = wt["dt_projs_bias"].float().reshape(-1)
                kfn = partial(selective_scan_fn, xs, dts, As, Bs, Cs, Ds, None, bias, True)
                nbytes = 3 * B * 4 * d * L * s + 2 * B * 4 * L * s
                record(name, dtype, "mamba.kernel", bench(kfn), nbytes, float("nan"), "bytes: u,delta,B,C,y")
                del xs, dts, Bs, Cs
            del x, ref
            _empty_cache()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = dict(device=dev, torch=torch.__version__, copy_GBps=copy_bw / 1e9, batch=B, time=time.time())
    (out / "bench_scan.json").write_text(json.dumps(dict(meta=meta, rows=rows, best=best), indent=1))
    if best:
        (out / "best_configs.json").write_text(json.dumps(list(best.values()), indent=1))
    lines = [
        f"device {dev}, batch {B}, device copy {copy_bw / 1e9:.0f} GB/s, datasheet {peak / 1e9:.0f} GB/s",
        "",
        "| shape | dtype | path | ms | GB/s | % peak | % copy | rel err | note |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r_ in rows:
        lines.append(
            f"| {r_['shape']} | {r_['dtype']} | {r_['path']} | {r_['ms']:.3f} | {r_['GBps']:.0f} | "
            f"{r_['pct_peak']:.1f} | {r_['pct_copy']:.1f} | {r_['rel_err']:.1e} | {r_['note']} |"
        )
    if best:
        lines += [
            "",
            f"Best per shape (op = projections + kernel + out-norm read; baseline = `{BASELINE}`):",
            "",
            "| shape | dtype | config | op ms | kernel ms | kernel % copy | baseline op ms |",
            "|---|---|---|--:|--:|--:|--:|",
        ]
        for b_ in best.values():
            lines.append(
                f"| {b_['shape']} | {b_['dtype']} | `{b_['config']}` | {b_['op_ms']:.3f} | {b_['kernel_ms']:.3f} | "
                f"{b_['kernel_pct_copy']:.1f} | {b_['baseline_ms']:.3f} |"
            )
        lines += ["", "LAUNCH_TABLE entries:", ""]
        for b_ in best.values():
            dname = str(DTYPES[b_["dtype"]]).replace("torch.", "")
            lines.append(
                f'    ({b_["D"]}, {b_["H"]}, {b_["W"]}, "{dname}"): "{b_["config"]}",  # {b_["shape"]}'
            )
    table = "\n".join(lines)
    (out / "bench_scan.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
