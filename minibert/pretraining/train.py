"""The pretraining loop: masked-LM from scratch, in one readable function (``pretrain``).

nanoGPT's shape: the schedule (``get_lr``: warmup, then linear decay), an evaluation on the held-out
split at intervals, and a checkpoint dict (model, optimizer, step, RNG state) from which ``resume``
continues bit for bit. The schedule is a function of the step (with ``steps``) or of the training
time (with ``minutes``), so the step and the clock are the scheduler's whole state.

What makes it fast on a CPU: packed rows (almost no padding, and the unpadded encoder skips the
rest), the head at the masked positions only (sparse.py), no dropout (Cramming), a high peak
learning rate, and bf16 autocast only when a probe shows it pays on this machine.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
from tqdm import tqdm

from ..config import BertConfig
from ..heads import BertForMaskedLM
from ..loading.atomic import save_files
from ..tokenizer import BertTokenizer
from .collator import DataCollatorForLanguageModeling
from .data import most_frequent_token, pack
from .evaluation import evaluate, fill_mask_table, held_out_batches, plot_history
from .step import (Settings, adamw, autocast_context, build_model, collate, get_lr, global_batch, speedup,
                   train_step)

EVALUATIONS_PER_RUN = 10


def pretrain(settings: Settings, tokenizer: BertTokenizer, train_paragraphs: list[list[int]],
             held_out_paragraphs: list[list[int]], output: Path, json_path: Path | None = None,
             resume: bool = False, log: Callable[[str], None] = tqdm.write) -> dict | None:
    """Train a BertForMaskedLM from scratch and save it (with the tokenizer) in ``output``; return the
    JSON summary (None when ``stop_after`` stopped the run). Paragraphs: token ids without specials."""
    rank, world = distributed_world()
    log = log if rank == 0 else (lambda line: None)
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu")
    if settings.batch_size % (world * settings.accumulation):
        raise ValueError(f"--batch-size {settings.batch_size} does not split into {world} processes x "
                         f"{settings.accumulation} accumulation steps")
    shuffled = list(train_paragraphs)
    random.Random(settings.seed).shuffle(shuffled)  # neighbours in a packed row: unrelated paragraphs
    rows = pack(shuffled, settings.seq_len, tokenizer.cls_token_id, tokenizer.sep_token_id)
    if len(rows) < settings.batch_size:
        raise ValueError(f"the corpus is too small for the batch: {len(rows)} rows of up to {settings.seq_len} "
                         f"tokens, fewer than --batch-size {settings.batch_size}")
    collator = DataCollatorForLanguageModeling(tokenizer, settings.mlm_probability, seed=settings.seed)
    held_out_rows = pack(held_out_paragraphs, settings.seq_len, tokenizer.cls_token_id, tokenizer.sep_token_id)
    held_out = held_out_batches(held_out_rows, DataCollatorForLanguageModeling(tokenizer), 64,  # 15% masked, always
                                most_frequent_token(train_paragraphs, len(tokenizer)))

    checkpoint = load_checkpoint(output) if resume else None
    torch.manual_seed(settings.seed)
    model = (BertForMaskedLM(BertConfig.from_dict(checkpoint["config"])) if checkpoint else
             build_model(settings, len(tokenizer))).to(device).train()
    optimizer = adamw(model, settings)
    state = {"step": 0, "tokens": 0, "train_seconds": 0.0, "history": []}
    if checkpoint:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        torch.set_rng_state(checkpoint["torch_rng"])
        state = {name: checkpoint[name] for name in state}
        settings.precision = checkpoint["precision"]
        log(f"resumed from {output / 'checkpoint.pt'} at step {state['step']}")
    probe = collate(collator, rows[: settings.batch_size // world], settings.seed, 10**9)  # a batch for timing
    threads = choose_threads(model, probe) if settings.threads == 0 and device.type == "cpu" else \
        f"{torch.get_num_threads()} thread(s)"
    why = "as asked"
    if settings.precision == "auto" and not checkpoint:
        settings.precision, why = choose_precision(model, probe, device)
    torch.manual_seed(settings.seed)
    parameters = sum(parameter.numel() for parameter in model.parameters())
    log(f"pretraining a {model.config.num_hidden_layers}-layer, {model.config.hidden_size}-wide BERT "
        f"({model.config.num_attention_heads} heads, {parameters / 1e6:.1f}M parameters, vocabulary {len(tokenizer)}) "
        f"on {len(rows)} rows of up to {settings.seq_len} tokens; batch {settings.batch_size} = {world} process(es) x "
        f"{settings.accumulation} accumulation step(s); {settings.precision}"
        + ("" if checkpoint else f" ({why})") + f"; {threads}; device {device}")

    eval_every = settings.eval_every or max(1, (settings.steps or 0) // EVALUATIONS_PER_RUN)
    eval_seconds = 60 * (settings.minutes or math.inf) / EVALUATIONS_PER_RUN
    next_eval_time = (int(state["train_seconds"] / eval_seconds) + 1) * eval_seconds
    bar = tqdm(total=settings.steps, initial=state["step"], disable=rank != 0, unit="step", dynamic_ncols=True)
    while (progress := progress_of(settings, state["step"], state["train_seconds"])) < 1:
        lr = get_lr(progress, settings.lr, settings.warmup)
        start = time.perf_counter()
        batch = collate(collator, global_batch(rows, state["step"], settings.batch_size, settings.seed),
                        settings.seed, state["step"])
        loss, _ = train_step(model, optimizer, batch, settings, lr, rank, world)
        state["train_seconds"] += agreed_seconds(time.perf_counter() - start, world)
        state["step"] += 1
        state["tokens"] += int(batch["attention_mask"].sum())  # the real tokens of the global batch
        bar.update()
        bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}", tokens_per_s=f"{state['tokens'] / state['train_seconds']:.0f}")
        state["history"].append({"step": state["step"], "tokens": state["tokens"], "train_loss": loss})
        evaluating = (should(eval_every, state["step"]) if settings.eval_every or settings.steps
                      else state["train_seconds"] >= next_eval_time)
        if evaluating:
            next_eval_time += eval_seconds
            log(record_evaluation(model, held_out, settings, state, device))
        if rank == 0 and (should(settings.checkpoint_every, state["step"]) or (evaluating and not settings.checkpoint_every)):
            save_checkpoint(output, model, optimizer, dict(state, precision=settings.precision))
        if settings.stop_after == state["step"]:
            bar.close()
            return None
    bar.close()
    if "heldout_loss" not in state["history"][-1]:  # unless the last step was just evaluated
        log(record_evaluation(model, held_out, settings, state, device))
    summary = summary_of(settings, state, world)
    if rank == 0:
        save_checkpoint(output, model, optimizer, dict(state, precision=settings.precision))
        log("fill-mask on sentences in the corpus's style (top 3, probabilities):\n" + fill_mask_table(model, tokenizer))
        model.save_pretrained(output)
        tokenizer.save_pretrained(output)
        note = plot_history(state["history"], output / "loss_curve.png")
        log(note or f"loss curve: {output / 'loss_curve.png'}")
        if json_path is not None:
            text = json.dumps(summary, indent=2) + "\n"
            save_files(json_path.parent, {json_path.name: lambda target: target.write_text(text)})
    return summary


def choose_precision(model: BertForMaskedLM, batch: dict, device: torch.device) -> tuple[str, str]:
    """("bf16" or "fp32", why): bf16 autocast when it runs at least 25% faster here, measured."""
    if device.type == "cuda":
        return ("bf16", "the GPU supports it") if torch.cuda.is_bf16_supported() else ("fp32", "no bf16 on this GPU")
    gain = agreed(speedup(model, batch, {"fp32": {"precision": "fp32"}, "bf16": {"precision": "bf16"}}))
    # bf16 rounds every activation: worth it only when clearly faster (the probe is noisy on a busy machine)
    return ("bf16" if gain >= 1.25 else "fp32"), f"bf16 autocast measured at {gain:.2f}x float32's speed here"


def choose_threads(model: BertForMaskedLM, batch: dict) -> str:
    """Keep torch's thread count, or one thread when that runs at least 10% faster (on a busy machine
    threads that wait for each other can cost several times over); returns the log's words."""
    threads = torch.get_num_threads()
    if threads == 1:
        return "1 thread"
    gain = agreed(speedup(model, batch, {"many": {"threads": threads}, "one": {"threads": 1}}))
    if gain >= 1.1:
        torch.set_num_threads(1)
        return f"1 thread (measured {gain:.2f}x faster than {threads} here)"
    return f"{threads} threads (1 thread measured at {gain:.2f}x)"


