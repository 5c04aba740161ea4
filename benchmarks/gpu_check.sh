#!/usr/bin/env bash
# The one prepared GPU check (issue 8), about 3-4 minutes on an H100/H200:
#   1. the device parity tests, the CUDA autocast-gradient tests and the varlen bookkeeping tests;
#   2. the GPU benchmark rows (benchmarks/run.py --only gpu), table and JSON;
#   3. with --suite, the whole test suite too (the GPU machine is the one with Python 3.12).
# Everything it prints also lands in $OUT (the device tool brings that folder back), or /tmp/gpu-check.
# Run it from the repository root on the GPU machine:  bash benchmarks/gpu_check.sh [--suite]
set -uo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONDONTWRITEBYTECODE=1
out="${OUT:-/tmp/gpu-check}"
mkdir -p "$out"
status=0
{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  python -c "import sys, torch, transformers; print('Python', sys.version.split()[0], '| torch', torch.__version__, \
'| CUDA', torch.version.cuda, '| transformers', transformers.__version__)"
} 2>&1 | tee "$out/machine.txt"

echo "== GPU tests" | tee "$out/tests.txt"
timeout 150 python -m pytest -q -p no:cacheprovider -o addopts="" -rs tests/test_gpu.py tests/test_varlen.py \
  "tests/test_training.py::test_autocast_gradients_no_worse_than_transformers" 2>&1 | tee -a "$out/tests.txt"
status=$(( status | ${PIPESTATUS[0]} ))

echo "== GPU benchmark" | tee "$out/bench.txt"
timeout 240 python benchmarks/run.py --only gpu --json "$out/bench-gpu.json" 2>&1 | tee -a "$out/bench.txt"
status=$(( status | ${PIPESTATUS[0]} ))

if [ "${1:-}" = "--suite" ]; then
  echo "== whole suite" | tee "$out/suite.txt"
  timeout 300 python -m pytest -q -p no:cacheprovider 2>&1 | tail -40 | tee -a "$out/suite.txt"
  status=$(( status | ${PIPESTATUS[0]} ))
fi
exit "$status"
