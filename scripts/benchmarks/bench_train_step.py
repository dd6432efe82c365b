"""Training-step throughput of VMamba on every differentiable scan path, and the fused scan's forward
and backward kernels against copy bandwidth and the floors, per VMamba-B stage shape.

    python scripts/benchmarks/bench_train_step.py --out $OUT [--upstream .upstream/VMamba]
        [--batch 128] [--backends triton,mamba,torch] [--compile] [--floor]
    TRITON_INTERPRET=1 python scripts/benchmarks/bench_train_step.py --tiny --out /tmp/x   # CPU check

Training step: SGD step of cross-entropy on random 224x224 images and labels, bf16 autocast
(forward + backward + step, img/s over ``--iters`` steps after warm-up); ours (vmamba_b, random
weights) under each ``--backends`` path (the backend that ran is recorded with
:func:`~robusteval.models.kernels.scan.which_backend`), timm Swin-B for scale, and with ``--upstream``
the official VMamba-B (its own selective-scan kernel and backward, mamba-ssm where that is what it
finds). ``--compile`` adds torch.compile rows (the fused scan is one custom-op node forward and one
backward).

Kernel table, per VMamba-B stage at ``--batch`` (bf16 x, float32 y and gradients): the fused forward
kernel alone (the launch table's config), the fused backward kernel alone, the bytes each must move at
least (forward: x + dbl read, y written; backward: x, dbl, gy read, gx, gdbl written) and the time a
device copy of those bytes takes (``% copy``). ``--floor`` adds the floor columns of
``bench_scan_floor.py`` (no-recurrence floor kernel and the special-function floor) for the forward.
``--tiny``: a 2-stage VMamba of width 16 on 32x32 images on the CPU and the smoke shapes, to check
this script (triton needs TRITON_INTERPRET=1 there; the numbers mean nothing).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

import bench_scan  # noqa: E402

from robusteval.models.kernels import scan as ss  # noqa: E402

DEVICE = bench_scan.DEVICE


def _sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def train_rate(model: torch.nn.Module, *, batch: int, size: int, iters: int, warmup: int) -> dict:
    """img/s of SGD training steps (bf16 autocast on CUDA, float32 on the CPU)."""
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    x = torch.randn(batch, 3, size, size, device=DEVICE)
    labels = torch.randint(0, 1000, (batch,), device=DEVICE)

    def step() -> None:
        with torch.autocast(DEVICE, dtype=torch.bfloat16, enabled=DEVICE == "cuda"):
            out = model(x)
            loss = torch.nn.functional.cross_entropy(out.float(), labels % out.shape[-1])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    if DEVICE == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    step()
    _sync()
    first_s = time.perf_counter() - t0
    if iters == 0:  # --tiny: the one step proves the path runs
        return {"img_per_s": round(batch / first_s, 2), "first_step_s": round(first_s, 1)}
    for _ in range(warmup):
        step()
    _sync()
    t0 = time.perf_counter()
    for _ in range(iters):
        step()
    _sync()
    out = {
        "img_per_s": round(batch * iters / (time.perf_counter() - t0), 1),
        "first_step_s": round(first_s, 1),
    }
    if DEVICE == "cuda":
        out["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return out


def _ours(name: str, backend: str, tiny: bool) -> torch.nn.Module:
    from robusteval.models import create_model

    if tiny:
        from robusteval.models import vmamba as V

        return V.vmamba_b(scan_backend=backend, dims=16, depths=(1, 1), num_classes=10)
    return create_model(name, weights=None, scan_backend=backend).module.to(DEVICE)


def model_rows(args: argparse.Namespace) -> list[dict]:
    size, batch = (32, 1) if args.tiny else (224, args.batch)
    cases: list[tuple[str, str, object]] = []
    for be in args.backends.split(","):
        cases.append(("vmamba_b", be, lambda be=be: _ours("vmamba_b", be, args.tiny)))
    if not args.tiny:
        cases.append(("swin_b", "-", lambda: _ours("swin_b", "auto", False)))
    if args.upstream:
        from fidelity_vmamba import import_upstream

        up = import_upstream(args.upstream)
        cases.append(("official VMamba-B", "official", lambda: up.vmamba_base_s2l15().to(DEVICE)))
    rows = []
    for label, scan, build in cases:
        for compiled in (False, True) if args.compile else (False,):
            row = {"model": label + (" (compiled)" if compiled else ""), "scan": scan, "batch": batch}
            try:
                model = build()
                if scan not in ("-", "official"):
                    probe = torch.empty(
                        1, 1, 1, 1, device=DEVICE, dtype=torch.bfloat16 if DEVICE == "cuda" else torch.float32
                    )
                    row["ran"] = ss.which_backend(scan, tensor=probe, d_state=1, grad="first")
                run = model
                if compiled:
                    torch._dynamo.reset()
                    run = torch.compile(model, dynamic=False)
                row.update(
                    train_rate(run, batch=batch, size=size, iters=args.iters, warmup=0 if args.tiny else 2)
                )
            except Exception as err:  # a missing kernel package or a failed compile is a row, not a crash
                row["error"] = f"{type(err).__name__}: {err}"[:200]
                if DEVICE == "cuda":
                    torch.cuda.empty_cache()
            rows.append(row)
            print(json.dumps(row), flush=True)
            if DEVICE == "cuda":
                torch.cuda.empty_cache()
    return rows


def bwd_bytes(*, B: int, D: int, H: int, W: int, R: int, in_bytes: int) -> int:
    """Fewest HBM bytes of the fused backward: x, dbl (x's dtype) and gy (float32) read once; gx and
    gdbl (float32) written once; the parameter gradients are negligible."""
    L = H * W
    return B * L * (D * in_bytes + 4 * (R + 2) * in_bytes + D * 4 + D * 4 + 4 * (R + 2) * 4)


def kernel_rows(args: argparse.Namespace) -> tuple[float, list[dict]]:
    from robusteval.models.kernels import triton_scan as st

    shapes = bench_scan.SMOKE_SHAPES if args.tiny else [s for s in bench_scan.SHAPES if s[0].startswith("B.")]
    B = 1 if args.tiny else args.batch
    copy_bw = bench_scan.copy_bandwidth()
    rows = []
    for name, d, h, w, r in shapes:
        wt = bench_scan.weights(d, r)
        x = bench_scan.inputs(B=B, d=d, h=h, w=w, dtype=torch.bfloat16 if DEVICE == "cuda" else torch.float32)
        dbl = st.projections(x, wt["x_proj_weight"].to(x.dtype), layout="auto")
        gy = torch.randn(B, h, w, d, device=DEVICE).permute(0, 3, 1, 2)  # as the out-norm's backward gives it
        fw = {k: wt[k] for k in ("dt_projs_weight", "dt_projs_bias", "A_logs", "Ds")}
        config = st.launch_config(D=d, H=h, W=w, dtype=x.dtype)
        fwd_s = bench_scan.bench(partial(st.fused_kernel_only, x, dbl, **fw, config=config))
        bwd_s = bench_scan.bench(partial(st.fused_backward, gy, x, dbl, **fw))
        fb = bench_scan.hbm_bytes(B=B, D=d, H=h, W=w, R=r, in_bytes=x.element_size())
        bb = bwd_bytes(B=B, D=d, H=h, W=w, R=r, in_bytes=x.element_size())
        row = dict(shape=name, dtype=str(x.dtype).replace("torch.", ""), batch=B, fwd_config=config)
        row.update(
            fwd_ms=fwd_s * 1e3,
            fwd_copy_ms=fb / copy_bw * 1e3,
            bwd_ms=bwd_s * 1e3,
            bwd_copy_ms=bb / copy_bw * 1e3,
        )
        row["fwd_pct_copy"] = 100 * row["fwd_copy_ms"] / row["fwd_ms"]
        row["bwd_pct_copy"] = 100 * row["bwd_copy_ms"] / row["bwd_ms"]
        if args.floor:
            import bench_scan_floor as fl

            f = fl.measure(name=name, dtype=x.dtype, shape=(d, h, w, r), batch=B)
            row.update(
                floor_ms=f["floor_ms"],
                mufu_floor_ms=fl.MUFU_PER_ELEMENT * f["elements"] / args.mufu_rate * 1e3,
            )
        rows.append(row)
        print(json.dumps(row), flush=True)
        bench_scan._empty_cache()
    return copy_bw, rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("."))
    ap.add_argument("--upstream", type=Path)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--backends", default="triton,mamba,torch")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--floor", action="store_true", help="add bench_scan_floor.py's floor columns")
    ap.add_argument("--skip-models", action="store_true")
    ap.add_argument("--tiny", action="store_true", help="CPU check of this script (TRITON_INTERPRET=1)")
    args = ap.parse_args()
    if args.tiny:
        args.iters = 0
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    if args.floor:
        import bench_scan_floor as fl

        args.mufu_rate = fl.mufu_rate(n_iter=2 if args.tiny else 4096)
    rows = [] if args.skip_models else model_rows(args)
    copy_bw, krows = kernel_rows(args)
    dev = torch.cuda.get_device_name() if DEVICE == "cuda" else "cpu (tiny)"
    lines = [f"{dev}, torch {torch.__version__}; copy {copy_bw / 1e9:.0f} GB/s", "",
             "| model | scan (ran) | batch | train img/s | peak GiB |", "|---|---|--:|--:|--:|"]  # fmt: skip
    for r in rows:
        scan = f"{r['scan']} ({r['ran']})" if "ran" in r else r["scan"]
        val = r.get("img_per_s", f"error: {r.get('error', '')}")
        lines.append(f"| {r['model']} | {scan} | {r['batch']} | {val} | {r.get('peak_gib', '')} |")
    lines += ["", "| shape | dtype | fwd ms (% copy) | bwd ms (% copy) | floor kernel ms | MUFU floor ms | fwd config |",
              "|---|---|--:|--:|--:|--:|---|"]  # fmt: skip
    for r in krows:
        floor = f"{r['floor_ms']:.3f}" if "floor_ms" in r else ""
        mufu = f"{r['mufu_floor_ms']:.3f}" if "mufu_floor_ms" in r else ""
        lines.append(f"| {r['shape']} | {r['dtype']} | {r['fwd_ms']:.3f} ({r['fwd_pct_copy']:.1f}) "
                     f"| {r['bwd_ms']:.3f} ({r['bwd_pct_copy']:.1f}) | {floor} | {mufu} | `{r['fwd_config']}` |")  # fmt: skip
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_train_step.md").write_text(text)
    (args.out / "bench_train_step.json").write_text(json.dumps(dict(device=dev, copy_GBps=copy_bw / 1e9,
                                                                    models=rows, kernels=krows), indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
