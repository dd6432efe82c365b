"""Model throughput on the GPU: img/s per model, scan path, batch size and memory format.

Side by side in one run: our vmamba_t/s/b under each selective-scan backend, timm Swin-B and
ConvNeXt-B, the CLIP-Mamba VMamba-B image tower, and (with ``--upstream``) the official VMamba code
running mamba-ssm's kernel, plus a logits check of ours against the official model on the same
random weights. Random weights: throughput does not depend on them.

    python scripts/benchmarks/bench_models.py --out $OUT [--upstream .upstream/VMamba] [--batches 128,256]
        [--models vmamba_b,official_b] [--compile] [--launch-table best_configs.json]

``--compile`` adds, for every model, rows run through ``torch.compile(model, dynamic=False)`` as
``robusteval score --compile`` runs it (ResidentModel): autocast and inference_mode outside the
compiled module. A model that fails to compile gives an error row, not a crash; "compile_s" is the
first call (compilation included). ``--launch-table`` reads ``best_configs.json`` from
``scripts/benchmarks/bench_scan.py --sweep`` into the fused scan's per-shape table before anything runs.

``--upstream`` is a checkout of MzeroMiko/VMamba kept in the git-ignored .upstream/ (never committed).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))


def _time(fn, x: torch.Tensor, *, iters: int, warmup: int) -> float:
    """Images per second of ``fn(x)`` (CUDA events around ``iters`` calls after ``warmup``)."""
    for _ in range(warmup):
        fn(x)
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        fn(x)
    end.record()
    torch.cuda.synchronize()
    return x.shape[0] * iters / (start.elapsed_time(end) / 1e3)


def _measure(
    model: torch.nn.Module, *, batch: int, dtype: str, channels_last: bool, iters: int, compiled: bool = False
) -> dict:
    """img/s of ``model`` (already compiled when ``compiled``); compile_s = the first call's seconds."""
    x = torch.randn(batch, 3, 224, 224, device="cuda")
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.to(memory_format=torch.channels_last)
    amp = dtype == "bf16"

    @torch.inference_mode()
    def fwd(inp):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            return model(inp)

    torch.cuda.reset_peak_memory_stats()
    extra = {}
    try:
        if compiled:  # the first call compiles (one graph per batch size: dynamic=False)
            t0 = time.perf_counter()
            fwd(x)
            torch.cuda.synchronize()
            extra["compile_s"] = round(time.perf_counter() - t0, 1)
        ips = _time(fwd, x, iters=iters, warmup=3)
    except torch.OutOfMemoryError:
        torch.cuda.empty_cache()
        return {"img_per_s": None, "error": "OOM"}
    except Exception as err:  # a compile failure is a row, not a crash
        return {"img_per_s": None, "error": f"{type(err).__name__}: {err}"[:200]}
    return {
        "img_per_s": round(ips, 1),
        "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        **extra,
    }


def ours(name: str, backend: str) -> torch.nn.Module:
    from robusteval.models import create_model

    return create_model(name, weights=None, scan_backend=backend).module.cuda().eval()


