"""Benchmark the distributed path: torchrun overhead at world size 1, and the per-image gather cost.

Parts:

- ``overhead``: the same ``robusteval score`` command run plain and under
  ``python -m torch.distributed.run --nproc-per-node 1`` (NCCL on CUDA, gloo on the CPU), ``--reps``
  times each, alternating. img/s is taken from the records (images of each pass over the pass's
  wall time: decode + models + the gather to rank 0 — process start and model loading excluded),
  best of the reps. Also checks the two runs' records (minus timing/command/run) and preds are
  identical. Target: overhead <= 3% on the GPU.
- ``gather``: under torchrun with each world size of ``--gather-worlds``, the exact per-cell
  payload the score engine gathers (positions int64, top-5 int16, top-5 probabilities float16 per
  image, pickled by ``gather_object``) for ``--gather-images`` images per rank, timed over
  ``--gather-reps`` gathers: bytes per image and seconds per gathered image.

Usage (from the repo root):
    GPU:  python scripts/benchmarks/bench_distributed.py --device cuda --out bench_distributed.json
    CPU:  python scripts/benchmarks/bench_distributed.py --tiny --out /tmp/bench_distributed.json
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
IGNORED = ("seconds", "img_per_s", "created", "command", "run")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(k: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc-per-node={k}",
        f"--master-port={free_port()}",
    ]


def env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT))


def subset(src: Path, dst: Path, n: int) -> Path:
    import csv
    import shutil

    with (src / "labels.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))[:n]
    (dst / "images").mkdir(parents=True, exist_ok=True)
    with (dst / "labels.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "class_index", "wnid"])
        for r in rows:
            shutil.copy(src / r["path"], dst / r["path"])
            w.writerow([r["path"], r["class_index"], r["wnid"]])
    return dst


def cells(run_dir: Path) -> dict:
    out = {}
    for line in (run_dir / "records.jsonl").read_text().splitlines():
        rec = json.loads(line)
        out[rec["cell"]] = (
            {k: v for k, v in rec.items() if k not in IGNORED},
            (run_dir / rec["preds"]).read_bytes(),
        )
    return out


def throughput(run_dir: Path) -> float:
    """Images over seconds summed over the passes (one record per pass with one model)."""
    recs = [json.loads(x) for x in (run_dir / "records.jsonl").read_text().splitlines()]
    passes = {(r["set"], r["severity"]): (r["n"], r["seconds"]) for r in recs}
    return sum(n for n, _ in passes.values()) / sum(s for _, s in passes.values())


def overhead(args, work: Path) -> dict:
    data = args.data
    if args.images:
        data = subset(Path(args.data), work / "data", args.images)
    score = ["score", "-m", args.model, "--data", str(data), "--device", args.device, "--batch-size",
             str(args.batch_size), "--runs-dir", str(work / "runs")]  # fmt: skip
    if args.transforms:
        score += ["-t", *args.transforms.split(","), "-s", *args.severities.split(",")]
    if args.workers is not None:
        score += ["--workers", str(args.workers)]
    if args.weights:
        score += ["--weights", args.weights]
    rates: dict[str, list[float]] = {"plain": [], "torchrun1": []}
    runs = {}
    for rep in range(args.reps):
        for kind in ("plain", "torchrun1"):
            name = f"{kind}{rep}"
            cmd = (
                [sys.executable, "-m", "robusteval"]
                if kind == "plain"
                else [*torchrun(1), "-m", "robusteval"]
            )
            t0 = time.perf_counter()
            out = subprocess.run([*cmd, *score, "--run-name", name], cwd=ROOT, env=env(), capture_output=True,
                                 text=True)  # fmt: skip
            if out.returncode:
                raise SystemExit(f"{kind} failed:\n{out.stderr[-3000:]}")
            rates[kind].append(throughput(work / "runs" / name))
            runs[kind] = work / "runs" / name
            log(f"{kind} rep {rep}: {rates[kind][-1]:.1f} img/s (process {time.perf_counter() - t0:.1f} s)")
    best = {k: max(v) for k, v in rates.items()}
    return {
        "device": args.device, "model": args.model, "data": str(data), "img_per_s": rates, "best": best,
        "overhead_pct": round(100 * (1 - best["torchrun1"] / best["plain"]), 2),
        "identical": cells(runs["plain"]) == cells(runs["torchrun1"]),
    }  # fmt: skip


def gather_worker(images: int, reps: int, out: Path) -> None:
    """Runs on every rank under torchrun: time the score engine's gather of one cell's results."""
    import numpy as np

    from robusteval.distributed import barrier, gather_to_root, session

    device = os.environ.get("BENCH_DEVICE", "cpu")
    with session(device) as (world, device):
        rng = np.random.default_rng(world.rank)
        payload = (
            {"cell": (np.arange(images, dtype=np.int64) + world.rank * images,
                      rng.integers(0, 1000, (images, 5)).astype(np.int16),
                      rng.random((images, 5)).astype(np.float16))},
            [], ["pil"], images,
        )  # fmt: skip
        gather_to_root(payload, "warm-up")
        barrier("timing")
        t0 = time.perf_counter()
        for _ in range(reps):
            gather_to_root(payload, "timing")
        seconds = (time.perf_counter() - t0) / reps
        if world.root:
            total = images * world.size
            out.write_text(json.dumps({
                "world": world.size, "backend": "nccl" if device.startswith("cuda") else "gloo",
                "images_per_rank": images, "bytes_per_image": len(pickle.dumps(payload)) / images,
                "seconds_per_gather": seconds, "seconds_per_image": seconds / total,
            }))  # fmt: skip


def gather(args, work: Path) -> list[dict]:
    out = []
    for k in map(int, args.gather_worlds.split(",")):
        path = work / f"gather{k}.json"
        cmd = [*torchrun(k), __file__, "--gather-worker", "--gather-images", str(args.gather_images),
               "--gather-reps", str(args.gather_reps), "--out", str(path)]  # fmt: skip
        res = subprocess.run(
            cmd, cwd=ROOT, env=dict(env(), BENCH_DEVICE=args.device), capture_output=True, text=True
        )
        if res.returncode:
            raise SystemExit(f"gather on {k} ranks failed:\n{res.stderr[-3000:]}")
        out.append(json.loads(path.read_text()))
        log(f"gather world {k}: {out[-1]['seconds_per_image'] * 1e6:.2f} us/image")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", default="overhead,gather")
    p.add_argument("--tiny", action="store_true", help="CPU smoke test: 8 images, 1 rep, small gathers")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    p.add_argument("--model", default="mobilenet_v2")
    p.add_argument("--weights", default=None, help="passed to score, e.g. none (random init) for convnext_b")
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "imagenet-val-1300"))
    p.add_argument("--images", type=int, default=0, help="use the first N images of --data (0: all)")
    p.add_argument("--transforms", default="c_gaussian_noise,c_contrast", help="on the fly, comma separated")
    p.add_argument("--severities", default="1,3,5")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--gather-worlds", default=None, help="default: 1 on CUDA (one GPU), 1,2 on the CPU")
    p.add_argument("--gather-images", type=int, default=6250, help="images per rank per gather")
    p.add_argument("--gather-reps", type=int, default=20)
    p.add_argument("--gather-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "robusteval_bench_distributed")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    if args.gather_worker:
        gather_worker(args.gather_images, args.gather_reps, args.out)
        return
    import torch

    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.tiny:
        args.images, args.reps, args.batch_size, args.workers = 8, 1, 4, 0
        args.transforms, args.severities = "c_gaussian_noise", "1"
        args.gather_images, args.gather_reps = 500, 5
    if args.gather_worlds is None:
        args.gather_worlds = "1" if args.device.startswith("cuda") else "1,2"
    import shutil

    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    results: dict = {"torch": torch.__version__}
    parts = args.parts.split(",")
    if "overhead" in parts:
        results["overhead"] = overhead(args, args.work)
    if "gather" in parts:
        results["gather"] = gather(args, args.work)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2, default=str))
    if "overhead" in results:
        o = results["overhead"]
        print("| path | best img/s | all reps |\n|---|---:|---|")
        for k in ("plain", "torchrun1"):
            print(f"| {k} | {o['best'][k]:.1f} | {', '.join(f'{r:.1f}' for r in o['img_per_s'][k])} |")
        print(
            f"\noverhead at world size 1: {o['overhead_pct']:.2f}% (target <= 3%); identical records: {o['identical']}\n"
        )
    if "gather" in results:
        print("| world | backend | bytes/image | s/gather | us/image |\n|---:|---|---:|---:|---:|")
        for g in results["gather"]:
            print(f"| {g['world']} | {g['backend']} | {g['bytes_per_image']:.1f} | {g['seconds_per_gather']:.4f} | "
                  f"{g['seconds_per_image'] * 1e6:.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
