"""``python -m minibert pretrain``: train a BERT from scratch on the standard library's docstrings.

The options, their checks (each bad value is one line and exit status 2, through cli/main.py), and
the corpus and vocabulary; the loop itself is minibert/pretraining/train.py. Under torchrun the same
command splits each batch across the processes.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import torch

from ..pretraining import corpus
from .arguments import positive_float, positive_int
from ..pretraining.data import default_cache_dir, load_or_train_tokenizer, tokenized_corpus
from ..pretraining.step import Settings
from ..pretraining.train import pretrain

DEFAULTS = Settings()


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register ``pretrain`` and its options."""
    run = commands.add_parser("pretrain", help="train a BERT from scratch on Python's docstrings (masked LM)",
                              description=__doc__.splitlines()[0])
    shape = run.add_argument_group("model")
    shape.add_argument("--layers", type=positive_int, default=DEFAULTS.layers, help="encoder layers (%(default)s)")
    shape.add_argument("--hidden", type=positive_int, default=DEFAULTS.hidden, help="width (%(default)s)")
    shape.add_argument("--heads", type=positive_int, default=DEFAULTS.heads, help="attention heads (%(default)s)")
    shape.add_argument("--init-range", type=positive_float, help="std of the initial weights (default: "
                       "hidden ** -0.5, 0.088 at 128 wide; BERT's 0.02 sits on the unigram plateau far longer)")
    shape.add_argument("--vocab-size", type=positive_int, default=8000,
                       help="WordPiece vocabulary trained on the corpus (%(default)s); ignored with --tokenizer")
    shape.add_argument("--tokenizer", metavar="DIR", help="use this tokenizer (a folder with vocab.txt) instead")
    data = run.add_argument_group("data and schedule")
    data.add_argument("--seq-len", type=positive_int, default=DEFAULTS.seq_len, help="tokens per row (%(default)s)")
    data.add_argument("--batch-size", type=positive_int, default=DEFAULTS.batch_size,
                      help="rows per optimizer step, over all processes (%(default)s)")
    data.add_argument("--accumulation", type=positive_int, default=DEFAULTS.accumulation,
                      help="micro-batches per step and process (%(default)s)")
    data.add_argument("--lr", type=positive_float, default=DEFAULTS.lr, help="peak learning rate (%(default)s)")
    data.add_argument("--warmup", type=float, default=DEFAULTS.warmup, help="share of the run warming up (%(default)s)")
    data.add_argument("--weight-decay", type=float, default=DEFAULTS.weight_decay, help="(%(default)s)")
    data.add_argument("--clip", type=positive_float, default=DEFAULTS.clip, help="gradient-norm clip (%(default)s)")
    data.add_argument("--minutes", type=positive_float, help=f"training time (default {DEFAULTS.minutes:g} without --steps)")
    data.add_argument("--steps", type=positive_int, help="optimizer steps (with --minutes: whichever ends first)")
    data.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                      help="bf16 autocast or float32; auto measures which is faster here (default)")
    data.add_argument("--threads", type=positive_int, help="torch threads per process (default: torch's count, "
                                                           "or 1 when a probe measures it faster, as on a busy machine)")
    data.add_argument("--mlm-probability", type=positive_float, default=DEFAULTS.mlm_probability,
                      help="share of the tokens masked (%(default)s)")
    data.add_argument("--seed", type=int, default=0)
    data.add_argument("--corpus", metavar="FILE", help="train on this text instead, one paragraph per line")
    out = run.add_argument_group("output")
    out.add_argument("--output", "-o", default="pretrained-bert", help="folder for the model, checkpoint and "
                                                                        "loss curve (%(default)s)")
    out.add_argument("--json", metavar="PATH", help="write the summary as JSON")
    out.add_argument("--resume", action="store_true", help="continue from --output's checkpoint.pt")
    out.add_argument("--eval-every", type=positive_int, default=0, help="steps between evaluations "
                                                                         "(default: ten over the run)")
    out.add_argument("--checkpoint-every", type=positive_int, default=0, help="steps between checkpoints "
                                                                               "(default: at each evaluation)")
    out.add_argument("--cache-dir", default=str(default_cache_dir()), help="tokenized corpus cache (%(default)s)")
    out.add_argument("--stop-after", type=positive_int, help=argparse.SUPPRESS)  # tests: stop as if killed
    run.set_defaults(run=pretrain_command)


def pretrain_command(args: argparse.Namespace) -> int:
    output = Path(args.output)
    if args.threads:
        torch.set_num_threads(args.threads)
    if os.environ.get("WORLD_SIZE", "1") != "1" and not args.threads:
        torch.set_num_threads(max(1, torch.get_num_threads() // int(os.environ["WORLD_SIZE"])))  # cores shared out
    check_writable(output)
    if args.resume and args.tokenizer is None and (output / "vocab.txt").exists():
        args.tokenizer = str(output)  # the vocabulary the checkpoint was trained with
    if args.seq_len > 512:
        raise ValueError(f"--seq-len {args.seq_len} is over max_position_embeddings (512)")
    texts = None  # --corpus: one paragraph per line, split as the docstring corpus is
    if args.corpus is not None:
        lines = Path(args.corpus).read_text(encoding="utf-8").splitlines()
        texts = corpus.split_corpus([line.strip() for line in lines if line.strip()])
    tokenizer = load_or_train_tokenizer(args.tokenizer, args.vocab_size, Path(args.cache_dir),
                                        None if texts is None else texts[0])
    if texts is not None:
        splits = {name: [tokenizer.encode_text(text) for text in part] for name, part in zip(("train", "held_out"), texts)}
    else:
        splits = tokenized_corpus(tokenizer, Path(args.cache_dir))
    if not splits["held_out"]:
        raise ValueError("the corpus has no held-out paragraphs (one in 20, chosen by checksum): give more text")
    minutes = args.minutes if args.minutes or args.steps else DEFAULTS.minutes
    settings = Settings(layers=args.layers, hidden=args.hidden, heads=args.heads, seq_len=args.seq_len,
                        batch_size=args.batch_size, accumulation=args.accumulation, lr=args.lr, warmup=args.warmup,
                        weight_decay=args.weight_decay, clip=args.clip, minutes=minutes, steps=args.steps,
                        eval_every=args.eval_every, checkpoint_every=args.checkpoint_every,
                        precision=args.precision, seed=args.seed, mlm_probability=args.mlm_probability,
                        init_range=args.init_range, threads=args.threads or 0, stop_after=args.stop_after)
    if args.hidden % args.heads:
        raise ValueError(f"--hidden {args.hidden} is not a multiple of --heads {args.heads}")
    if not args.resume and os.environ.get("RANK", "0") == "0":
        tokenizer.save_pretrained(output)  # a resumed run reads the same vocabulary from here
    try:
        summary = pretrain(settings, tokenizer, splits["train"], splits["held_out"], output,
                           Path(args.json) if args.json else None, resume=args.resume)
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()  # torchrun: leave the process group cleanly
    if summary is not None:
        print(f"held-out accuracy {100 * summary['heldout_accuracy']:.1f}% (unigram baseline "
              f"{100 * summary['unigram_accuracy']:.1f}%), {summary['tokens_per_second']:.0f} tokens/s; saved to {output}")
    return 0


def check_writable(output: Path) -> None:
    """Fail now, not after ten minutes of training, when --output cannot be written."""
    try:
        output.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=output):
            pass
    except OSError as error:
        raise OSError(f"cannot write to the output folder {output}: {error.strerror or error}") from None

