#!/usr/bin/env bash
# Every GPU benchmark of reports/bench/ in one device session, each bounded by its own timeout.
# Usage (on the GPU machine, from the repo root; wheels for packages the image lacks in .whl/,
# upstream checkouts for the side-by-side rows in .upstream/):
#   bash scripts/benchmarks/gpu_suite.sh OUT_DIR PART     # PART: kernels | stages | late
set -uo pipefail
out=${1:?OUT_DIR}; part=${2:?PART}
mkdir -p "$out"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH=".:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
step() {  # step NAME SECONDS CMD...
  local name=$1 secs=$2; shift 2
  echo "=== $name ($(date +%T), limit ${secs}s)"
  timeout "$secs" "$@" > "$out/$name.log" 2>&1; echo "=== $name rc=$?"; tail -n 40 "$out/$name.log"
}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
case $part in
kernels)  # the scan's tests, the training step, throughput beside Swin/ConvNeXt and the official code
  step scan_gpu_tests 170 python3 -m pytest -q -m gpu -x tests/test_scan_gpu.py
  step train_step 150 python3 scripts/benchmarks/bench_train_step.py --out "$out/train_step" \
    --upstream .upstream/VMamba --batch 128 --backends triton,mamba --compile --floor
  step models 240 python3 scripts/benchmarks/bench_models.py --out "$out/models" --upstream .upstream/VMamba \
    --backends triton,mamba --bf16-only --batches 256 --compile --models vmamba_b,vmamba_t,official,swin_b,convnext
  ;;
stages)  # the mamba path, the new backbones, transfer and explain
  step scan_gpu_tests 120 python3 -m pytest -q -m gpu tests/test_scan_gpu.py
  step models_mamba 90 python3 scripts/benchmarks/bench_models.py --out "$out/models_mamba" \
    --upstream .upstream/VMamba --backends mamba --bf16-only --batches 256 --models vmamba_b,vmamba_t
  step backbones 150 python3 scripts/benchmarks/bench_backbones.py --out "$out/backbones.json" \
    --upstream .upstream --batches 128,256
  step transfer 90 python3 scripts/benchmarks/bench_transfer.py --device cuda --out "$out/transfer.json" \
    --models vmamba_t deit_s convnext_b
  step explain 70 python3 scripts/benchmarks/bench_explain.py --device cuda --n 32 --out "$out/explain.json"
  ;;
late)  # the distributed path at world size 1, gradient-CAM maps/s, sharpness cost
  step distributed 170 python3 scripts/benchmarks/bench_distributed.py --device cuda --model convnext_b \
    --weights none --data robusteval/assets/modelvshuman16 --out "$out/distributed.json"
  step explain_cam 80 python3 scripts/benchmarks/bench_explain.py --device cuda --n 32 \
    --methods gradcam,hirescam,layercam --models mobilenet_v2,convnext_b,swin_b,vmamba_t --out "$out/explain_cam.json"
  for m in vmamba_t convnext_b; do
    step "sharpness_$m" 80 python3 scripts/benchmarks/bench_sharpness.py --device cuda --models "$m" \
      --images 256 --probes 10 --out "$out/sharpness_$m.json"
  done
  ;;
final)  # transfer and sharpness at reduced sizes (the full ones outran a 10-minute device call)
  step transfer 150 python3 scripts/benchmarks/bench_transfer.py --device cuda --images 10000 \
    --models deit_s convnext_b vmamba_t --out "$out/transfer.json"
  for m in vmamba_t swin_b convnext_b; do
    step "sharpness_$m" 45 python3 scripts/benchmarks/bench_sharpness.py --device cuda --models "$m" \
      --images 64 --batch 32 --top-k 2 --probes 4 --out "$out/sharpness_$m.json"
  done
  ;;
esac
tar -czf "$out.tar.gz" -C "$(dirname "$out")" "$(basename "$out")" && mv "$out.tar.gz" "$out/../results-$part.tar.gz"
