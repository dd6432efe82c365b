"""Transfer-stage speed: the batched LP grid against one feature pass, and ILM-VP training img/s.

1. LP: for each model, one feature pass (bf16 on CUDA, the transfer stage's loader and
   ``Resize((224, 224))``) over a CIFAR-10-sized set of random 32x32 images (50,000 train +
   10,000 test), then the full LP grid of one dataset (5 shots x 3 seeds = 15 heads, 100 epochs,
   the study's batch sizes) trained as one batched problem on those features. Target: grid / pass
   <= 1.2.
2. ILM-VP: training steps (prompt frame forward, frozen model forward + backward to the prompt,
   Adam) at batch 256 on 32 px images padded to 224, images per second; VMamba with the torch
   reference scan (and any other ``--scan-backends`` that can run backward).

Random weights are fine (speed only). Tiny CPU check:

    python scripts/benchmarks/bench_transfer.py --tiny --out /tmp/bench_transfer.json

GPU (the real measurement):

    python scripts/benchmarks/bench_transfer.py --device cuda --out bench_transfer.json \
        --models vmamba_t timm:deit_small_patch16_224 convnext_b
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn


class RandomImages(torch.utils.data.Dataset):
    """``n`` random RGB PIL images of ``side`` px with labels 0..classes-1 (like CIFAR-10)."""

    def __init__(self, n: int, *, side: int = 32, classes: int = 10, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.x = rng.integers(0, 255, (n, side, side, 3), dtype=np.uint8)
        self.y = rng.integers(0, classes, n)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        from PIL import Image

        return Image.fromarray(self.x[i]), int(self.y[i])


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench_lp(
    model: str, *, device: str, n_train: int, n_test: int, epochs: int, batch: int, workers: int
) -> dict:
    from robusteval.models.factory import create_model
    from robusteval.transfer.datasets import sample_shots
    from robusteval.transfer.lp import extract, train_heads
    from robusteval.transfer.pixels import replace_head
    from robusteval.transfer.protocol import CARDS

    lm = create_model(model, weights="none", device=device)
    replace_head(lm.module, num_classes=lm.card.num_classes, new=nn.Identity())
    data = lm.card.data
    train, test = RandomImages(n_train, seed=0), RandomImages(n_test, seed=1)
    common = dict(side=int(data.input_size), mean=data.mean, std=data.std, device=device, amp=True,
                  batch_size=batch, workers=workers)  # fmt: skip
    extract(lm.module, RandomImages(min(batch * 2, n_test), seed=2), **common)  # warm-up (cudnn, workers)
    _sync(device)
    t0 = time.perf_counter()
    tr, trl = extract(lm.module, train, **common)
    te, tel = extract(lm.module, test, **common)
    _sync(device)
    feature_s = time.perf_counter() - t0
    card = CARDS["lp"]
    shots = [1, 10, 50, 100, None]
    cells = [(k, s) for k in shots for s in (1, 2, 3)]
    dev = torch.device(device)
    grid = train_heads(
        train_x=torch.from_numpy(tr).to(dev), train_y=torch.from_numpy(trl).to(dev),
        test_x=torch.from_numpy(te).to(dev), test_y=torch.from_numpy(tel).to(dev),
        subsets=[sample_shots(trl, shots=k, seed=s) for k, s in cells],
        batch_sizes=[card.batch_size(k) for k, _ in cells], seeds=[s for _, s in cells],
        n_classes=10, card=card, epochs=epochs,
    )  # fmt: skip
    return {
        "model": model, "feature_dim": int(tr.shape[1]), "images": n_train + n_test,
        "feature_pass_s": feature_s, "feature_img_per_s": (n_train + n_test) / feature_s,
        "heads": len(cells), "epochs": epochs, "grid_s": grid.seconds, "grid_over_pass": grid.seconds / feature_s,
    }  # fmt: skip


def bench_vp(model: str, *, device: str, backend: str, batch: int, steps: int) -> dict:
    from robusteval.models.factory import create_model
    from robusteval.transfer.vp import prompt_throughput

    row = {"model": model, "scan_backend": backend, "batch": batch}
    try:
        lm = create_model(model, weights="none", device=device, scan_backend=backend)
        row["img_per_s"] = prompt_throughput(lm, batch=batch, inner=32, device=device, amp=True, steps=steps)
        if device.startswith("cuda"):
            row["peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
    except Exception as err:  # a backend without backward: say so in the table
        row["error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:120]}"
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--models", nargs="+", default=None)
    ap.add_argument("--scan-backends", nargs="+", default=["torch"], help="VMamba backends for ILM-VP")
    ap.add_argument("--tiny", action="store_true", help="a seconds-long CPU check of the code paths")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--images", type=int, default=50_000, help="training images (test: a fifth of it)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    if args.tiny:
        models = args.models or ["mobilenet_v2"]
        sizes = dict(n_train=64, n_test=32, epochs=3, batch=32, workers=args.workers or 0)
        vp_batch, vp_steps = 4, 2
    else:
        models = args.models or ["vmamba_t", "timm:deit_small_patch16_224", "convnext_b"]
        sizes = dict(n_train=args.images, n_test=args.images // 5, epochs=100, batch=256,
                     workers=args.workers or 12)  # fmt: skip
        vp_batch, vp_steps = 256, 10
    lp_rows = [bench_lp(m, device=args.device, **sizes) for m in models]
    vp_rows = []
    for m in models:
        from robusteval.transfer.stage import _scan_backend_of

        backends = args.scan_backends if _scan_backend_of(m, "torch") else ["-"]
        for b in backends:
            vp_rows.append(
                bench_vp(
                    m, device=args.device, backend=b if b != "-" else "auto", batch=vp_batch, steps=vp_steps
                )
            )
            if b == "-":
                vp_rows[-1]["scan_backend"] = None
    dev_name = (
        torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu"
    )
    out = {
        "device": dev_name,
        "torch": torch.__version__,
        "tiny": args.tiny,
        "lp": lp_rows,
        "ilm_vp": vp_rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"device: {dev_name}\n")
    print(
        "| model | D | feature pass (s) | img/s | LP grid 15 heads x {} ep (s) | grid / pass |".format(
            sizes["epochs"]
        )
    )
    print("|---|--:|--:|--:|--:|--:|")
    for r in lp_rows:
        print(f"| {r['model']} | {r['feature_dim']} | {r['feature_pass_s']:.2f} | {r['feature_img_per_s']:.0f} | "
              f"{r['grid_s']:.2f} | {r['grid_over_pass']:.2f} |")  # fmt: skip
    print("\n| model | scan backend | batch | ILM-VP train img/s (fwd+bwd) |")
    print("|---|---|--:|--:|")
    for r in vp_rows:
        val = f"{r['img_per_s']:.1f}" if "img_per_s" in r else r["error"]
        print(f"| {r['model']} | {r['scan_backend'] or '-'} | {r['batch']} | {val} |")


if __name__ == "__main__":
    main()
