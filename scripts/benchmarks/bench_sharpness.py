"""Cost of the sharpness stage on random-weight models: HVP vs gradient, and top-k + trace wall time.

For each model (random init, eval mode, the stage's exact torch scan for VMamba) on N random
normalised images at the model's input size:

- ``grad_s``: one gradient of the mean cross-entropy over the N images (batches of --batch);
- ``hvp_s``: one exact Hessian-vector product over the same images (the stage's operator);
  ``hvp_over_grad`` = hvp_s / grad_s;
- ``topk_trace_s``: top-k eigenvalues (eigsh, --eig-tol) + Hutchinson trace (--probes), with the
  number of Hessian-vector products each used.

    python scripts/benchmarks/bench_sharpness.py --tiny --models vmamba_t --out /tmp/bench_sharpness.json
    python scripts/benchmarks/bench_sharpness.py --device cuda --out bench_sharpness_gpu.json   # 1,000 images
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench_model(name: str, args: argparse.Namespace) -> dict:
    import torch

    from robusteval.models import create_model
    from robusteval.sharpness import hessian as H

    EXACT = "torch"  # the scan path with an exact double backward

    loaded = create_model(name, weights="none", scan_backend=EXACT, device=args.device)
    model = loaded.module
    size = (
        (loaded.card.min_input_size or loaded.card.data.input_size)
        if args.tiny
        else loaded.card.data.input_size
    )
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.images, 3, size, size, generator=g).to(args.device)
    y = torch.randint(0, loaded.card.num_classes, (args.images,), generator=g).to(args.device)
    data = list(zip(x.split(args.batch), y.split(args.batch), strict=True))
    params = [p for p in model.parameters() if p.requires_grad]
    n_params = sum(p.numel() for p in params)

    def grad_once() -> None:
        for xb, yb in data:
            loss = torch.nn.functional.cross_entropy(model(xb), yb) * (xb.shape[0] / args.images)
            torch.autograd.grad(loss, params, allow_unused=True)

    op = H.hessian_operator(model, params, data)
    v = torch.randn(n_params, generator=g).to(args.device)
    grad_once()  # warm-up (allocator, cudnn autotune)
    op @ v
    _sync(args.device)
    t = time.perf_counter()
    for _ in range(args.repeats):
        grad_once()
    _sync(args.device)
    grad_s = (time.perf_counter() - t) / args.repeats
    t = time.perf_counter()
    for _ in range(args.repeats):
        op @ v
    _sync(args.device)
    hvp_s = (time.perf_counter() - t) / args.repeats
    peak = torch.cuda.max_memory_allocated() / 2**30 if args.device.startswith("cuda") else None
    t = time.perf_counter()
    eig = H.top_eigenvalues(op, k=args.top_k, tol=args.eig_tol, ncv=args.eig_ncv, maxiter=args.eig_maxiter)
    tr = H.hutchinson(op, probes=args.probes)
    _sync(args.device)
    total = time.perf_counter() - t
    return {
        "model": name, "device": args.device, "images": args.images, "input": size, "batch": args.batch,
        "params": n_params, "grad_s": grad_s, "hvp_s": hvp_s, "hvp_over_grad": hvp_s / grad_s,
        "top_k": args.top_k, "eig_matvecs": eig.matvecs, "lam_max": eig.values[0] if eig.values else None,
        "converged": eig.converged, "probes": tr.probes, "trace": tr.value, "trace_se": tr.stderr,
        "topk_trace_s": total, "peak_gib": peak,
    }  # fmt: skip


def main() -> None:
    warnings.filterwarnings("ignore", category=FutureWarning)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["vmamba_t", "swin_b", "convnext_b"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--images", type=int, default=None, help="default 1000 (--tiny: 1)")
    p.add_argument("--batch", type=int, default=None, help="default 64 (--tiny: 1)")
    p.add_argument("--top-k", type=int, default=None, help="default 5 (--tiny: 1)")
    p.add_argument("--probes", type=int, default=None, help="Hutchinson probes, default 30 (--tiny: 2)")
    p.add_argument("--eig-tol", type=float, default=1e-3)
    p.add_argument("--eig-ncv", type=int, default=None)
    p.add_argument("--eig-maxiter", type=int, default=None)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--tiny", action="store_true", help="CPU proof: 1 image at the smallest input, top-1")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    tiny = args.tiny
    args.images = args.images or (1 if tiny else 1000)
    args.batch = args.batch or (1 if tiny else 64)
    args.top_k = args.top_k or (1 if tiny else 5)
    args.probes = args.probes or (2 if tiny else 30)
    if tiny:
        args.repeats, args.eig_ncv, args.eig_maxiter, args.eig_tol = (
            1,
            args.eig_ncv or 4,
            args.eig_maxiter or 1,
            0.1,
        )
    rows = [bench_model(m, args) for m in args.models]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))
    print(
        "| model | device | images | input | params | grad s | HVP s | HVP / grad | top-k + trace s | matvecs | λ_max | trace ± se |"
    )
    print("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for r in rows:
        lam = "not converged" if r["lam_max"] is None else f"{r['lam_max']:.4g}"
        print(
            f"| {r['model']} | {r['device']} | {r['images']} | {r['input']} | {r['params'] / 1e6:.1f}M | "
            f"{r['grad_s']:.3g} | {r['hvp_s']:.3g} | {r['hvp_over_grad']:.2f} | {r['topk_trace_s']:.3g} | "
            f"{r['eig_matvecs']}+{r['probes']} | {lam} | {r['trace']:.4g} ± {r['trace_se']:.2g} |"
        )


if __name__ == "__main__":
    main()