def agreed(value: float) -> float:
    """Rank 0's measurement, in every process, so that all choose alike."""
    if not dist.is_initialized():
        return value
    shared = torch.tensor([value], dtype=torch.float64)
    dist.broadcast(shared, 0)
    return float(shared)


def record_evaluation(model: BertForMaskedLM, held_out, settings: Settings, state: dict, device: torch.device) -> str:
    """Evaluate on the held-out split, add the result to the history, and return a log line."""
    result = evaluate(model, held_out, autocast_context(settings.precision, device))
    state["history"].append({"step": state["step"], "tokens": state["tokens"], "heldout_loss": result["loss"],
                             "heldout_accuracy": result["accuracy"], "unigram_accuracy": result["unigram_accuracy"]})
    return (f"step {state['step']}: held-out loss {result['loss']:.3f}, accuracy {100 * result['accuracy']:.1f}% "
            f"(unigram baseline {100 * result['unigram_accuracy']:.1f}%), {state['tokens'] / 1e6:.2f}M tokens, "
            f"{state['train_seconds'] / 60:.1f} min")


def progress_of(settings: Settings, step: int, seconds: float) -> float:
    """How far the run is, in [0, 1]: by steps, by training time, or whichever ends first."""
    parts = [step / settings.steps if settings.steps else 0.0,
             seconds / (60 * settings.minutes) if settings.minutes else 0.0]
    return min(1.0, max(parts))


