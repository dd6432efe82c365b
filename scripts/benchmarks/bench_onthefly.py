"""GPU on-the-fly corruption: torch ops vs imgaug, speed and accuracy drop (study21, one severity).

For each study21 set (piecewise_affine included) at ``--severity`` (default 3; single-level sets
use their one level):

- torch img/s: the batched op on ``--device`` over one batch of ``--batch`` 224 crops (use
  512-1024 on a GPU: per-call launch overhead is then negligible), after ``--warmup`` calls,
  ``--iters`` calls timed with CUDA events (wall clock on the CPU);
- imgaug img/s: the reference op on ``--imgaug-images`` crops, one process, one thread;
- ratio and whether it meets ``--target`` (50x);
- unless ``--no-accuracy``: MobileNetV2 top-1 on ``--limit`` images of ``--data`` (any layout
  ``read_dataset`` reads) corrupted by imgaug (``--workers`` processes) and by the torch op, and
  the difference in points (target: within 1).

    python scripts/benchmarks/bench_onthefly.py --data DIR --device cuda --batch 1024 --limit 1300
    python scripts/benchmarks/bench_onthefly.py --data DIR --device cpu --batch 64 --no-accuracy  # quick look
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch


def _crops(data: Path, limit: int):
    from robusteval.datasets.decode import load_rgb, resize_center_crop
    from robusteval.datasets.layouts import read_dataset

    ds = read_dataset(data)
    samples = ds.samples[:limit]
    crops = np.stack([resize_center_crop(load_rgb(s.path), resize=256, crop=224) for s in samples])
    return crops, np.array([s.label for s in samples]), [s.id for s in samples]


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


def time_op(fn, images: torch.Tensor, seeds: torch.Tensor, params: dict, *, warmup: int, iters: int) -> float:
    """Images per second of ``fn`` on one batch: CUDA events around ``iters`` calls after
    ``warmup`` calls (the first builds per-device constants), wall clock on the CPU."""
    for _ in range(warmup):
        fn(images, seeds=seeds, **params)
    n = images.shape[0] * iters
    if images.device.type == "cuda":
        torch.cuda.synchronize(images.device)
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            fn(images, seeds=seeds, **params)
        end.record()
        end.synchronize()
        return n / (start.elapsed_time(end) / 1000.0)
    t0 = time.perf_counter()
    for _ in range(iters):
        fn(images, seeds=seeds, **params)
    return n / (time.perf_counter() - t0)


def _imgaug_one(args) -> np.ndarray:
    set_name, severity, image, seed = args
    from robusteval.corrupt.spec import get_spec

    return get_spec(set_name).apply(image, severity=severity, seed=seed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=1024, help="images per timed call of the torch op")
    ap.add_argument("--eval-batch", type=int, default=256, help="batch for the model and the accuracy pass")
    ap.add_argument("--limit", type=int, default=1300)
    ap.add_argument("--severity", type=int, default=3)
    ap.add_argument("--imgaug-images", type=int, default=32, help="images timed per op on one core")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--target", type=float, default=50.0, help="speed-up over one imgaug core to meet")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="processes for imgaug references"
    )
    ap.add_argument("--no-accuracy", action="store_true", help="speed only (no model, no references)")
    ap.add_argument("--ops", nargs="*", help="set names (default: every study21 set)")
    args = ap.parse_args()

    from robusteval.corrupt.batched import BATCH_OPS, load_batch_ops
    from robusteval.corrupt.spec import load_specs
    from robusteval.seeding import image_seeds

    if args.device == "cpu":
        torch.set_num_threads(max(1, torch.get_num_threads()))
    load_batch_ops()
    specs = load_specs()
    specs = list(specs.values()) if isinstance(specs, dict) else list(specs)
    specs = [s for s in specs if s.suite == "study21" and (not args.ops or s.name in args.ops)]
    crops, labels, ids = _crops(args.data, args.limit)
    dev = args.device
    clean = torch.from_numpy(crops).permute(0, 3, 1, 2).contiguous().to(dev)
    bench = clean[torch.arange(args.batch, device=dev) % len(clean)].contiguous()
    model = None
    header = f"device {dev}  batch {args.batch}  n={len(clean)}  cores={os.cpu_count()}"
    if not args.no_accuracy:
        from robusteval.models import create_model

        model = create_model("mobilenet_v2", device=dev)
        header += f"  MobileNetV2 clean top-1 {_top1(model, clean, labels, args.eval_batch):.2f}%"
    if dev.startswith("cuda"):
        header += f"  {torch.cuda.get_device_name(torch.device(dev))}"
    print(header, flush=True)
    print(
        f"{'set':24s} {'sev':>3s} {'torch img/s':>12s} {'imgaug img/s':>12s} {'ratio':>8s} {'ok':>3s}"
        f" {'top1 iaa':>9s} {'top1 torch':>10s} {'diff':>6s}",
        flush=True,
    )
    pool = ProcessPoolExecutor(args.workers) if not args.no_accuracy and args.workers > 1 else None
    try:
        for spec in specs:
            sev = min(args.severity, len(spec.levels))
            params = spec.params(sev)
            seeds = image_seeds(seed=args.seed, set_name=spec.name, severity=sev, ids=ids)
            k = min(args.imgaug_images, len(crops))
            spec.apply(crops[0], severity=sev, seed=int(seeds[0]))  # imports and caches outside the timing
            t_iaa = time.perf_counter()
            for i in range(k):
                spec.apply(crops[i], severity=sev, seed=int(seeds[i]))
            iaa_rate = k / (time.perf_counter() - t_iaa)
            if spec.op not in BATCH_OPS:
                print(f"{spec.name:24s} {sev:3d} {'(no torch op: imgaug fallback)':>34s}", flush=True)
                continue
            fn = BATCH_OPS.get(spec.op).fn
            bseeds = torch.as_tensor(seeds[np.arange(args.batch) % len(seeds)], device=dev)
            torch_rate = time_op(fn, bench, bseeds, params, warmup=args.warmup, iters=args.iters)
            ratio = torch_rate / iaa_rate
            line = (
                f"{spec.name:24s} {sev:3d} {torch_rate:12.0f} {iaa_rate:12.1f} {ratio:8.1f}"
                f" {'yes' if ratio >= args.target else 'NO':>3s}"
            )
            if model is not None:
                jobs = [(spec.name, sev, im, int(s)) for im, s in zip(crops, seeds, strict=True)]
                ref = np.stack(
                    list(pool.map(_imgaug_one, jobs, chunksize=16) if pool else map(_imgaug_one, jobs))
                )
                ref_t = torch.from_numpy(ref).permute(0, 3, 1, 2).contiguous().to(dev)
                ours = torch.cat(
                    [
                        fn(
                            clean[i : i + args.eval_batch],
                            seeds=torch.as_tensor(seeds[i : i + args.eval_batch], device=dev),
                            **params,
                        )
                        for i in range(0, len(clean), args.eval_batch)
                    ]
                )
                a = _top1(model, ref_t, labels, args.eval_batch)
                b = _top1(model, ours, labels, args.eval_batch)
                line += f" {a:9.2f} {b:10.2f} {b - a:+6.2f}"
            print(line, flush=True)
    finally:
        if pool is not None:
            pool.shutdown()


if __name__ == "__main__":
    main()
