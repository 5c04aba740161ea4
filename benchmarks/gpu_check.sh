#!/usr/bin/env bash
# The one prepared GPU check (issue 8), about 2-4 minutes on an H100/H200:
#   1. the machine: nvidia-smi, Python/torch/CUDA/transformers versions, which attention kernel minibert picks;
#   2. the device parity tests, the kernel tests, the CUDA autocast-gradient tests, the varlen bookkeeping;
#   3. the GPU benchmark rows (benchmarks/run.py --only gpu), table and JSON;
#   4. with --suite, the whole test suite too (the tests that need matplotlib or hypothesis skip there).
# Every step has a time limit, the whole run a budget ($GPU_CHECK_SECONDS, default 240 s, plus 300 s with
# --suite), and a step that fails or runs out of time does not stop the next one. Everything printed also
# lands in $OUT (the device tool brings that folder back; /tmp/gpu-check without it): machine.txt,
# tests.txt + tests.xml, bench.txt + bench-gpu.json, suite.txt, and summary.txt (each step's exit status
# and seconds; 124 means it ran out of time). Needs only torch, transformers and pytest: no network, no
# MiniLM weights. Run it from anywhere:  bash benchmarks/gpu_check.sh [--suite]
# (through the device tool: a timeout_s of about 300, or 600 with --suite). A rerun after a fix can run
# some steps only: GPU_CHECK_STEPS="tests" bash benchmarks/gpu_check.sh (default "machine tests bench").
set -uo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
  PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
out="${OUT:-/tmp/gpu-check}"
mkdir -p "$out"
python="$(command -v python || command -v python3)"
steps=" ${GPU_CHECK_STEPS:-machine tests bench} "
suite=0
[ "${1:-}" = "--suite" ] && suite=1 && steps="$steps suite "
deadline=$(( SECONDS + ${GPU_CHECK_SECONDS:-240} + 300 * suite ))
status=0
: > "$out/summary.txt"

# limited SECONDS COMMAND...: SIGINT after SECONDS (pytest still prints what failed so far, Python a
# traceback that says where it was), SIGKILL 15 s later; without coreutils' timeout, no limit rather than no run.
limited() {
  if command -v timeout > /dev/null; then timeout -s INT -k 15 "$@"; else shift; "$@"; fi
}

# step NAME CAP FILE COMMAND...: COMMAND's output to the terminal and to $out/FILE, for at most CAP seconds
# and never past the budget; only the steps named in $steps run.
step() {
  local name=$1 cap=$2 file=$3 start=$SECONDS rc
  shift 3
  [[ $steps == *" $name "* ]] || return 0
  local left=$(( deadline - SECONDS - 15 ))
  (( cap > left )) && cap=$left
  if (( cap < 20 )); then
    echo "== $name: skipped, the time budget is spent" | tee -a "$out/$file" "$out/summary.txt"
    status=1
    return
  fi
  echo "== $name (at most ${cap} s)" | tee -a "$out/$file"
  limited "$cap" "$@" 2>&1 | tee -a "$out/$file"
  rc=${PIPESTATUS[0]}
  (( rc == 124 || rc == 137 )) && echo "== $name: stopped after ${cap} s" | tee -a "$out/$file"
  printf '%-8s exit %3d  %4d s\n' "$name" "$rc" $(( SECONDS - start )) | tee -a "$out/summary.txt"
  (( rc != 0 )) && status=1
}

machine_py='
import platform, sys
import torch
print("Python", platform.python_version(), "| torch", torch.__version__, "| CUDA", torch.version.cuda,
      "| cuDNN", torch.backends.cudnn.version())
try:
    import transformers
    print("transformers", transformers.__version__)
except Exception as error:
    print("transformers: cannot import:", error)
from minibert.fast import varlen
print("varlen_attn:", varlen._get_varlen_attn() is not None, "| aten._flash_attention_forward:", varlen._FLASH_OP is not None)
for dropout in (0.0, 0.1):
    print(f"minibert kernel for bf16, head_dim 64, dropout {dropout}:",
          varlen.choose_kernel(torch.device("cuda"), torch.bfloat16, 64, dropout))
if not torch.cuda.is_available():
    sys.exit("CUDA is not available: the GPU tests will skip and the benchmark prints no GPU rows")
properties = torch.cuda.get_device_properties(0)
print(f"device: {properties.name}, compute capability {properties.major}.{properties.minor}, "
      f"{properties.total_memory / 2**30:.0f} GiB; flash SDPA enabled: {torch.backends.cuda.flash_sdp_enabled()}")
'

{
  date -u
  nvidia-smi || echo "nvidia-smi: not found or failed"
  echo "python: $python"
  "$python" -m pip list 2>/dev/null | grep -iE "^(torch|triton|transformers|tokenizers|safetensors|huggingface|pytest|numpy|hypothesis|matplotlib)" || true
  git log -1 --format="minibert commit %h %s" 2>/dev/null || true
} 2>&1 | tee "$out/machine.txt"
step machine 60 machine.txt "$python" -c "$machine_py"

step tests 120 tests.txt "$python" -m pytest -q -p no:cacheprovider -o addopts="" -rfEs --tb=short --durations=10 \
  --junitxml="$out/tests.xml" tests/test_gpu.py tests/test_varlen.py \
  "tests/test_training.py::test_autocast_gradients_no_worse_than_transformers"

step bench 200 bench.txt "$python" benchmarks/run.py --only gpu --json "$out/bench-gpu.json"

step suite 300 suite.txt "$python" -m pytest -q -p no:cacheprovider -o addopts="" -rfEs --tb=short

echo "== summary (budget left: $(( deadline - SECONDS )) s)"
cat "$out/summary.txt"
exit "$status"