def should(every: int, step: int) -> bool:
    return every > 0 and step % every == 0


def agreed_seconds(seconds: float, world: int) -> float:
    """The slowest process's time for the step, so that every process's clock (and schedule) agree."""
    if world == 1:
        return seconds
    shared = torch.tensor([seconds], dtype=torch.float64)
    dist.all_reduce(shared, op=dist.ReduceOp.MAX)
    return float(shared)


def save_checkpoint(directory: Path, model: BertForMaskedLM, optimizer: torch.optim.Optimizer, state: dict) -> None:
    """checkpoint.pt: model, optimizer, run state (step, tokens, time, history, precision), RNG state; atomically."""
    checkpoint = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "config": model.config.to_dict(),
                  "torch_rng": torch.get_rng_state(), **state}
    save_files(directory, {"checkpoint.pt": lambda target: torch.save(checkpoint, target)})


def load_checkpoint(directory: Path) -> dict:
    path = directory / "checkpoint.pt"
    if not path.exists():
        raise OSError(f"--resume: there is no checkpoint.pt in {directory}")
    return torch.load(path, weights_only=False)


def distributed_world() -> tuple[int, int]:
    """(rank, world size): from torchrun's environment, joining the process group; (0, 1) alone."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world


def summary_of(settings: Settings, state: dict, world: int) -> dict:
    """The --json summary; tokens_per_second counts real tokens over training-step time (no evaluation)."""
    final = state["history"][-1]
    seconds = state["train_seconds"]
    return {"heldout_accuracy": final["heldout_accuracy"], "unigram_accuracy": final["unigram_accuracy"],
            "heldout_loss": final["heldout_loss"], "steps": state["step"], "tokens": state["tokens"],
            "tokens_per_second": state["tokens"] / seconds if seconds else None, "train_minutes": seconds / 60,
            "batch_size": settings.batch_size, "seq_len": settings.seq_len, "processes": world,
            "settings": asdict(settings),
            "evaluations": [entry for entry in state["history"] if "heldout_loss" in entry]}
