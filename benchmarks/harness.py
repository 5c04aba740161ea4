"""What every benchmark row shares: timing, the machine line, FLOP counts, batches, a checkpoint, the table.

A row is a dict. Keys the table knows (any may be absent):
  section, name    where it goes and what it is ("full batch", "8x128")
  unit             of the three contender columns: "ms", "s" or "MiB" (smaller is better)
  minibert, transformers_sdpa, transformers_eager     medians, in ``unit``
  speedup          transformers_sdpa / minibert: above 1, minibert is better
  gflops, roofline achieved GFLOP/s on real tokens (minibert), and that over the matmul's GFLOP/s
  goal, met        the issue's goal for the row (">= 4x") and whether this run reached it
  note             anything else, short
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run from a checkout without installing: benchmarks/ sits beside minibert/
    sys.path.insert(0, str(REPO))

BERT_BASE_CASED = dict(vocab_size=28996, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                       intermediate_size=3072, max_position_embeddings=512)
TINY = dict(vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=256, max_position_embeddings=128)


def log(message: str) -> None:
    """A progress line, on stderr so that stdout holds only the table and the JSON."""
    print(message, file=sys.stderr, flush=True)


# ---- the machine --------------------------------------------------------------------------------


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    """CPU, threads, torch version, GPU if any, and the load average (other work skews timings)."""
    info = {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_average": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:
        info["transformers"] = None
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def machine_line(info: dict) -> str:
    gpu = f", GPU {info['gpu']}" if info.get("gpu") else ", no GPU"
    return (f"{info['cpu']} ({info['cores']} cores, {info['threads']} torch threads){gpu}; torch {info['torch']}, "
            f"transformers {info['transformers']}, Python {info['python']}; load average {info['load_average']}")


# ---- timing -------------------------------------------------------------------------------------


def synchronizer(device: str) -> Callable[[], None]:
    return torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)


def busy_cpu_seconds() -> float:
    """CPU seconds every process on the machine has used since boot (Linux /proc/stat), or 0."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return 0.0
    user, nice, system, idle, iowait, irq, softirq, steal = (int(value) for value in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


@dataclass
class Timing(Mapping):
    """Each contender's median seconds per call (``timing[name]``, ``timing.items()``), with the
    seconds of every repeat behind them and how busy the rest of the machine was meanwhile."""

    seconds: dict[str, list[float]]
    others_cpu: float  # share of all cores' time that other processes used while this ran (0 to 1)
    window: float  # seconds the timed repeats took, all together

    def __getitem__(self, name: str) -> float:
        return statistics.median(self.seconds[name])

    def __iter__(self) -> Iterator[str]:
        return iter(self.seconds)

    def __len__(self) -> int:
        return len(self.seconds)

    def median(self, name: str) -> float:
        return self[name]

    def ratio(self, slower: str, faster: str) -> float:
        """Median over repeats of slower / faster, each pair timed back to back: steadier than a ratio
        of medians when the machine's speed drifts."""
        return statistics.median(a / b for a, b in zip(self.seconds[slower], self.seconds[faster]))


def time_alternating(contenders: dict[str, Callable[[], object]], repeats: int, device: str = "cpu",
                     warmup: int = 1) -> Timing:
    """Time each contender ``repeats`` times. Runs alternate (A B C, C B A, ...) so that a slow
    stretch of the machine falls on all of them alike; each is warmed up first."""
    sync = synchronizer(device)
    for call in contenders.values():
        for _ in range(warmup):
            call()
    seconds: dict[str, list[float]] = {name: [] for name in contenders}
    busy_before, own_before, start_all = busy_cpu_seconds(), sum(os.times()[:2]), time.perf_counter()
    for repeat in range(repeats):
        order = list(contenders) if repeat % 2 == 0 else list(reversed(contenders))
        for name in order:
            sync()
            start = time.perf_counter()
            contenders[name]()
            sync()
            seconds[name].append(time.perf_counter() - start)
    others = busy_cpu_seconds() - busy_before - (sum(os.times()[:2]) - own_before)
    window = time.perf_counter() - start_all
    return Timing(seconds, max(0.0, min(1.0, others / (window * (os.cpu_count() or 1)))), window)


def matmul_call(device: str = "cpu", dtype: torch.dtype = torch.float32, size: int = 2048) -> tuple[Callable, float]:
    """A plain (size x size) @ (size x size) matmul and its FLOPs: the machine's practical roofline."""
    generator = torch.Generator(device=device).manual_seed(0)
    left = torch.randn(size, size, generator=generator, device=device).to(dtype)
    right = torch.randn(size, size, generator=generator, device=device).to(dtype)
    return (lambda: torch.mm(left, right)), 2.0 * size**3


# ---- work: FLOPs, batches -----------------------------------------------------------------------


def encoder_flops(config: dict, lengths: list[int], attention: bool = True, pooler: bool = True) -> float:
    """Multiply-adds x 2 of a BERT forward on the real tokens only: the useful work of a batch.

    Per token and layer: Q, K, V, W^O (4 H^2) and the feed-forward (2 H I); per sequence of L tokens
    and layer: scores and context (2 L^2 H); the pooler. Embeddings, LayerNorm and softmax are left out.
    """
    hidden, intermediate = config["hidden_size"], config["intermediate_size"]
    per_token = 2 * (4 * hidden * hidden + 2 * hidden * intermediate)
    per_layer = sum(length * per_token + attention * 2 * 2 * length * length * hidden for length in lengths)
    return float(config["num_hidden_layers"] * per_layer + pooler * 2 * hidden * hidden * len(lengths))


def long_tailed_lengths(batch: int, seed: int, median: int = 40, longest: int = 270) -> list[int]:
    """Sentence lengths drawn log-normally around ``median``, and one paragraph of ``longest`` tokens."""
    generator = torch.Generator().manual_seed(seed)
    sentences = (median * torch.exp(0.6 * torch.randn(batch - 1, generator=generator))).round().clamp(5, longest)
    lengths = sentences.long().tolist() + [longest]
    order = torch.randperm(batch, generator=generator).tolist()
    return [lengths[index] for index in order]


def uniform_lengths(batch: int, seed: int, low: int = 8, high: int = 128) -> list[int]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(low, high + 1, (batch,), generator=generator).tolist()


def make_batch(lengths: list[int], vocab_size: int, seed: int, device: str = "cpu") -> dict[str, torch.Tensor]:
    """input_ids and attention_mask (batch, max(lengths)), right-padded with id 0."""
    generator = torch.Generator().manual_seed(seed)
    seq = max(lengths)
    attention_mask = (torch.arange(seq)[None] < torch.tensor(lengths)[:, None]).long()  # (batch, seq)
    input_ids = torch.randint(1, vocab_size, (len(lengths), seq), generator=generator) * attention_mask
    return {"input_ids": input_ids.to(device), "attention_mask": attention_mask.to(device)}


def padding_share(lengths: list[int]) -> float:
    return 1.0 - sum(lengths) / (len(lengths) * max(lengths))


# ---- the checkpoint -----------------------------------------------------------------------------


def write_checkpoint(config_values: dict, directory: Path | None = None, seed: int = 0) -> Path:
    """A randomly initialised transformers BertModel saved by transformers itself (config.json and
    model.safetensors), so that both libraries load the same file in the same format."""
    import transformers

    directory = Path(directory or tempfile.mkdtemp(prefix="minibert-bench-"))
    torch.manual_seed(seed)
    model = transformers.BertModel(transformers.BertConfig(**config_values))
    model.save_pretrained(str(directory))
    return directory


def quiet_transformers() -> None:
    """No load reports or progress bars from transformers in the middle of the table."""
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


def load_models(directory: Path, device: str = "cpu", dtype: torch.dtype = torch.float32,
                eager: bool = True) -> dict[str, torch.nn.Module]:
    """minibert (its default: SDPA, unpadded) and transformers' BertModel with sdpa and eager, in eval mode."""
    import transformers

    import minibert

    models = {"minibert": minibert.BertModel.from_pretrained(directory, dtype=dtype, device=device)}
    for implementation in ("sdpa", "eager") if eager else ("sdpa",):
        reference = transformers.BertModel.from_pretrained(str(directory), attn_implementation=implementation,
                                                           dtype=dtype)
        models[f"transformers_{implementation}"] = reference.to(device).eval()
    return models


# ---- the table ----------------------------------------------------------------------------------

CONTENDERS = ("minibert", "transformers_sdpa", "transformers_eager")


def format_value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "ms":
        return f"{value:.1f} ms" if value < 1000 else f"{value / 1000:.2f} s"
    if unit == "s":
        return f"{value:.2f} s"
    return f"{value:.0f} {unit}"


def table(rows: list[dict]) -> str:
    """Fixed-width text: one line per row, the contenders' medians, the speedup and the goal."""
    header = (f"{'section':<13} {'row':<28} {'minibert':>10} {'tf sdpa':>10} {'tf eager':>10} {'speedup':>8} "
              f"{'GFLOP/s':>8} {'roofline':>8}  {'goal':<14} note")
    lines = [header, "-" * len(header)]
    for row in rows:
        unit = row.get("unit", "ms")
        cells = [format_value(row.get(name), unit) for name in CONTENDERS]
        speedup = f"{row['speedup']:.2f}x" if row.get("speedup") is not None else "-"
        gflops = f"{row['gflops']:.0f}" if row.get("gflops") is not None else "-"
        roofline = f"{100 * row['roofline']:.0f}%" if row.get("roofline") is not None else "-"
        goal = ""
        if row.get("goal"):
            goal = f"{row['goal']} {'met' if row.get('met') else 'MISSED'}"
        lines.append(f"{row.get('section', ''):<13} {row.get('name', ''):<28} {cells[0]:>10} {cells[1]:>10} "
                     f"{cells[2]:>10} {speedup:>8} {gflops:>8} {roofline:>8}  {goal:<14} {row.get('note', '')}")
    return "\n".join(lines)


def check_goal(row: dict, goal: str | None, value: float | None) -> dict:
    """Attach a goal such as ">= 4x" (on the speedup) or ">= 90%" (on the roofline share) to a row."""
    if goal is None or value is None:
        return row
    threshold = float(goal.split()[-1].rstrip("x%"))
    if goal.endswith("%"):
        threshold /= 100
    comparison = goal.split()[0]
    row["goal"] = goal if "goal" not in row else f"{row['goal']}, {goal}"
    met = value >= threshold if comparison == ">=" else value <= threshold
    row["met"] = met and row.get("met", True)
    return row


def dump(document: dict) -> str:
    return json.dumps(document, separators=(",", ":"), default=str)
