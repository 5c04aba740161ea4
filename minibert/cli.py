"""Command line: ``python -m minibert [walkthrough | fill-mask | bench]``.

With no subcommand it runs the walkthrough: the seed notebook's steps, from a config to the hidden
states of three short sentences.
"""

from __future__ import annotations

import argparse
import sys

import torch

from .config import BertConfig
from .model import BertModel
from .tokenizer import BertTokenizer

DEFAULT_MODEL = "bert-base-cased"
# The seed notebook's three sentences, and the ids it fed the model for them when it skipped tokenizing.
SEED_SENTENCES = ["Hello!", "Cool.", "Nice!"]
SEED_SEQUENCES = [[101, 7592, 999, 102], [101, 4658, 1012, 102], [101, 3835, 999, 102]]


def load_or_random(name: str) -> tuple[BertModel, BertTokenizer | None]:
    """The pretrained model and its tokenizer; or, with a one-line notice, seeded random weights of
    bert-base-cased's shape and no tokenizer (the seed notebook's ids are used instead)."""
    try:
        model = BertModel.from_pretrained(name)
    except OSError as error:
        print(f"note: could not load {name}, so the numbers below come from seeded random weights of the same "
              f"shape and the seed notebook's token ids ({str(error).splitlines()[0]})")
        torch.manual_seed(0)
        return BertModel(BertConfig(vocab_size=28996)).eval(), None
    print(f"Loaded {name}: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters")
    try:
        return model, BertTokenizer.from_pretrained(name)
    except OSError as error:
        print(f"note: no tokenizer for {name} ({str(error).splitlines()[0]}); using the seed notebook's token ids")
        return model, None


def walkthrough(args: argparse.Namespace) -> int:
    """Text -> tokens -> ids -> hidden states, the seed notebook's steps."""
    config = BertConfig()
    print("A BERT-base configuration (transformers' defaults):")
    print(config)
    model, tokenizer = load_or_random(args.model)
    if tokenizer is not None:
        for sentence in SEED_SENTENCES:
            print(f"{sentence!r:10} -> tokens {tokenizer.tokenize(sentence)}")
        batch = tokenizer(SEED_SENTENCES, padding=True, return_tensors="pt")
    else:
        batch = {"input_ids": torch.tensor(SEED_SEQUENCES)}  # (batch=3, seq=4)
    print("input_ids:", batch["input_ids"].tolist())
    with torch.no_grad():
        output = model(**batch)
    print("last_hidden_state:", tuple(output.last_hidden_state.shape), "(batch, seq, hidden)")
    print(output.last_hidden_state)
    return 0


def fill_mask(args: argparse.Namespace) -> int:
    """Print the top-k tokens for each [MASK] in the text, with their probabilities."""
    from .auto import AutoModelForMaskedLM

    try:
        tokenizer = BertTokenizer.from_pretrained(args.model)
        model = AutoModelForMaskedLM.from_pretrained(args.model)
    except (OSError, ValueError) as error:
        print(f"error: cannot load {args.model}: {error}", file=sys.stderr)
        return 1
    input_ids = tokenizer(args.text, return_tensors="pt")["input_ids"]  # (1, seq)
    positions = (input_ids[0] == tokenizer.mask_token_id).nonzero().flatten().tolist()
    if not positions:
        print(f"error: the text has no {tokenizer.mask_token} to fill", file=sys.stderr)
        return 2
    with torch.no_grad():
        probs = model(input_ids).logits[0].softmax(-1)  # (seq, vocab)
    for position in positions:
        if len(positions) > 1:
            print(f"{tokenizer.mask_token} at token {position}:")
        top = probs[position].topk(min(args.top_k, probs.size(-1)))
        for score, token_id in zip(top.values.tolist(), top.indices.tolist()):
            filled = input_ids[0].clone()
            filled[position] = token_id
            sentence = tokenizer.decode(filled[1:-1])  # without [CLS] ... [SEP]
            print(f"{score:7.4f}  {tokenizer.convert_ids_to_tokens(token_id):<15} {sentence}")
    return 0


def bench(args: argparse.Namespace) -> int:
    """Run benchmarks/run.py (it lives in the source checkout, beside this package) with the given options."""
    import importlib.util
    from pathlib import Path

    runner = Path(__file__).resolve().parent.parent / "benchmarks" / "run.py"
    if not runner.is_file():
        print(f"error: {runner} not found; the benchmarks come with a source checkout of minibert", file=sys.stderr)
        return 2
    spec = importlib.util.spec_from_file_location("minibert_benchmarks_run", runner)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(args.options)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m minibert", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help="hub id or local directory (default: %(default)s)")
    parser.set_defaults(run=walkthrough)
    commands = parser.add_subparsers(title="commands")
    walk = commands.add_parser("walkthrough", help="config -> model -> hidden states (the default)")
    walk.add_argument("--model", default=DEFAULT_MODEL, help="hub id or local directory")
    walk.set_defaults(run=walkthrough)
    fill = commands.add_parser("fill-mask", help="the likeliest tokens for [MASK] (masked-LM head)")
    fill.add_argument("text", help='text with one or more [MASK], e.g. "Paris is the [MASK] of France."')
    fill.add_argument("--model", default=DEFAULT_MODEL, help="hub id or local directory (default: %(default)s)")
    fill.add_argument("--top-k", type=positive_int, default=5, help="tokens to show per mask (default: %(default)s)")
    fill.set_defaults(run=fill_mask)
    # Every option goes on to benchmarks/run.py (try: python -m minibert bench -h); "+" is a prefix
    # no option uses, so that argparse here leaves "--quick" and the rest alone.
    runner = commands.add_parser("bench", help="minibert against transformers: speed, memory, load time",
                                 add_help=False, prefix_chars="+")
    runner.add_argument("options", nargs=argparse.REMAINDER, help="options of benchmarks/run.py")
    runner.set_defaults(run=bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
