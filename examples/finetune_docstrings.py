"""Fine-tune all-MiniLM-L6-v2 to tell which standard-library package a docstring paragraph comes from.

The labelled text ships with Python itself: every paragraph of the docstrings of asyncio, email,
logging, statistics and xml (and their submodules), labelled with its package. Held-out paragraphs
are chosen by a checksum of their text, so the split is the same on every run.

    python examples/finetune_docstrings.py              # about 3 minutes on 2 CPU cores
    python examples/finetune_docstrings.py --quick      # a smoke run: a few steps, under a minute
    python examples/finetune_docstrings.py --int8       # also: held-out accuracy with int8 linear layers
    torchrun --nproc-per-node 2 examples/finetune_docstrings.py   # data-parallel (DDP), see README

It prints held-out accuracy before and after, saves the model with save_pretrained, and reloads
the saved directory with transformers (when installed) to check that the logits agree.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import inspect
import os
import pkgutil
import re
import sys
import time
import zlib
from pathlib import Path

import torch
from tqdm.auto import tqdm

from minibert import BertForSequenceClassification, quantize
from minibert.tokenizer import BertTokenizer

PACKAGES = ("asyncio", "email", "logging", "statistics", "xml")
REPO = Path(__file__).resolve().parent.parent
LOCAL_MINILM = Path(os.environ.get("MINIBERT_MINILM_DIR", REPO / ".cache" / "all-MiniLM-L6-v2"))
HUB_MINILM = "sentence-transformers/all-MiniLM-L6-v2"


# ---- the data: docstring paragraphs, labelled with their package -------------------------------


def package_modules(name: str) -> list:
    """The package and its importable submodules (tests and __main__ left out)."""
    package = importlib.import_module(name)
    modules = [package]
    for info in pkgutil.walk_packages(getattr(package, "__path__", []), name + "."):
        if "test" in info.name or info.name.endswith("__main__"):
            continue
        with contextlib.suppress(Exception):  # a submodule needing an optional C extension
            modules.append(importlib.import_module(info.name))
    return modules


def docstring_paragraphs(name: str, min_words: int = 8) -> list[str]:
    """Every paragraph (blank-line separated, whitespace folded) of at least ``min_words`` words in the
    docstrings of a package's modules, classes, functions and methods, sorted."""
    paragraphs = set()
    for module in package_modules(name):
        documented = [module]
        for _, member in inspect.getmembers(module, lambda obj: inspect.isclass(obj) or inspect.isfunction(obj)):
            if getattr(member, "__module__", None) != module.__name__:
                continue  # imported from elsewhere: labelled where it is defined
            documented.append(member)
            if inspect.isclass(member):
                documented += [method for method in vars(member).values() if inspect.isfunction(method)]
        for obj in documented:
            if isinstance(obj.__doc__, str):
                for paragraph in re.split(r"\n\s*\n", inspect.cleandoc(obj.__doc__)):
                    paragraph = " ".join(paragraph.split())
                    if len(paragraph.split()) >= min_words:
                        paragraphs.add(paragraph)
    return sorted(paragraphs)


def split_dataset(train_per_label: int, test_per_label: int) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """(text, label) pairs: one paragraph in five is held out, chosen by CRC-32 (stable across runs);
    each label keeps at most ``*_per_label`` paragraphs, taken in checksum order."""
    train, test = [], []
    for label, name in enumerate(PACKAGES):
        paragraphs = sorted(docstring_paragraphs(name), key=lambda text: zlib.crc32(text.encode()))
        held_out = [text for text in paragraphs if zlib.crc32(text.encode()) % 5 == 0]
        rest = [text for text in paragraphs if zlib.crc32(text.encode()) % 5 != 0]
        train += [(text, label) for text in rest[:train_per_label]]
        test += [(text, label) for text in held_out[:test_per_label]]
    return train, test


# ---- training ----------------------------------------------------------------------------------


def batches(examples: list[tuple[str, int]], size: int):
    for start in range(0, len(examples), size):
        chunk = examples[start:start + size]
        yield [text for text, _ in chunk], torch.tensor([label for _, label in chunk])


def encode(tokenizer: BertTokenizer, texts: list[str], max_length: int, device: torch.device) -> dict:
    encoded = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    return {name: tensor.to(device) for name, tensor in encoded.items()}


@torch.no_grad()
def accuracy(model: torch.nn.Module, tokenizer: BertTokenizer, examples: list, args, device: torch.device) -> float:
    model.eval()
    correct = 0
    for texts, labels in batches(examples, args.batch_size * 2):
        logits = model(**encode(tokenizer, texts, args.max_length, device)).logits
        correct += int((logits.argmax(-1).cpu() == labels).sum())
    return correct / len(examples)


