"""Corrupt-stage throughput: outputs/s per transformation, and the full study protocol projected.

Runs anywhere (the 2-core CPU machine, the GPU machine's 16 cores). Two measurements in one run:
1. per transformation and severity, single process: transform + PNG encode on pre-decoded 224 crops;
2. end to end with `run_corrupt` (decode, crop, transform, PNG, manifest) on all cores, severity 3.
The projection for the study protocol (1,000 classes × 15 images × 21 sets × 5 severities, single-level
sets counted once) uses (2)'s measured outputs/s.

    python scripts/benchmarks/bench_corrupt.py --images 24 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from robusteval.corrupt.spec import suite_sets
from robusteval.corrupt.stage import encode_png, run_corrupt
from robusteval.datasets.decode import load_rgb, resize_center_crop
from robusteval.datasets.layouts import read_dataset
from robusteval.seeding import derive_seed

DEFAULT_DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "imagenet-val-1300"


def per_op(crops, sets) -> list[dict]:
    sets[0].apply(crops[0], severity=1, seed=0)  # imports imgaug and builds caches outside the timing
    rows = []
    for spec in sets:
        for sev in spec.severities:
            t0 = time.perf_counter()
            for i, crop in enumerate(crops):
                encode_png(spec.apply(crop, severity=sev, seed=derive_seed(0, spec.name, sev, i)))
            dt = time.perf_counter() - t0
            rows.append({"set": spec.name, "severity": sev, "img_per_s": len(crops) / dt})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--images", type=int, default=24, help="images for the per-op timing")
    ap.add_argument("--e2e-images", type=int, default=48, help="images for the end-to-end run")
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--suite", default="study21")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    ds = read_dataset(args.data)
    sets = suite_sets(args.suite)
    t0 = time.perf_counter()
    crops = [resize_center_crop(load_rgb(s.path)) for s in ds.samples[: args.images]]
    decode_rate = len(crops) / (time.perf_counter() - t0)
    rows = per_op(crops, sets)

    e2e = {}
    with tempfile.TemporaryDirectory() as tmp:
        sub = Path(tmp) / "data"
        sub.mkdir()
        lines = ["path,class_index,wnid"] + [
            f"{s.path.resolve()},{s.label},{s.wnid}" for s in ds.samples[: args.e2e_images]
        ]
        (sub / "labels.csv").write_text("\n".join(lines) + "\n")
        summary = run_corrupt(
            data=sub, out=Path(tmp) / "out", suite=args.suite, severities=[3], workers=args.workers
        )
        e2e = {"outputs": summary.written, "seconds": summary.seconds, "outputs_per_s": summary.images_per_s,
               "workers": args.workers}  # fmt: skip

    n_outputs = 15_000 * sum(len(s.severities) for s in sets)
    n_naive = 15_000 * len(sets) * 5
    result = {
        "machine": f"{platform.node()} {os.cpu_count()} cores",
        "decode_crop_img_per_s_1proc": decode_rate,
        "per_op_1proc": rows,
        "end_to_end": e2e,
        "protocol_outputs": n_outputs,
        "protocol_hours": n_outputs / e2e["outputs_per_s"] / 3600,
        "protocol_outputs_if_all_5_levels": n_naive,
    }
    print(f"machine: {result['machine']}; decode+crop {decode_rate:.0f} img/s/process")
    print(f"{'set':28s} " + " ".join(f"sev{s}" for s in range(1, 6)) + "   (outputs/s, 1 process)")
    for spec in sets:
        vals = [r["img_per_s"] for r in rows if r["set"] == spec.name]
        print(f"{spec.name:28s} " + " ".join(f"{v:5.0f}" for v in vals))
    print(
        f"end to end, {e2e['workers']} workers, severity 3: {e2e['outputs_per_s']:.1f} outputs/s "
        f"({e2e['outputs']} outputs in {e2e['seconds']:.1f} s)"
    )
    print(
        f"study protocol: {n_outputs:,} outputs (single-level sets once) → "
        f"{result['protocol_hours']:.2f} h on this machine"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
