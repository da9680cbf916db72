#!/usr/bin/env bash
# session 21, device call 2: the noise on the device, --compile under Lightning
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
t0=$(date +%s)
python3 -m fgdepth.cli make-dataset --out /tmp/w --num-bg 200 --num-fg 20 --placements 1 --size 160 --limit 4000 \
  --camouflage 0.3 --seed 0 --workers 16 --shard-size 500 > $OUT/world.log 2>&1 &
timeout 200 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py -k "augment or fit_on_cuda" 2>&1 | tail -5 | tee $OUT/test_cuda.log
wait; echo "world+tests $(( $(date +%s) - t0 )) s"
timeout 60 python3 benchmarks/train_step_profile.py /tmp/w --device cuda --batch 128 --steps 30 --profile-steps 0 \
  2>&1 | grep -v "^USDT" | tee $OUT/profile.txt
printf 'val_every_steps: 2000\nval_samples: 64\naugment_config:\n  person_crop_p: 0.8\n' > /tmp/t.yaml
for c in none reduce-overhead; do
  extra=""; [ $c != none ] && extra="--compile $c"
  t1=$(date +%s)
  timeout 120 python3 -m fgdepth.cli train --config /tmp/t.yaml --data /tmp/w --out /tmp/r_$c --size 48 --infer-size 160 \
    --max-minutes 0 --max-steps 400 --batch-size 128 --accelerator gpu $extra > $OUT/train_$c.log 2>&1
  echo "lightning $c rc $? in $(( $(date +%s) - t1 )) s"
  python3 -c "import json; m=json.load(open('/tmp/r_$c/metrics.json')); print('lightning $c', m['global_step'], 'steps', m['train_seconds'], 's', round(1000*m['train_seconds']/m['global_step'],1), 'ms/step; test', {k: round(v, 3) for k, v in m['test'].items() if k in ('mask_iou', 'depth_delta1')})"
done