def autocast(args, device: torch.device):
    """bf16/fp16 autocast (fp16 on GPU only), or nothing for fp32."""
    if args.precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if args.precision == "bf16" else torch.float16)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(LOCAL_MINILM) if LOCAL_MINILM.is_dir() else HUB_MINILM,
                        help="a BERT directory or hub id with vocab.txt (default: %(default)s)")
    parser.add_argument("--output", default="minilm-docstrings", help="where save_pretrained writes (%(default)s)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16, help="the global batch, split across DDP processes")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--max-length", type=int, default=64, help="tokens per paragraph after truncation")
    parser.add_argument("--train-per-label", type=int, default=80)
    parser.add_argument("--test-per-label", type=int, default=24)
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32",
                        help="torch.autocast dtype (bf16 works on CPU; fp16 needs a GPU)")
    parser.add_argument("--gradient-checkpointing", action="store_true", help="recompute activations in backward")
    parser.add_argument("--int8", action="store_true",
                        help="after saving, quantize a copy (minibert.quantize, CPU) and report its held-out accuracy")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a smoke run: tiny data, a few steps")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.train_per_label, args.test_per_label, args.max_length = 1, 4, 4, 32
        args.batch_size = min(args.batch_size, 8)

    # torchrun sets WORLD_SIZE, RANK and LOCAL_RANK; a plain `python` run is one process.
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank = torch.distributed.get_rank() if distributed else 0
    world = torch.distributed.get_world_size() if distributed else 1
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    say = tqdm.write if rank == 0 else (lambda text: None)  # tqdm.write: lines above the progress bar
    torch.manual_seed(args.seed)

    started = time.perf_counter()
    train, test = split_dataset(args.train_per_label, args.test_per_label)
    say(f"data: {len(train)} training and {len(test)} held-out paragraphs from the docstrings of {', '.join(PACKAGES)}")
    tokenizer = BertTokenizer.from_pretrained(args.model)
    model = BertForSequenceClassification.from_pretrained(
        args.model, num_labels=len(PACKAGES), id2label=dict(enumerate(PACKAGES))).to(device)
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    say(f"accuracy before fine-tuning: {accuracy(model, tokenizer, test, args, device):.1%} "
        f"(chance: {1 / len(PACKAGES):.0%})")

    trained = torch.nn.parallel.DistributedDataParallel(model) if distributed else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    steps = args.epochs * -(-len(train) // args.batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / steps)  # linear decay to 0
    scaler = torch.amp.GradScaler(device.type, enabled=args.precision == "fp16")
    order = torch.Generator().manual_seed(args.seed)  # the same shuffle in every process
    progress = tqdm(total=steps, desc="fine-tuning", disable=rank != 0, file=sys.stdout)
    for epoch in range(args.epochs):
        shuffled = [train[index] for index in torch.randperm(len(train), generator=order).tolist()]
        losses = []
        for texts, labels in batches(shuffled, args.batch_size):
            texts, labels = texts[rank::world], labels[rank::world]  # this process's share of the batch
            trained.train()
            with autocast(args, device):
                loss = trained(**encode(tokenizer, texts, args.max_length, device), labels=labels.to(device)).loss
            scaler.scale(loss).backward()  # DDP averages the gradients across processes here
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            schedule.step()
            losses.append(loss.item())
            progress.update()
            progress.set_postfix(epoch=epoch + 1, loss=f"{losses[-1]:.3f}")
        say(f"epoch {epoch + 1}: mean training loss {sum(losses) / len(losses):.3f}")
    progress.close()
    say(f"accuracy after fine-tuning: {accuracy(model, tokenizer, test, args, device):.1%}")

    if rank == 0:
        saved = model.save_pretrained(args.output)
        tokenizer.save_pretrained(saved)
        say(f"saved to {saved}/ in {time.perf_counter() - started:.0f} s")
        check_with_transformers(model, tokenizer, saved, test, args, device)
        if args.int8:
            evaluate_int8(saved, tokenizer, test, args)
    if distributed:
        torch.distributed.destroy_process_group()
    return 0


def evaluate_int8(saved: Path, tokenizer: BertTokenizer, test: list, args) -> None:
    """The saved classifier reloaded on the CPU, in float32 and with int8 linear layers: held-out accuracy
    of each. (Quantized after saving: a quantized model cannot be saved.)"""
    float32 = BertForSequenceClassification.from_pretrained(saved)
    int8 = quantize(BertForSequenceClassification.from_pretrained(saved), "int8")
    cpu = torch.device("cpu")
    print(f"held-out accuracy: float32 {accuracy(float32, tokenizer, test, args, cpu):.1%}, "
          f"int8 {accuracy(int8, tokenizer, test, args, cpu):.1%} (minibert.quantize, {len(test)} paragraphs)")


def check_with_transformers(model, tokenizer, saved: Path, test: list, args, device: torch.device) -> None:
    """Reload the saved directory with transformers and compare logits on held-out paragraphs."""
    try:
        import transformers
    except ImportError:
        print("transformers is not installed: skipping the reload check")
        return
    theirs = transformers.AutoModelForSequenceClassification.from_pretrained(str(saved)).to(device).eval()
    texts = [text for text, _ in test[:8]]
    inputs = encode(tokenizer, texts, args.max_length, device)
    with torch.no_grad():
        difference = (model.eval()(**inputs).logits - theirs(**inputs).logits).abs().max().item()
    print(f"transformers.{type(theirs).__name__} reloads {saved}/: max |logit difference| {difference:.1e}")
    if difference > 1e-4:
        raise SystemExit("the reloaded model disagrees with the fine-tuned one")


if __name__ == "__main__":
    sys.exit(main())
