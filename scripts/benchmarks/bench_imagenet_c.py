"""ImageNet-C op throughput: images/s per corruption and severity, single process, on real 224 crops.

Per severity the table gives wall-clock images/s; the last column divides by the process's CPU
time instead, which is steadier on a shared machine (OpenCV may use a second thread, counted there).
Times only the op (no decode, no PNG encode) on pre-cropped images (resize 256, center crop 224),
after one warm-up call per set (frost builds its textures once per process). With
``--naive-glass`` it also times a per-pixel Python loop of the reference's glass-blur shuffle on
one image, for the speed-up.

    python scripts/benchmarks/bench_imagenet_c.py --images 8 --markdown bench.md
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from robusteval.corrupt.spec import suite_sets
from robusteval.datasets.decode import load_rgb, resize_center_crop
from robusteval.seeding import derive_seed

DEFAULT_DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "imagenet-val-1300"


def load_crops(data: Path, n: int) -> list[np.ndarray]:
    with open(data / "labels.csv", newline="") as f:
        paths = [row["path"] for row in csv.DictReader(f)][:n]
    return [resize_center_crop(load_rgb(data / p)) for p in paths]


def time_sets(crops: list[np.ndarray], repeats: int) -> list[dict]:
    from robusteval.corrupt.reference.imagenet_c_frost import FROST_STYLES, frost_texture

    for i in range(len(FROST_STYLES)):  # built once per process; not part of per-image cost
        frost_texture(i)
    rows = []
    for spec in suite_sets("imagenet-c"):
        spec.apply(crops[0], severity=1, seed=0)  # warm-up: imports, cached textures
        for sev in spec.severities:
            t0, c0 = time.perf_counter(), time.process_time()
            for r in range(repeats):
                for i, crop in enumerate(crops):
                    spec.apply(crop, severity=sev, seed=derive_seed(r, spec.name, sev, i))
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            n = repeats * len(crops)
            folder = spec.extra.get("folder")
            rows.append(
                {"set": spec.name, "folder": folder, "severity": sev, "n": n, "s": wall, "cpu_s": cpu}
            )
    return rows


def naive_glass_seconds(crop: np.ndarray, *, max_delta: int = 1, iterations: int = 2) -> float:
    """The reference's shuffle as a per-pixel loop (one randint call and one row copy per pixel)."""
    rng = np.random.RandomState(0)
    x = crop.copy()
    h, w = x.shape[:2]
    t0 = time.perf_counter()
    for _ in range(iterations):
        for row in range(h - max_delta, max_delta, -1):
            for col in range(w - max_delta, max_delta, -1):
                dx, dy = rng.randint(-max_delta, max_delta, size=(2,))
                x[row, col] = x[row + dy, col + dx]
    return time.perf_counter() - t0


def table(rows: list[dict]) -> str:
    by_set: dict[str, list[dict]] = {}
    for r in rows:
        by_set.setdefault(r["set"], []).append(r)
    lines = [
        "| set | folder | s1 | s2 | s3 | s4 | s5 | img/s (wall) | ms/img (wall) | img/s per CPU-second |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, rs in by_set.items():
        per = " | ".join(f"{r['n'] / r['s']:.1f}" for r in rs)
        n, s, c = (sum(r[k] for r in rs) for k in ("n", "s", "cpu_s"))
        lines.append(
            f"| {name} | {rs[0]['folder']} | {per} | {n / s:.1f} | {1000 * s / n:.1f} | {n / c:.1f} |"
        )
    n, s, c = (sum(r[k] for r in rows) for k in ("n", "s", "cpu_s"))
    lines.append(f"| **all 19 × 5** | | | | | | | **{n / s:.1f}** | {1000 * s / n:.1f} | {n / c:.1f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--naive-glass", action="store_true", help="also time the per-pixel reference loop")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--markdown", type=Path)
    args = ap.parse_args()

    crops = load_crops(args.data, args.images)
    rows = time_sets(crops, args.repeats)
    env = f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical cores, single process"
    md = f"ImageNet-C op throughput ({len(crops)} real 224 crops × {args.repeats}; {env})\n\n{table(rows)}\n"
    result: dict = {"rows": rows, "env": env}
    if args.naive_glass:
        naive = naive_glass_seconds(crops[0])
        fast = next(r for r in rows if r["folder"] == "glass_blur" and r["severity"] == 1)
        result["naive_glass_s"] = naive
        md += (
            f"\nGlass blur severity 1, per-pixel reference loop: {naive:.2f} s/img; "
            f"this implementation: {fast['s'] / fast['n'] * 1000:.0f} ms/img.\n"
        )
    print(md)
    if args.markdown:
        args.markdown.write_text(md)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
