"""A tiny legacy checkpoint (tests/conftest.py's "tiny" config) with a small cased vocabulary, so that
the commands and the walkthroughs can run from text offline in well under a second per model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from conftest import TINY_CONFIGS, write_legacy_checkpoint

WORDS = ("Hello Cool Nice The quick brown fox jumps over the lazy dog BERT reads a sentence in both directions at "
         "once , so every token sees its left and right Short one cat sat on mat because it was tired Paris is "
         "capital of France").split()
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PUNCTUATION = ["!", ".", "?", ";", ":", "'"]
REVISION = "0123456789abcdef0123456789abcdef01234567"


def write_text_checkpoint(directory: Path, seed: int = 0) -> Path:
    """config.json + model.safetensors (bert-base-cased's names, random) + vocab.txt + tokenizer_config.json."""
    values = TINY_CONFIGS["tiny"]
    write_legacy_checkpoint(directory, values, seed=seed)
    tokens = SPECIAL + PUNCTUATION + sorted(set(WORDS))
    tokens += [f"[unused{index}]" for index in range(values["vocab_size"] - len(tokens))]
    assert len(tokens) == values["vocab_size"], len(tokens)
    (directory / "vocab.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    (directory / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False}), encoding="utf-8")
    return directory


def write_hub_cache(cache: Path, source: Path, repo: str = "bert-base-cased") -> Path:
    """``source``'s files laid out as huggingface_hub's cache of ``repo`` (as a download leaves them)."""
    root = cache / f"models--{repo.replace('/', '--')}"
    snapshot = root / "snapshots" / REVISION
    snapshot.mkdir(parents=True)
    for path in source.iterdir():
        shutil.copy(path, snapshot / path.name)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(REVISION)
    return cache
