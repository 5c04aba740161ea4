"""Load rows, each measured in a fresh Python process so that nothing is cached in the interpreter.

- load: ``from_pretrained`` wall time, and how much it raises the peak resident memory over a
  process that has already imported torch and the library (the weights should be memory-mapped
  from the file, not copied: at most 1.2x the checkpoint's size);
- fresh process: from starting ``python`` to the first output of a small forward, for each library.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from harness import REPO, check_goal, log

# Peak RSS: Linux keeps it as VmHWM in /proc/self/status; writing "5" to /proc/self/clear_refs
# resets it to the current RSS, so the peak of the load alone can be read after it.
LOAD_SCRIPT = r"""
import json, sys, time
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024  # kB -> MiB
start = time.perf_counter()
import torch
torch_rss = status("VmRSS")
import {module} as library
import_seconds = time.perf_counter() - start
before = status("VmRSS")
try:
    open("/proc/self/clear_refs", "w").write("5")
    reset = True
except OSError:
    reset = False
start = time.perf_counter()
model = library.BertModel.from_pretrained(sys.argv[1])
seconds = time.perf_counter() - start
peak = status("VmHWM")
with torch.inference_mode():  # touches every weight: memory-mapped pages now count as resident
    model(input_ids=torch.tensor([[1, 5, 7, 2]]))
print(json.dumps({{"seconds": seconds, "import_seconds": import_seconds, "torch_rss": torch_rss,
                  "import_rss": before - torch_rss, "before": before, "peak": peak,
                  "peak_after_forward": status("VmHWM"), "peak_reset": reset}}))
"""

FIRST_OUTPUT_SCRIPT = r"""
import sys, torch, {module} as library
model = library.BertModel.from_pretrained(sys.argv[1])
with torch.inference_mode():
    print(float(model(input_ids=torch.tensor([[1, 5, 7, 2]])).last_hidden_state[0, 0, 0]), flush=True)
"""

LIBRARIES = {"minibert": "minibert", "transformers_sdpa": "transformers"}


def environment() -> dict:
    """Offline (a local directory needs no hub), quiet, and minibert importable from the checkout."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error", TOKENIZERS_PARALLELISM="false")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def run_load(module: str, directory: Path) -> dict:
    script = LOAD_SCRIPT.format(module=module)
    done = subprocess.run([sys.executable, "-c", script, str(directory)], capture_output=True, text=True,
                          env=environment(), check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def time_to_first_output(module: str, directory: Path) -> tuple[float, str]:
    """Seconds from launching the interpreter to its first line of output (and that line)."""
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-c", FIRST_OUTPUT_SCRIPT.format(module=module), str(directory)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment())
    line = process.stdout.readline()
    seconds = time.perf_counter() - start
    _, errors = process.communicate()
    if process.returncode != 0 or not line:
        raise RuntimeError(f"{module} first-output process failed: {errors[-500:]}")
    return seconds, line.strip()


def checkpoint_mib(directory: Path) -> float:
    return sum(path.stat().st_size for path in directory.glob("*.safetensors")) / 2**20


def load_rows(directory: Path, quick: bool) -> list[dict]:
    repeats = 1 if quick else 3
    size = checkpoint_mib(directory)
    log(f"  load ({size:.0f} MiB checkpoint, {repeats} fresh processes each) ...")
    runs: dict[str, list[dict]] = {label: [] for label in LIBRARIES}
    for repeat in range(repeats):
        for label in (LIBRARIES if repeat % 2 == 0 else reversed(LIBRARIES)):
            runs[label].append(run_load(LIBRARIES[label], directory))
    seconds = {label: statistics.median(run["seconds"] for run in values) for label, values in runs.items()}
    added = {label: statistics.median(run["peak"] - run["before"] for run in values) for label, values in runs.items()}
    imported = {label: statistics.median(run["import_rss"] for run in values) for label, values in runs.items()}
    with_forward = {label: statistics.median(run["peak_after_forward"] - run["before"] for run in values)
                    for label, values in runs.items()}
    time_row = {"section": "load", "name": "from_pretrained", "unit": "s", **seconds,
                "speedup": seconds["transformers_sdpa"] / seconds["minibert"],
                "note": f"{size:.0f} MiB checkpoint, page cache warm"}
    memory_row = {"section": "load", "name": "peak RSS added by load", "unit": "MiB", **added,
                  "speedup": added["transformers_sdpa"] / max(added["minibert"], 1.0),
                  "checkpoint_mib": size, "import_mib": imported, "with_first_forward_mib": with_forward,
                  "minibert_over_checkpoint": added["minibert"] / size,
                  "note": f"x{added['minibert'] / size:.2f} of the checkpoint (memory-mapped); after a first forward "
                          f"+{with_forward['minibert']:.0f} / +{with_forward['transformers_sdpa']:.0f} MiB; import adds "
                          f"{imported['minibert']:.0f} / {imported['transformers_sdpa']:.0f} MiB"}
    if not all(run["peak_reset"] for values in runs.values() for run in values):
        memory_row["note"] += "; peak not resettable here: includes the import"
    check_goal(memory_row, "<= 1.2x", memory_row["minibert_over_checkpoint"])
    log(f"    {seconds['minibert']:.2f} s vs {seconds['transformers_sdpa']:.2f} s; peak RSS "
        f"+{added['minibert']:.0f} MiB vs +{added['transformers_sdpa']:.0f} MiB")
    return [time_row, memory_row]


def first_output_rows(directory: Path, quick: bool) -> list[dict]:
    repeats = 1 if quick else 3
    log(f"  fresh process to first output ({repeats} each) ...")
    seconds: dict[str, list[float]] = {label: [] for label in LIBRARIES}
    outputs = {}
    for repeat in range(repeats):
        for label in (LIBRARIES if repeat % 2 == 0 else reversed(LIBRARIES)):
            elapsed, outputs[label] = time_to_first_output(LIBRARIES[label], directory)
            seconds[label].append(elapsed)
    medians = {label: statistics.median(values) for label, values in seconds.items()}
    agree = abs(float(outputs["minibert"]) - float(outputs["transformers_sdpa"])) < 1e-4
    row = {"section": "fresh process", "name": "start to first output", "unit": "s", **medians,
           "speedup": medians["transformers_sdpa"] / medians["minibert"], "outputs_agree": agree,
           "note": "import, from_pretrained, one 4-token forward" + ("" if agree else "; OUTPUTS DIFFER")}
    log(f"    {medians['minibert']:.2f} s vs {medians['transformers_sdpa']:.2f} s")
    return [check_goal(row, ">= 2x", row["speedup"])]