def clip_tower(name: str, backend: str) -> torch.nn.Module:
    from robusteval.models import create_model

    full = create_model(name, weights=None, scan_backend=backend).module
    enc = full.image_encoder
    return (enc() if callable(enc) and not isinstance(enc, torch.nn.Module) else enc).cuda().eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("."))
    ap.add_argument("--upstream", type=Path)
    ap.add_argument("--batches", default="128,256")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--backends", default="triton,mamba")
    ap.add_argument("--quick", action="store_true", help="bf16 batch 128 only")
    ap.add_argument("--bf16-only", action="store_true", help="no fp32 rows")
    ap.add_argument("--compile", action="store_true", help="also run every model through torch.compile")
    ap.add_argument("--models", default="", help="comma-separated labels to run (prefix match); all if empty")
    ap.add_argument(
        "--launch-table", type=Path, help="best_configs.json of scripts/benchmarks/bench_scan.py --sweep"
    )
    args = ap.parse_args()
    if args.launch_table:
        from robusteval.models.kernels import triton_scan as scan_triton

        for entry in json.loads(args.launch_table.read_text()):
            dname = {"bf16": "bfloat16", "fp32": "float32"}[entry["dtype"]]
            scan_triton.LAUNCH_TABLE[(entry["D"], entry["H"], entry["W"], dname)] = entry["config"]
        print("launch table:", scan_triton.LAUNCH_TABLE, flush=True)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    batches = [int(b) for b in args.batches.split(",")]
    backends = args.backends.split(",")

    cases: list[tuple[str, str, callable, bool]] = []  # (label, scan, builder, channels_last)
    for name in ("vmamba_t", "vmamba_s", "vmamba_b"):
        for be in backends:
            cases.append((name, be, lambda n=name, b=be: ours(n, b), False))
    cases.append(
        (
            "clip_mamba_vmamba_b tower",
            backends[0],
            lambda: clip_tower("clip_mamba_vmamba_b", backends[0]),
            False,
        )
    )
    for name in ("swin_b", "convnext_b"):
        for cl in (False, True):
            cases.append((name, "-", lambda n=name: ours(n, "auto"), cl))
    if args.upstream:
        from fidelity_vmamba import import_upstream

        up = import_upstream(args.upstream)
        cases.append(
            ("official VMamba-B (mamba-ssm)", "official", lambda: up.vmamba_base_s2l15().cuda().eval(), False)
        )
        cases.append(
            ("official VMamba-T (mamba-ssm)", "official", lambda: up.vmamba_tiny_s1l8().cuda().eval(), False)
        )

    if args.models:
        keep = tuple(m.strip() for m in args.models.split(",") if m.strip())
        cases = [c for c in cases if c[0].startswith(keep)]

    rows = []
    for label, scan, build, cl in cases:
        try:
            model = build()
        except Exception as err:  # a missing kernel package is a row, not a crash
            rows.append({"model": label, "scan": scan, "error": f"{type(err).__name__}: {err}"[:160]})
            print(rows[-1], flush=True)
            continue
        for compiled in (False, True) if args.compile else (False,):
            run = model
            if compiled:
                torch._dynamo.reset()  # a fresh compile per model, as a new scoring process has
                run = torch.compile(model, dynamic=False)  # what ResidentModel(compile=True) does
            name = f"{label} (compiled)" if compiled else label
            for dtype in ("bf16",) if (args.quick or args.bf16_only) else ("bf16", "fp32"):
                for batch in batches[:1] if (args.quick or dtype == "fp32") else batches:
                    t0 = time.perf_counter()
                    r = _measure(
                        run, batch=batch, dtype=dtype, channels_last=cl, iters=args.iters, compiled=compiled
                    )
                    rows.append({"model": name, "scan": scan, "dtype": dtype, "batch": batch,
                                 "channels_last": cl, **r, "wall_s": round(time.perf_counter() - t0, 1)})  # fmt: skip
                    print(json.dumps(rows[-1]), flush=True)
                    if r.get("error") and compiled:
                        break  # one failure row per compiled model is enough
        del model
        torch.cuda.empty_cache()

    if args.upstream:
        rows.extend(_parity(up, backends))

    lines = [f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}", "",
             "| model | scan | dtype | batch | channels_last | img/s | peak GiB |", "|---|---|---|--:|---|--:|--:|"]  # fmt: skip
    for r in rows:
        if r.get("img_per_s") is None and "dtype" in r:
            lines.append(f"| {r['model']} | {r['scan']} | {r['dtype']} | {r['batch']} | {r['channels_last']} | "
                         f"error: {r.get('error', '')} | |")  # fmt: skip
        elif "img_per_s" in r:
            lines.append(f"| {r['model']} | {r['scan']} | {r['dtype']} | {r['batch']} | {r['channels_last']} | "
                         f"{r['img_per_s']} | {r.get('peak_gib', '')} |")  # fmt: skip
        elif "max_abs_diff" in r:
            lines.append(f"| parity {r['model']} vs official | {r['scan']} | fp32 | {r['batch']} | | "
                         f"max abs Δlogits {r['max_abs_diff']:.2e} | top-1 agree {r['top1_agree']:.3f} |")  # fmt: skip
        else:
            lines.append(f"| {r['model']} | {r['scan']} | error | | | {r['error']} | |")
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_models.md").write_text(text)
    (args.out / "bench_models.json").write_text(json.dumps(rows, indent=1))


@torch.inference_mode()
def _parity(up, backends: list[str]) -> list[dict]:
    """Ours vs official VMamba-B on the same random weights (fp32, TF32 off), per scan backend."""
    import tempfile

    from fidelity_vmamba import official_checkpoint, perturb_

    from robusteval.models import create_model

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    ref_model = up.vmamba_base_s2l15().eval()
    with torch.no_grad():
        perturb_(ref_model, seed=0)
    x = torch.randn(8, 3, 224, 224, generator=torch.Generator().manual_seed(1)).cuda()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "b.pth"
        torch.save(official_checkpoint(ref_model, four_d=True), path)
        ref = ref_model.cuda()(x).float()
        out = []
        for be in backends:
            got = create_model("vmamba_b", weights=str(path), scan_backend=be).module.cuda().eval()(x).float()
            d = (ref - got).abs()
            out.append({"model": "vmamba_b", "scan": be, "batch": 8, "max_abs_diff": float(d.max()),
                        "max_abs_logit": float(ref.abs().max()),
                        "top1_agree": float((ref.argmax(1) == got.argmax(1)).float().mean())})  # fmt: skip
            print(json.dumps(out[-1]), flush=True)
    return out


if __name__ == "__main__":
    main()
