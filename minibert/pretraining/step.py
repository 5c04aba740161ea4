"""One pretraining step and its parts: the run's settings, the learning-rate schedule, AdamW, the
rows of each step, and the bf16 probe. The loop that repeats the step is train.py.

Several processes (torchrun) split each global batch: every process collates the whole batch with
the same seed (so each knows the total number of masked tokens without asking), takes its share of
the rows, and sums its loss over that total; summing the gradients across processes then gives the
gradient of the whole batch, as one process would compute it.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..config import BertConfig
from ..heads import BertForMaskedLM
from .collator import IGNORE_INDEX, DataCollatorForLanguageModeling
from .sparse import sparse_masked_lm_loss


@dataclass
class Settings:
    """A run's options (the command line's, see cli/pretrain.py)."""

    layers: int = 2
    hidden: int = 128
    heads: int = 2
    seq_len: int = 64
    batch_size: int = 32
    accumulation: int = 1
    lr: float = 1e-3
    warmup: float = 0.06  # share of the run spent warming the learning rate up
    weight_decay: float = 0.01
    clip: float = 1.0
    minutes: float | None = 10.0
    steps: int | None = None
    eval_every: int = 0  # steps; 0: ten evaluations over the run
    checkpoint_every: int = 0  # steps; 0: at every evaluation
    precision: str = "auto"
    mlm_probability: float = 0.15
    threads: int = 0  # torch threads per process; 0: torch's count, or 1 if measured faster
    init_range: float | None = None  # std of the initial weights; None: hidden ** -0.5 (BERT's 0.02 stalls)
    seed: int = 0
    stop_after: int | None = None  # for tests: stop after this step's checkpoint, as if killed


def get_lr(progress: float, peak: float, warmup: float) -> float:
    """Linear warmup over the first ``warmup`` of the run, then linear decay to zero; progress in [0, 1]."""
    if progress < warmup:
        return peak * progress / warmup
    return peak * max(0.0, 1 - progress) / (1 - warmup)


def build_model(settings: Settings, vocab_size: int) -> BertForMaskedLM:
    config = BertConfig(vocab_size=vocab_size, hidden_size=settings.hidden, num_hidden_layers=settings.layers,
                        num_attention_heads=settings.heads, intermediate_size=4 * settings.hidden,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                        initializer_range=settings.init_range or settings.hidden ** -0.5)
    return BertForMaskedLM(config)


def adamw(model: torch.nn.Module, settings: Settings) -> torch.optim.AdamW:
    """AdamW with weight decay on the matrices only: not on biases and LayerNorm (the 1-d parameters)."""
    decayed = [parameter for parameter in model.parameters() if parameter.dim() >= 2]
    kept = [parameter for parameter in model.parameters() if parameter.dim() < 2]
    groups = [{"params": decayed, "weight_decay": settings.weight_decay}, {"params": kept, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=settings.lr, betas=(0.9, 0.98), eps=1e-6)


@functools.lru_cache(maxsize=2)
def epoch_order(rows: int, seed: int, epoch: int) -> list[int]:
    """The order of the training rows in one epoch: a fresh seeded permutation each epoch."""
    return torch.randperm(rows, generator=torch.Generator().manual_seed(seed * 1000 + epoch)).tolist()


def global_batch(rows: list[list[int]], step: int, batch_size: int, seed: int) -> list[list[int]]:
    """The rows of step ``step`` (counted from 0): a function of the step alone, so a resumed run reads
    the rows the unbroken one would have read."""
    batch = []
    for index in range(step * batch_size, (step + 1) * batch_size):
        epoch, position = divmod(index, len(rows))
        batch.append(rows[epoch_order(len(rows), seed, epoch)[position]])
    return batch


def autocast_context(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_step(model: BertForMaskedLM, optimizer: torch.optim.Optimizer, batch: dict[str, torch.Tensor],
               settings: Settings, lr: float, rank: int, world: int) -> tuple[float, int]:
    """One optimizer step on this process's share of a collated global batch; returns the batch's mean
    masked-token loss (over every process) and this process's real tokens."""
    device = next(model.parameters()).device
    masked_total = int((batch["labels"] != IGNORE_INDEX).sum())  # over the whole global batch
    share = len(batch["input_ids"]) // world
    rows = slice(rank * share, (rank + 1) * share)
    micro = share // settings.accumulation
    loss_sum, tokens = torch.zeros((), device=device), 0
    for start in range(rows.start, rows.stop, micro):
        part = {name: tensor[start:start + micro].to(device) for name, tensor in batch.items()}
        with autocast_context(settings.precision, device):
            loss = sparse_masked_lm_loss(model, part["input_ids"], part["attention_mask"], part["labels"],
                                         reduction="sum") / max(masked_total, 1)
        loss.backward()
        loss_sum += loss.detach()
        tokens += int(part["attention_mask"].sum())
    if world > 1:  # sum the gradients (and the loss) over the processes: the whole batch's
        gradients = [parameter.grad for parameter in model.parameters() if parameter.grad is not None]
        flat = torch.cat([gradient.flatten() for gradient in gradients] + [loss_sum.view(1)])  # (parameters + 1,)
        dist.all_reduce(flat)
        offset = 0
        for gradient in gradients:
            gradient.copy_(flat[offset:offset + gradient.numel()].view_as(gradient))
            offset += gradient.numel()
        loss_sum = flat[-1]
    torch.nn.utils.clip_grad_norm_(model.parameters(), settings.clip)
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss_sum), tokens


def collate(collator: DataCollatorForLanguageModeling, rows: list[list[int]], seed: int, step: int) -> dict:
    """Mask step ``step``'s rows with a generator seeded by the step: the masks depend on nothing else,
    so a resumed run draws the same ones."""
    collator.generator = torch.Generator().manual_seed(seed * 1_000_003 + step)
    return collator([{"input_ids": row} for row in rows])


def step_seconds(model: BertForMaskedLM, batch: dict[str, torch.Tensor], precision: str) -> float:
    """Seconds of one forward and backward pass on ``batch`` (the gradients are left for the caller)."""
    device = next(model.parameters()).device
    start = time.perf_counter()
    with autocast_context(precision, device):
        sparse_masked_lm_loss(model, batch["input_ids"].to(device), batch["attention_mask"].to(device),
                              batch["labels"].to(device)).backward()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def speedup(model: BertForMaskedLM, batch: dict[str, torch.Tensor], settings: dict[str, dict], repeats: int = 3) -> float:
    """How many times faster the second of two settings runs a forward and backward pass than the first,
    best of ``repeats``, the two alternated (the machine may be busy). A setting: {"precision": "fp32"
    or "bf16", "threads": torch threads}. Gradients are cleared after; with dropout on, the passes use
    up torch's RNG, so seed after calling this."""
    best = {name: math.inf for name in settings}
    threads = torch.get_num_threads()
    for _ in range(repeats):
        for name, setting in settings.items():
            torch.set_num_threads(setting.get("threads", threads))
            best[name] = min(best[name], step_seconds(model, batch, setting.get("precision", "fp32")))
    torch.set_num_threads(threads)
    model.zero_grad(set_to_none=True)
    first, second = best.values()
    return first / second
