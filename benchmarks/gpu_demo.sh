#!/usr/bin/env bash
# The demo's world and recipe on a GPU: make the world with many workers, train `tiny` on the GPU for a time budget
# at a GPU-sized batch, evaluate on the held-out test selection. Prints pairs/s (the input path's figure) and the
# headline metrics; writes data.log, train.log, train_metrics.json and test.json into OUT_DIR.
# Usage: bash benchmarks/gpu_demo.sh [OUT_DIR]
#   env: PYTHON (python3), WORK (scratch, /tmp/fgdepth_gpu_demo), MINUTES (3), BATCH (128), PRESET (tiny),
#        WORKERS (16), ACCELERATOR (gpu), DEVICE (cuda), LIMIT (24000), NUM_BG (1000),
#        COMPILE (a torch.compile mode for fgdepth train --compile, e.g. reduce-overhead; empty: eager)
set -euo pipefail
out=${1:-runs/gpu_demo}
py=${PYTHON:-python3}
work=${WORK:-/tmp/fgdepth_gpu_demo}
minutes=${MINUTES:-3}
batch=${BATCH:-128}
preset=${PRESET:-tiny}
mkdir -p "$out" "$work"
fg="$py -m fgdepth.cli"

# the demo's world (fgdepth.demo.DemoConfig): 1,000 rooms x 40 people, 24,000 samples at 160 px, 30 % camouflage
start=$(date +%s)
$fg make-dataset --out "$work/data" --num-bg "${NUM_BG:-1000}" --num-fg 40 --placements 1 --size 160 \
  --limit "${LIMIT:-24000}" --camouflage 0.3 --seed 0 --workers "${WORKERS:-16}" --shard-size 500 \
  >"$out/data.log" 2>&1
echo "world: $(($(date +%s) - start)) s"

# the demo's TrainConfig (48 px crops, 80 % on the person, whole 160 px images for depth and validation)
cat >"$work/train.yaml" <<EOF
val_every_steps: 300
val_samples: 128
augment_config:
  person_crop_p: 0.8
EOF
$fg train --config "$work/train.yaml" --data "$work/data" --out "$work/run_$preset" --model "$preset" --size 48 \
  --infer-size 160 --max-minutes "$minutes" --batch-size "$batch" --accelerator "${ACCELERATOR:-gpu}" --seed 0 \
  ${COMPILE:+--compile "$COMPILE"} >"$out/train.log" 2>&1
cp "$work/run_$preset/metrics.json" "$out/train_metrics.json"
$py - "$out/train_metrics.json" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
c = m["config"]
pairs = m["global_step"] * c["batch_size"]
print(f"train: {m['global_step']} steps x {c['batch_size']} = {pairs:,} pairs in {m['train_seconds']} s: "
      f"{pairs / m['train_seconds']:.0f} pairs/s")
EOF
$fg evaluate --checkpoint "$work/run_$preset/checkpoints/best.ckpt" --data "$work/data" --selection test \
  --device "${DEVICE:-cuda}" --json "$out/test.json" | tail -n 25
