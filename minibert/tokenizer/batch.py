"""From texts to a model's batch: special tokens, pairs, truncation, padding, tensors.

``encode_batch`` is the body of ``BertTokenizer.__call__``. It reads its arguments by
transformers' rules and truncates pairs by the Rust tokenizer's, so the batches are the
reference's, token for token. torch and numpy are imported only when tensors are asked for.
"""

from __future__ import annotations

import re
import warnings
from typing import Any

# The tokenizer these functions serve (bert_tokenizer.BertTokenizer). Not imported: that module
# imports this one, and these functions need only its attributes.
BertTokenizer = Any

PADDING = {"do_not_pad": None, "longest": "longest", "max_length": "max_length"}
TRUNCATION = {"do_not_truncate": None, "longest_first": "longest_first", "only_first": "only_first",
              "only_second": "only_second"}
NO_OFFSET = (0, 0)  # the offsets of special and padding tokens, which stand for no text


class BatchEncoding(dict):
    """The tokenizer's output: a dict, so ``model(**batch)`` works, whose keys also read as attributes."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"the batch has no {name!r}; it holds {sorted(self)}") from None

    def to(self, device: Any) -> BatchEncoding:
        """Move every tensor to ``device`` (for return_tensors="pt")."""
        return BatchEncoding({key: value.to(device) if hasattr(value, "to") else value for key, value in self.items()})


def check_text(text: Any, name: str) -> None:
    """A text must be a str that UTF-8 (and the reference) can hold."""
    if isinstance(text, (list, tuple)):
        raise TypeError(f"{name} must be a str, got a {type(text).__name__}; pre-split words are not supported, "
                        "join them with spaces (and pass a second text as text_pair)")
    if not isinstance(text, str):
        raise TypeError(f"{name} must be a str, got {type(text).__name__}")
    surrogate = None if text.isascii() else _SURROGATE.search(text)
    if surrogate:
        raise ValueError(f"{name} holds a lone surrogate U+{ord(surrogate[0]):04X} at index {surrogate.start()}, "
                         "which is not a character (were bytes decoded with errors='surrogateescape'?)")


_SURROGATE = re.compile("[\ud800-\udfff]")


def encode_batch(tokenizer: BertTokenizer, text: Any, text_pair: Any, *, add_special_tokens: bool,
                 padding: bool | str, truncation: bool | str | None, max_length: int | None,
                 return_tensors: str | None, return_offsets_mapping: bool) -> BatchEncoding:
    """Texts (and pairs) -> the columns a BERT model takes; see ``BertTokenizer.__call__``."""
    batched, firsts, seconds = _as_batch(text, text_pair)
    padding, truncation, max_length = _strategies(tokenizer, padding, truncation, max_length)
    if return_tensors not in (None, "pt", "np"):
        raise ValueError(f"return_tensors must be None, 'pt' or 'np', got {return_tensors!r}")
    specials = (2 if seconds[0] is None else 3) if add_special_tokens else 0  # all rows are pairs, or none
    if truncation and max_length < specials:
        # Reference quirk: Rust subtracts the special tokens from max_length in unsigned
        # arithmetic, which wraps around to "no limit"; we keep its output, and say so.
        warnings.warn(f"max_length={max_length} cannot even hold the {specials} special tokens; "
                      "as in transformers, the text is not truncated", stacklevel=3)
        truncation = None
    rows = [_encode_row(tokenizer, first, second, add_special_tokens, truncation, max_length, return_offsets_mapping)
            for first, second in zip(firsts, seconds)]
    if padding:
        length = max_length if padding == "max_length" else max(len(row["input_ids"]) for row in rows)
        for row in rows:
            missing = length - len(row["input_ids"])  # rows longer than max_length stay as they are
            if missing > 0:
                row["input_ids"] += [tokenizer.pad_token_id] * missing
                row["token_type_ids"] += [0] * missing
                row["attention_mask"] += [0] * missing
                if return_offsets_mapping:
                    row["offset_mapping"] += [NO_OFFSET] * missing
    columns = {key: [row[key] for row in rows] for key in rows[0]}
    if return_tensors:
        return BatchEncoding(_as_tensors(columns, return_tensors))
    return BatchEncoding(columns if batched else {key: values[0] for key, values in columns.items()})


def _as_batch(text: Any, text_pair: Any) -> tuple[bool, list[str], list[str | None]]:
    """-> (was it a batch, first texts, second texts or None)."""
    if isinstance(text, str):
        check_text(text, "text")
        if text_pair is not None:
            check_text(text_pair, "text_pair (with a single text)")
        # Reference quirk: transformers tests `if text_pair`, so a single text with an empty pair
        # is encoded as no pair at all; in a batch, "" is an empty second sequence.
        return False, [text], [text_pair or None]
    if not isinstance(text, (list, tuple)):
        raise TypeError(f"text must be a str or a list of str, got {type(text).__name__}")
    if not text:
        raise ValueError("text is an empty list: there is nothing to tokenize")
    for index, item in enumerate(text):
        check_text(item, f"text[{index}]")
    if text_pair is None:
        return True, list(text), [None] * len(text)
    if not isinstance(text_pair, (list, tuple)):
        raise TypeError(f"text is a list, so text_pair must be a list of the same length, got {type(text_pair).__name__}")
    if len(text_pair) != len(text):
        raise ValueError(f"text has {len(text)} texts but text_pair has {len(text_pair)}")
    for index, item in enumerate(text_pair):
        check_text(item, f"text_pair[{index}]")
    return True, list(text), list(text_pair)


def _strategies(tokenizer: BertTokenizer, padding: Any, truncation: Any,
                max_length: Any) -> tuple[str | None, str | None, int | None]:
    """The arguments -> (padding mode, truncation mode, max_length), by transformers' rules."""
    if max_length is not None and (not isinstance(max_length, int) or isinstance(max_length, bool)):
        raise TypeError(f"max_length must be an int or None, got {type(max_length).__name__}")
    if max_length is not None and max_length < 0:
        raise ValueError(f"max_length must be >= 0, got {max_length}")
    # transformers: a max_length with neither padding nor a truncation argument means "truncate".
    if max_length is not None and padding is False and truncation is None:
        truncation = True
    padding_mode = _mode("padding", padding, PADDING, "longest")
    truncation_mode = _mode("truncation", truncation, TRUNCATION, "longest_first")
    if padding_mode == "longest" and max_length is not None and truncation_mode is None:
        warnings.warn("max_length is ignored when padding=True and there is no truncation; "
                      "to pad to max_length use padding='max_length'", stacklevel=4)
    if max_length is None and (padding_mode == "max_length" or truncation_mode):
        what = "padding='max_length'" if padding_mode == "max_length" else f"truncation={truncation!r}"
        if tokenizer.model_max_length is None:
            raise ValueError(f"{what} needs max_length: this tokenizer has no model_max_length "
                             "(tokenizer_config.json usually sets one)")
        max_length = tokenizer.model_max_length
    return padding_mode, truncation_mode, max_length


