#!/usr/bin/env bash
# session 21, device call 1: where the GPU training step goes
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.used --format=csv
python3 -c "import torch, triton; print(torch.__version__, triton.__version__)"
t0=$(date +%s)
python3 -m fgdepth.cli make-dataset --out /tmp/w --num-bg 200 --num-fg 20 --placements 1 --size 160 --limit 4000 \
  --camouflage 0.3 --seed 0 --workers 16 --shard-size 500 > $OUT/world.log 2>&1; echo "world $(( $(date +%s) - t0 )) s"
timeout 270 python3 benchmarks/train_step_profile.py /tmp/w --device cuda --batch 128 --steps 30 \
  --compile default --compile reduce-overhead 2>&1 | grep -v "^USDT" | tee $OUT/profile.txt
printf 'val_every_steps: 1000\nval_samples: 64\naugment_config:\n  person_crop_p: 0.8\n' > /tmp/t.yaml
t1=$(date +%s)
timeout 90 python3 -m fgdepth.cli train --config /tmp/t.yaml --data /tmp/w --out /tmp/r --size 48 --infer-size 160 \
  --max-minutes 0 --max-steps 200 --batch-size 128 --accelerator gpu > $OUT/train.log 2>&1
echo "lightning rc $? in $(( $(date +%s) - t1 )) s"
python3 -c "import json; m=json.load(open('/tmp/r/metrics.json')); print('lightning', m['global_step'], 'steps', m['train_seconds'], 's', round(1000*m['train_seconds']/m['global_step'],1), 'ms/step')"
