#!/usr/bin/env bash
# session 22, device call 1: the demo's world and recipe trained for 6 minutes on the GPU (batch 128), compiled
# with CUDA graphs (reduce-overhead); eager for 5 minutes if the compiled run fails
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
t0=$(date +%s)
if ! MINUTES=6 COMPILE=reduce-overhead bash benchmarks/gpu_demo.sh "$OUT/compiled"; then
  echo "compiled run failed after $(( $(date +%s) - t0 )) s"; tail -30 "$OUT/compiled/train.log"
  MINUTES=5 bash benchmarks/gpu_demo.sh "$OUT/eager"
fi
echo "all: $(( $(date +%s) - t0 )) s"
