"""GPU on-the-fly corruption: torch ops vs imgaug, speed and accuracy drop (study21, one severity).

For each registered study21 op: images/s of the batched torch op on ``--device`` (batch of 224
crops, after warmup) against the imgaug op on one CPU core, and the ratio; then MobileNetV2 top-1
on ``--limit`` images of ``--data`` (any layout ``read_dataset`` reads) with imgaug-corrupted and
torch-corrupted inputs at ``--severity``, and the difference in points (target: within 1).

    python scripts/bench_onthefly.py --data DIR --device cuda --batch 256 --limit 1300
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch


def _crops(data: Path, limit: int):
    from robusteval.data.decode import load_rgb, resize_center_crop
    from robusteval.data.layouts import read_dataset

    ds = read_dataset(data)
    samples = ds.samples[:limit]
    crops = np.stack([resize_center_crop(load_rgb(s.path), resize=256, crop=224) for s in samples])
    return crops, np.array([s.label for s in samples]), [s.id for s in samples]


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _top1(model, images: torch.Tensor, labels: np.ndarray, batch: int) -> float:
    from robusteval.score.preprocess import apply_view, make_view, normalize

    card = model.card
    view = make_view(card.data, mode="resize")
    hits = 0
    with torch.inference_mode():
        for i in range(0, len(images), batch):
            x = apply_view(images[i : i + batch], view)
            logits = model.module(normalize(x, mean=card.data.mean, std=card.data.std))
            hits += int((logits.argmax(1).cpu().numpy() == labels[i : i + batch]).sum())
    return 100.0 * hits / len(images)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--limit", type=int, default=1300)
    ap.add_argument("--severity", type=int, default=3)
    ap.add_argument("--imgaug-images", type=int, default=32, help="images timed per op on one core")
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ops", nargs="*", help="spec names (default: every study21 set)")
    args = ap.parse_args()

    from robusteval.corruptions.spec import load_specs
    from robusteval.models import create_model
    from robusteval.score.onthefly import BATCH_OPS, image_seeds, load_batch_ops

    torch.set_num_threads(1) if args.device == "cpu" else None
    load_batch_ops()
    specs = load_specs()
    specs = list(specs.values()) if isinstance(specs, dict) else list(specs)
    specs = [s for s in specs if s.suite == "study21" and (not args.ops or s.name in args.ops)]
    crops, labels, ids = _crops(args.data, args.limit)
    dev = args.device
    clean = torch.from_numpy(crops).permute(0, 3, 1, 2).contiguous().to(dev)
    bench = clean[torch.arange(args.batch) % len(clean)].contiguous()
    model = create_model("mobilenet_v2", device=dev)
    clean_top1 = _top1(model, clean, labels, args.batch)
    print(f"device {dev}  n={len(clean)}  MobileNetV2 clean top-1 {clean_top1:.2f}%  cores={os.cpu_count()}")
    print(
        f"{'set':26s} {'torch img/s':>12s} {'imgaug img/s':>12s} {'ratio':>8s} {'top1 iaa':>9s} {'top1 torch':>10s} {'diff':>6s}"
    )
    for spec in specs:
        sev = min(args.severity, len(spec.levels))
        params = spec.params(sev)
        seeds = image_seeds(seed=args.seed, set_name=spec.name, severity=sev, ids=ids)
        t_iaa = time.perf_counter()
        k = min(args.imgaug_images, len(crops))
        for i in range(k):
            spec.apply(crops[i], severity=sev, seed=int(seeds[i]))
        iaa_rate = k / (time.perf_counter() - t_iaa)
        if spec.op not in BATCH_OPS:
            print(f"{spec.name:26s} {'(imgaug fallback: no torch op)':>34s}")
            continue
        fn = BATCH_OPS.get(spec.op).fn
        bseeds = torch.as_tensor(seeds[np.arange(args.batch) % len(seeds)], device=dev)
        fn(bench, seeds=bseeds, **params)  # warmup
        _sync(dev)
        t0 = time.perf_counter()
        for _ in range(args.iters):
            fn(bench, seeds=bseeds, **params)
        _sync(dev)
        torch_rate = args.batch * args.iters / (time.perf_counter() - t0)
        ref = np.stack(
            [spec.apply(im, severity=sev, seed=int(s)) for im, s in zip(crops, seeds, strict=True)]
        )
        ref_t = torch.from_numpy(ref).permute(0, 3, 1, 2).contiguous().to(dev)
        ours = torch.cat(
            [
                fn(
                    clean[i : i + args.batch],
                    seeds=torch.as_tensor(seeds[i : i + args.batch], device=dev),
                    **params,
                )
                for i in range(0, len(clean), args.batch)
            ]
        )
        a, b = _top1(model, ref_t, labels, args.batch), _top1(model, ours, labels, args.batch)
        print(
            f"{spec.name:26s} {torch_rate:12.0f} {iaa_rate:12.1f} {torch_rate / iaa_rate:8.1f}"
            f" {a:9.2f} {b:10.2f} {b - a:+6.2f}"
        )


if __name__ == "__main__":
    main()