def _mode(name: str, value: Any, modes: dict[str, str | None], when_true: str) -> str | None:
    if value is None or value is False:
        return None
    if value is True:
        return when_true
    if isinstance(value, str) and value in modes:
        return modes[value]
    raise ValueError(f"{name}={value!r} is not one of True, False, {', '.join(map(repr, modes))}")


def _encode_row(tokenizer: BertTokenizer, first: str, second: str | None, add_special_tokens: bool,
                truncation: str | None, max_length: int | None, with_offsets: bool) -> dict[str, list]:
    """One text or pair -> its columns, truncated, with [CLS] a [SEP] (b [SEP]) and token types 0/1."""
    sequences = [first] if second is None else [first, second]
    offsets = [[] if with_offsets else None for _ in sequences]
    ids = [tokenizer.encode_text(text, spans) for text, spans in zip(sequences, offsets)]
    if truncation:
        specials = len(sequences) + 1 if add_special_tokens else 0
        kept = _kept_lengths([len(part) for part in ids], max_length - specials, truncation)
        ids = [part[:keep] for part, keep in zip(ids, kept)]
        offsets = [None if part is None else part[:keep] for part, keep in zip(offsets, kept)]

    special = 1 if add_special_tokens else 0  # how many [CLS] first, and [SEP] after each sequence
    row_ids, types, row_offsets = [tokenizer.cls_token_id] * special, [0] * special, [NO_OFFSET] * special
    for index, (part, spans) in enumerate(zip(ids, offsets)):
        row_ids += part
        row_ids += [tokenizer.sep_token_id] * special
        types += [index] * (len(part) + special)
        if with_offsets:
            row_offsets += spans
            row_offsets += [NO_OFFSET] * special
    row = {"input_ids": row_ids, "token_type_ids": types, "attention_mask": [1] * len(row_ids)}
    if with_offsets:
        row["offset_mapping"] = row_offsets
    return row


def _kept_lengths(lengths: list[int], limit: int, strategy: str) -> list[int]:
    """How many tokens of each sequence survive truncation to ``limit`` tokens (the Rust rules)."""
    if limit == 0:  # Rust checks this first: then even only_first/only_second empty every sequence
        return [0] * len(lengths)
    if sum(lengths) <= limit:
        return lengths
    excess = sum(lengths) - limit
    if strategy == "longest_first":
        if len(lengths) == 1:
            return [limit]
        first, second = lengths
        shorter = min(first, second)
        if 2 * shorter <= limit:  # the shorter one stays whole; the longer one gets what is left
            return [first, limit - first] if first == shorter else [limit - second, second]
        # Both are cut to half; the odd token goes to the longer one, and on a tie to the second.
        half, odd = divmod(limit, 2)
        return [half + odd, half] if first > second else [half, half + odd]
    target = 0 if strategy == "only_first" else 1
    if target >= len(lengths):
        raise ValueError("truncation='only_second' needs a text_pair: this text alone is longer than max_length")
    name = ("text", "text_pair")[target]
    # Reference quirk: Rust refuses to cut a sequence down to nothing, even when that would fit.
    if lengths[target] <= excess:
        raise ValueError(f"cannot truncate to fit max_length: {excess} tokens must go, but {name} has only "
                         f"{lengths[target]} (truncation={strategy!r}; try 'longest_first')")
    return [length - excess if index == target else length for index, length in enumerate(lengths)]


def _as_tensors(columns: dict[str, list], kind: str) -> dict[str, Any]:
    """Equal-length rows -> int64 tensors (batch, seq); offsets -> (batch, seq, 2)."""
    lengths = sorted({len(row) for row in columns["input_ids"]})
    if len(lengths) > 1:
        raise ValueError(f"the sequences have {lengths[0]} to {lengths[-1]} tokens, and a tensor needs one "
                         f"length: pass padding=True (or padding='max_length') with return_tensors={kind!r}")
    if kind == "pt":
        import torch

        tensors = {key: torch.tensor(values, dtype=torch.long) for key, values in columns.items()}
    else:
        import numpy as np

        tensors = {key: np.array(values, dtype=np.int64) for key, values in columns.items()}
    if "offset_mapping" in tensors:  # keep the pair dimension even when a row is empty
        tensors["offset_mapping"] = tensors["offset_mapping"].reshape(len(columns["input_ids"]), lengths[0], 2)
    return tensors
