#!/usr/bin/env bash
# Regenerates reports/example/: real weights (mobilenet_v2, efficientnet_lite0) on 100 real
# ImageNet-val images (every 13th of ../shared/data/imagenet-val-1300), all 21 study
# transformations at severity 3, the frequency suite, and the model-vs-human 16-class sets.
# Usage: bash scripts/example_report.sh [WORK_DIR]   (about 20 min on 2 CPU cores)
set -euo pipefail
cd "$(dirname "$0")/.."
VAL=../shared/data/imagenet-val-1300
MVH=../shared/data/modelvshuman-16class
WORK=${1:-/tmp/robusteval-example}
mkdir -p "$WORK/data"
python3 - "$VAL" "$WORK/data/labels.csv" <<'PY'
import csv, sys
from pathlib import Path
val, out = Path(sys.argv[1]).resolve(), Path(sys.argv[2])
rows = list(csv.DictReader(open(val / "labels.csv")))[::13][:100]
with open(out, "w", newline="") as fh:
    w = csv.writer(fh)
    w.writerow(["path", "class_index", "wnid"])
    w.writerows([str(val / r["path"]), r["class_index"], r["wnid"]] for r in rows)
PY
robusteval corrupt --suite study21 --severity 3 --data "$WORK/data" --out "$WORK/sets"
robusteval corrupt --suite frequency --data "$WORK/data" --out "$WORK/sets"
robusteval score -m mobilenet_v2,efficientnet_lite0 --run example --runs-dir "$WORK/runs" \
    --data "$WORK/data" --sets "$WORK/sets" --ood mvh="$MVH"
robusteval report --run example --runs-dir "$WORK/runs" --baseline mobilenet_v2 --out reports/example
