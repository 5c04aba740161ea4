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

DEFAULT_MODEL = "bert-base-cased"
# The seed notebook's three encoded sequences: "Hello!", "Cool.", "Nice!" as token ids.
SEED_SEQUENCES = [[101, 7592, 999, 102], [101, 4658, 1012, 102], [101, 3835, 999, 102]]


def load_or_random(name: str) -> BertModel:
    """The pretrained model, or (with a one-line notice) seeded random weights of bert-base-cased's shape."""
    try:
        model = BertModel.from_pretrained(name)
    except OSError as error:
        print(f"note: could not load {name}, so the numbers below come from seeded random weights of the same "
              f"shape ({str(error).splitlines()[0]})")
        torch.manual_seed(0)
        return BertModel(BertConfig(vocab_size=28996)).eval()
    print(f"Loaded {name}: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters")
    return model


def walkthrough(args: argparse.Namespace) -> int:
    config = BertConfig()
    print("A BERT-base configuration (transformers' defaults):")
    print(config)
    model = load_or_random(args.model)
    model_inputs = torch.tensor(SEED_SEQUENCES)  # (batch=3, seq=4)
    print("input_ids:", model_inputs.tolist())
    with torch.no_grad():
        output = model(model_inputs)
    print("last_hidden_state:", tuple(output.last_hidden_state.shape), "(batch, seq, hidden)")
    print(output.last_hidden_state)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m minibert", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help="hub id or local directory (default: %(default)s)")
    parser.set_defaults(run=walkthrough)
    commands = parser.add_subparsers(title="commands")
    walk = commands.add_parser("walkthrough", help="config -> model -> hidden states (the default)")
    walk.add_argument("--model", default=DEFAULT_MODEL, help="hub id or local directory")
    walk.set_defaults(run=walkthrough)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
