"""Digest of what robusteval produces on fixed inputs, to prove a refactor changed no behaviour.

Runs, in a scratch folder: ``corrupt`` of 20 real val images with study21 + imagenet-c + frequency,
``score`` of two real-weight models on that tree, and the demo; prints one JSON object with the
sha256 of every PNG, of the manifest (timing fields dropped), every record's metrics, and the demo's
report.md with timings masked. Compare the output of two checkouts::

    python scripts/tools/layout_parity.py --val ../shared/data/imagenet-val-1300 --work /tmp/a > a.json
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

TIMING = {"seconds", "img_per_s", "created", "started", "elapsed", "versions", "command", "argv"}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _strip(obj):
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in sorted(obj.items()) if k not in TIMING}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def _run(*args: str, cwd: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "robusteval", *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--val", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--images", type=int, default=20)
    args = ap.parse_args()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    val = work / "val"
    (val / "images").mkdir(parents=True, exist_ok=True)
    with (args.val / "labels.csv").open() as fh:
        rows = list(csv.DictReader(fh))[: args.images]
    with (val / "labels.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "class_index", "wnid"])
        for r in rows:
            dst = val / r["path"]
            if not dst.exists():
                dst.symlink_to((args.val / r["path"]).resolve())
            w.writerow([r["path"], r["class_index"], r["wnid"]])
    sets = work / "sets"
    for suite in ("study21", "imagenet-c", "frequency"):
        _run("corrupt", "--suite", suite, "--data", str(val), "--out", str(sets), cwd=work)
    _run(
        "score",
        "-m",
        "mobilenet_v2",
        "efficientnet_lite0",
        "--data",
        str(val),
        "--sets",
        str(sets),
        "--run",
        "parity",
        "--runs-dir",
        str(work / "runs"),
        cwd=work,
    )
    _run("demo", "--out", str(work / "demo"), cwd=work)
    out: dict = {"png": {}, "manifest": [], "records": [], "report": ""}
    for p in sorted(sets.rglob("*.png")):
        out["png"][str(p.relative_to(sets))] = _sha(p)
    for line in (sets / "manifest.jsonl").read_text().splitlines():
        out["manifest"].append(_strip(json.loads(line)))
    metric_keys = ("model", "set", "severity", "label_space", "subset", "n", "top1", "top5", "ece")
    for line in (work / "runs" / "parity" / "records.jsonl").read_text().splitlines():
        rec = json.loads(line)
        out["records"].append({k: rec.get(k) for k in metric_keys})
    out["records"].sort(key=lambda r: json.dumps(r, sort_keys=True))
    out["manifest"].sort(key=lambda r: json.dumps(r, sort_keys=True))
    report = (work / "demo" / "report" / "report.md").read_text()
    out["report"] = re.sub(r"\d+(\.\d+)?\s*(s|img/s|ms)\b", "<t>", report)
    print(json.dumps(out, sort_keys=True, indent=0))


if __name__ == "__main__":
    main()
