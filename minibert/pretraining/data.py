"""The corpus as training rows: the vocabulary, the tokenized paragraphs (cached), and the packing.

Tokenizing 13,500 paragraphs takes a while in pure Python, so the token ids are cached in one file
named by a hash of everything they depend on: the vocabulary and the tokenizer's settings, the
Python version (its standard library is the corpus) and the corpus's own rules. A second run reads
them at once. The file is written all or nothing (loading/atomic.py): a killed run leaves no half cache.

Packing: each row is [CLS] paragraph [SEP] paragraph [SEP] ... up to seq_len tokens, whole paragraphs
only (one longer than a row is cut), so rows are nearly full and the little padding left at their
ends is skipped by the unpadded encoder. Attention crosses the [SEP]s, as in RoBERTa's packed rows.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import sys
from pathlib import Path

import torch

from ..loading.atomic import save_files
from ..tokenizer import BertTokenizer
from . import corpus

CACHE_FORMAT = 1  # bump when the cached file's layout changes


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "minibert" / "pretraining"


def corpus_key(tokenizer: BertTokenizer) -> str:
    """A hash of what the token ids depend on: vocabulary, tokenizer settings, Python, corpus rules."""
    digest = hashlib.sha256()
    settings = dict(lower=tokenizer.do_lower_case, accents=tokenizer.strip_accents,
                    chinese=tokenizer.tokenize_chinese_chars, python=sys.version, format=CACHE_FORMAT)
    digest.update(json.dumps(settings, sort_keys=True).encode())
    digest.update("\n".join(tokenizer.id_to_token).encode())
    digest.update(inspect.getsource(corpus).encode())
    return digest.hexdigest()[:16]


def tokenized_corpus(tokenizer: BertTokenizer, cache_dir: Path | None = None) -> dict[str, list[list[int]]]:
    """{"train": [ids of each paragraph], "held_out": [...]}, without special tokens; from the cache
    when there, else tokenized and cached."""
    cache_dir = default_cache_dir() if cache_dir is None else Path(cache_dir)
    path = cache_dir / f"corpus-{corpus_key(tokenizer)}.pt"
    if path.exists():
        stored = torch.load(path)
        return {split: _split_rows(*stored[split]) for split in ("train", "held_out")}
    train, held_out = corpus.split_corpus(corpus.docstring_paragraphs())
    splits = {"train": [tokenizer.encode_text(text) for text in train],
              "held_out": [tokenizer.encode_text(text) for text in held_out]}
    stored = {split: _join_rows(rows) for split, rows in splits.items()}
    save_files(cache_dir, {path.name: lambda target: torch.save(stored, target)})
    return splits


def pack(paragraphs: list[list[int]], seq_len: int, cls_id: int, sep_id: int) -> list[list[int]]:
    """Paragraph ids -> rows of at most seq_len ids: [CLS] p1 [SEP] p2 [SEP] ..., paragraphs in order."""
    if seq_len < 3:
        raise ValueError(f"seq_len must be at least 3 ([CLS], a token, [SEP]), got {seq_len}")
    rows, row = [], [cls_id]
    for paragraph in paragraphs:
        piece = paragraph[: seq_len - 2] + [sep_id]
        if len(row) + len(piece) > seq_len:
            rows.append(row)
            row = [cls_id]
        row += piece
    if len(row) > 1:
        rows.append(row)
    return rows


def most_frequent_token(paragraphs: list[list[int]], vocab_size: int) -> int:
    """The unigram baseline's one prediction: the commonest token of the training paragraphs."""
    counts = torch.bincount(torch.tensor([token for paragraph in paragraphs for token in paragraph]),
                            minlength=vocab_size)
    return int(counts.argmax())


SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def load_or_train_tokenizer(path: str | None, vocab_size: int, cache_dir: Path | None = None,
                            paragraphs: list[str] | None = None) -> BertTokenizer:
    """The tokenizer at ``path``; without one, an uncased WordPiece vocabulary of ``vocab_size`` tokens
    trained (BertTokenizer.train_new_from_iterator) on ``paragraphs`` (default: the docstring corpus's
    training split) and cached, keyed by a hash of the texts and the size."""
    if path is not None:
        return BertTokenizer.from_pretrained(path)
    if paragraphs is None:
        paragraphs, _ = corpus.split_corpus(corpus.docstring_paragraphs())
    cache_dir = default_cache_dir() if cache_dir is None else Path(cache_dir)
    key = hashlib.sha256("\n".join([str(vocab_size), *paragraphs]).encode()).hexdigest()[:16]
    directory = cache_dir / f"vocab-{vocab_size}-{key}"
    if (directory / "vocab.txt").exists():
        return BertTokenizer.from_pretrained(directory)
    base_dir = cache_dir / "special-tokens"  # the trainer keeps a tokenizer's settings and special tokens
    save_files(base_dir, {"vocab.txt": lambda target: target.write_text("\n".join(SPECIAL_TOKENS) + "\n")})
    tokenizer = BertTokenizer(base_dir / "vocab.txt").train_new_from_iterator(paragraphs, vocab_size,
                                                                              length=len(paragraphs))
    tokenizer.save_pretrained(directory)
    return BertTokenizer.from_pretrained(directory)


def _join_rows(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Ragged rows -> (all ids, each row's length): two flat int32 tensors, quick to save and load."""
    lengths = torch.tensor([len(row) for row in rows], dtype=torch.int32)
    ids = torch.tensor([token for row in rows for token in row], dtype=torch.int32)
    return ids, lengths


def _split_rows(ids: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
    return [part.tolist() for part in torch.split(ids, lengths.tolist())]
