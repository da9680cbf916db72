#!/usr/bin/env bash
# The CUDA checks and GPU figures in one go, for a machine with a GPU (CI has none):
#   the CUDA tests (tests/test_cuda.py: model, augmentation, bf16/fp16 training, Lightning on the GPU, DDP over NCCL,
#   teacher, predictor), then training images/s, inference ms per pair and the teacher's labelling speed on the GPU.
# Usage: bash benchmarks/gpu.sh [OUT_DIR]    (python: $PYTHON, default python3; fgdepth importable, e.g. PYTHONPATH=src)
set -uo pipefail
out=${1:-runs/gpu}
py=${PYTHON:-python3}
mkdir -p "$out"
status=0
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
$py -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))" \
  | tee -a "$out/gpu.txt"
$py -m pytest -q -p no:cacheprovider tests/test_cuda.py -o addopts="" 2>&1 | tee "$out/test_cuda.log" || status=1
$py benchmarks/train_speed.py --device cuda --steps 5 --repeats 3 \
  --case tiny:96:32 --case tiny:96:256 --case small:192:64 --case base:192:64 --case base:192:256 \
  --json "$out/train_speed.json" 2>&1 | tee "$out/train_speed.log" || status=1
$py benchmarks/inference.py --device cuda --preset tiny --preset small --preset base --size 192 \
  --batch 1 --batch 16 --batch 256 --json "$out/inference.json" 2>&1 | tee "$out/inference.log" || status=1
$py benchmarks/teacher.py --device cuda --batch 32 --repeats 3 --label-subset 0 \
  --json "$out/teacher.json" 2>&1 | tee "$out/teacher.log" || status=1
exit $status
