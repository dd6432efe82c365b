"""Throughput of the study backbones (VMamba v0, Vim, MambaVision, timm ViT baselines): img/s per scan path.

    python scripts/benchmarks/bench_backbones.py --out reports/bench/backbones.json \
        [--upstream .upstream] [--batches 128,256] [--models vim_s,...] [--tiny]

For every name: ours under each scan backend that runs here (``torch`` reference, ``mamba`` =
mamba-ssm's ``selective_scan_fn`` on CUDA, ``triton`` where it supports the inputs), bf16 autocast,
channels-first input, ``torch.inference_mode``; timm baselines once. With ``--upstream`` (a folder
holding the official checkouts VMamba/, MambaVision/, Vim/ — git-ignored, never committed) the
official code runs beside ours with its own CUDA kernels where it builds: VMamba v0 (its
``selective_scan_cuda`` path via mamba-ssm's extension), MambaVision (mamba-ssm's
``selective_scan_fn``); official Vim needs its forked mamba-1p1p1 compiled and is reported as not built.

``--tiny`` (CPU check): tiny variants at 64 px, batch 2, 1 iteration. Writes JSON to ``--out`` and
prints a markdown table. Random weights: throughput does not depend on them.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts" / "tools")]

NAMES = (
    "vmamba_v0_t,vmamba_v0_s,vmamba_v0_b,vim_t,vim_s,vim_b,mambavision_t,mambavision_s,mambavision_b,"
    "mambavision_l,deit_s,deit_b,deit3_s,deit3_b,vit_b"
)
TINY = {
    "vmamba_v0": dict(dims=8, depths=(1, 1, 1, 1)),
    "vim": dict(embed_dim=32, depth=2, img_size=64),
    "mambavision": dict(dim=16, in_dim=8, depths=(1, 1, 2, 2), num_heads=(1, 1, 2, 2)),
}
OFFICIAL = {  # our name → (checkout folder, builder)
    "vmamba_v0_t": ("VMamba", "vanilla_vmamba_tiny"),
    "vmamba_v0_s": ("VMamba", "vanilla_vmamba_small"),
    "vmamba_v0_b": ("VMamba", "vanilla_vmamba_base"),
    "mambavision_t": ("MambaVision", "mamba_vision_T"),
    "mambavision_s": ("MambaVision", "mamba_vision_S"),
    "mambavision_b": ("MambaVision", "mamba_vision_B"),
    "mambavision_l": ("MambaVision", "mamba_vision_L"),
    "vim_t": ("Vim", None),
    "vim_s": ("Vim", None),
    "vim_b": ("Vim", None),
}


def timed(model: torch.nn.Module, *, batch: int, size: int, device: str, iters: int) -> dict[str, Any]:
    x = torch.randn(batch, 3, size, size, device=device)
    use_amp = device == "cuda"
    try:
        with torch.inference_mode(), torch.autocast(device, dtype=torch.bfloat16, enabled=use_amp):
            model(x)  # warm-up (kernel selection, autotune)
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(iters):
                model(x)
            if device == "cuda":
                torch.cuda.synchronize()
            dt = (time.perf_counter() - t0) / iters
    except Exception as err:  # an OOM or a backend refusing the shape is a row, not a crash
        return {"error": f"{type(err).__name__}: {str(err).splitlines()[0][:160]}"}
    finally:
        if device == "cuda":
            torch.cuda.empty_cache()
    return {"img_per_s": round(batch / dt, 1), "ms_per_batch": round(1e3 * dt, 2)}


def official(name: str, upstream: Path) -> torch.nn.Module | str:
    """The official model with its own kernels, or why it cannot be built here."""
    folder, builder = OFFICIAL[name]
    if builder is None:
        return "official Vim needs its forked mamba-1p1p1 + causal-conv1d 1.1.0 compiled"
    root = upstream / folder
    if not root.is_dir():
        return f"{root} absent"
    try:
        if folder == "VMamba":
            import fidelity_vmamba

            return getattr(fidelity_vmamba.import_upstream(root), builder)()
        sys.path.insert(0, str(root))
        return getattr(importlib.import_module("mambavision.models.mamba_vision"), builder)()
    except Exception as err:
        return f"{type(err).__name__}: {str(err).splitlines()[0][:160]}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--models", default=NAMES)
    ap.add_argument("--batches", default="128,256")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument(
        "--backends",
        default="mamba,torch",
        help="scan backends to try for our models (triton implements only the d_state-1 cross scan)",
    )
    ap.add_argument(
        "--upstream", type=Path, help="folder with the official checkouts (VMamba/, MambaVision/, Vim/)"
    )
    ap.add_argument(
        "--tiny", action="store_true", help="CPU check: tiny variants, 64 px, batch 2, 1 iteration"
    )
    args = ap.parse_args()

    from robusteval.models import resolve
    from robusteval.models.kernels.scan import available_backends

    device = "cuda" if torch.cuda.is_available() and not args.tiny else "cpu"
    batches = [2] if args.tiny else [int(b) for b in args.batches.split(",")]
    iters = 1 if args.tiny else args.iters
    usable = [b for b in args.backends.split(",") if available_backends().get(b, "unknown") is None]
    torch.backends.cuda.matmul.allow_tf32 = True
    rows: list[dict[str, Any]] = []
    for name in args.models.split(","):
        entry = resolve(name)
        card = entry.meta["card"]
        size = 64 if args.tiny and card.family in TINY else card.data.input_size
        overrides = TINY.get(card.family, {}) if args.tiny else {}
        variants: list[tuple[str, Any]] = []
        if card.family in TINY:
            variants += [(f"ours/{b}", b) for b in usable]
        else:
            variants.append(("timm", None))
        if args.upstream and name in OFFICIAL and not args.tiny:
            variants.append(("official", "official"))
        for label, backend in variants:
            if backend == "official":
                model = official(name, args.upstream)
            elif backend is None:
                model = entry.fn()
            else:
                model = entry.fn(scan_backend=backend, **overrides)
            for batch in batches:
                row = {"model": name, "impl": label, "batch": batch, "size": size, "device": device}
                if isinstance(model, str):
                    row["error"] = model
                else:
                    model = model.eval().to(device)
                    row.update(timed(model, batch=batch, size=size, device=device, iters=iters))
                rows.append(row)
                print(json.dumps(row), flush=True)
            del model
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "torch": torch.__version__}
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    print("\n| model | impl | batch | img/s (bf16) | ms/batch |\n|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['impl']} | {r['batch']} | {r.get('img_per_s', r.get('error', ''))} | {r.get('ms_per_batch', '')} |"
        )


if __name__ == "__main__":
    main()
