#!/usr/bin/env bash
# session 22, device call 2: tests/test_cuda.py whole on the code after session 21 (compact batches) with the new
# DDP + --compile case
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
t0=$(date +%s)
timeout 330 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py -rs 2>&1 | grep -v "^USDT" | tail -25 | tee $OUT/test_cuda.log
echo "tests $(( $(date +%s) - t0 )) s"
