"""Masked-LM batches: pad a list of encodings, hide 15% of the tokens, keep the originals as labels.

BERT's recipe (section 3.1 of the paper): choose 15% of the tokens at random; of those, replace 80%
by [MASK], 10% by a random token and leave 10% as they are; the model predicts the original token at
every chosen position, and nowhere else (label -100, cross_entropy's ignore_index). The last two
cases keep the model from learning that only [MASK] positions matter, since fine-tuning has none.

Names, arguments and random draws are transformers' ``DataCollatorForLanguageModeling``: the same
seed (or, with ``seed=None``, the same global torch seed) gives the same batch. That fixes the order
of the draws: one Bernoulli per position for "chosen", one for "[MASK]", one for "random", then a
random token for every position (used only where "random" won).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ..tokenizer import BertTokenizer

IGNORE_INDEX = -100  # cross_entropy skips these labels: the positions that were not chosen


class DataCollatorForLanguageModeling:
    """``collator(examples) -> {"input_ids", "attention_mask", "labels"}`` (+ "token_type_ids" if given).

    examples: a list of dicts with ``input_ids`` (a list of ids, with [CLS]/[SEP] already in place),
    optionally ``token_type_ids``, ``special_tokens_mask`` and ``offset_mapping``; or a list of id
    lists. Rows are padded on the right to the longest (or to a multiple of ``pad_to_multiple_of``).
    Special tokens and padding are never chosen. ``whole_word_mask`` chooses words rather than
    tokens (a word: tokens whose offsets touch, so it needs ``offset_mapping``) and then always uses
    [MASK], as transformers does. ``seed`` gives the collator its own generator; None uses torch's.
    """

    def __init__(self, tokenizer: BertTokenizer, mlm_probability: float = 0.15, mask_replace_prob: float = 0.8,
                 random_replace_prob: float = 0.1, whole_word_mask: bool = False,
                 pad_to_multiple_of: int | None = None, seed: int | None = None) -> None:
        if getattr(tokenizer, "mask_token", None) is None:
            raise ValueError("the tokenizer has no mask token, which masked language modeling needs")
        for name, value in [("mlm_probability", mlm_probability), ("mask_replace_prob", mask_replace_prob),
                            ("random_replace_prob", random_replace_prob)]:
            if not 0 <= value <= 1:
                raise ValueError(f"{name} should be between 0 and 1, got {value}")
        if mask_replace_prob + random_replace_prob > 1:
            raise ValueError("the sum of mask_replace_prob and random_replace_prob should not exceed 1, got "
                             f"{mask_replace_prob} + {random_replace_prob}")
        if pad_to_multiple_of is not None and pad_to_multiple_of < 1:
            raise ValueError(f"pad_to_multiple_of must be a positive int or None, got {pad_to_multiple_of}")
        if whole_word_mask:
            mask_replace_prob, random_replace_prob = 1.0, 0.0  # transformers' rule: whole words get [MASK]
        self.tokenizer = tokenizer
        self.mlm_probability = float(mlm_probability)
        self.mask_replace_prob = float(mask_replace_prob)
        self.random_replace_prob = float(random_replace_prob)
        self.whole_word_mask = whole_word_mask
        self.pad_to_multiple_of = pad_to_multiple_of
        self.seed = seed
        self.generator = None if seed is None else torch.Generator().manual_seed(seed)

    def __call__(self, examples: Sequence[Mapping[str, Any] | Sequence[int]]) -> dict[str, torch.Tensor]:
        if len(examples) == 0:
            raise ValueError("no examples to collate")
        rows = [dict(example) if isinstance(example, Mapping) else {"input_ids": example} for example in examples]
        batch = self.pad(rows)
        special_tokens_mask = batch.pop("special_tokens_mask", None)
        offset_mapping = batch.pop("offset_mapping", None)
        batch["input_ids"], batch["labels"] = self.mask_tokens(batch["input_ids"], special_tokens_mask, offset_mapping)
        return batch

    def pad(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Right-pad every field to one length: ids with [PAD], attention_mask and token types with 0,
        special_tokens_mask with 1, offsets with (0, 0)."""
        lengths = [len(row["input_ids"]) for row in rows]
        length = max(lengths)
        if self.pad_to_multiple_of is not None:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        fill = {"input_ids": self.tokenizer.pad_token_id, "attention_mask": 0, "token_type_ids": 0,
                "special_tokens_mask": 1, "offset_mapping": (0, 0)}
        batch = {}
        for name in ["input_ids", "token_type_ids", "attention_mask", "special_tokens_mask", "offset_mapping"]:
            if name in rows[0]:
                columns = [_as_list(row[name]) for row in rows]
            elif name == "attention_mask":
                columns = [[1] * size for size in lengths]
            else:
                continue
            padded = [column + [fill[name]] * (length - len(column)) for column in columns]
            batch[name] = torch.tensor(padded, dtype=torch.long)  # (batch, seq) or (batch, seq, 2) for offsets
        return batch

    def mask_tokens(self, input_ids: torch.Tensor, special_tokens_mask: torch.Tensor | None = None,
                    offset_mapping: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """input_ids (batch, seq) -> (masked input_ids, labels), both (batch, seq); ``input_ids`` is changed in place."""
        labels = input_ids.clone()
        if special_tokens_mask is None:
            special = torch.tensor(sorted(self.tokenizer.all_special_ids))
            special_tokens_mask = torch.isin(input_ids, special)  # (batch, seq) [PAD] included
        special_tokens_mask = special_tokens_mask.bool()
        probability = torch.full(labels.shape, self.mlm_probability)  # (batch, seq)
        if self.whole_word_mask:
            if offset_mapping is None:
                raise ValueError("whole_word_mask needs offset_mapping in the examples "
                                 "(tokenize with return_offsets_mapping=True)")
            word_ids, not_word_start = word_ids_and_starts(offset_mapping.numpy(), special_tokens_mask.numpy())
            probability.masked_fill_(torch.from_numpy(not_word_start), 0.0)  # a word is chosen at its first token
        else:
            probability.masked_fill_(special_tokens_mask, 0.0)
        chosen = torch.bernoulli(probability, generator=self.generator).bool()  # (batch, seq)
        if self.whole_word_mask:
            chosen = torch.from_numpy(spread_to_whole_words(word_ids, chosen.numpy()))
        labels[~chosen] = IGNORE_INDEX

        replaced = torch.bernoulli(torch.full(labels.shape, self.mask_replace_prob), generator=self.generator).bool()
        replaced &= chosen
        input_ids[replaced] = self.tokenizer.mask_token_id
        if self.mask_replace_prob == 1 or self.random_replace_prob == 0:
            return input_ids, labels
        # Of the chosen tokens not replaced by [MASK], the share that gets a random token instead.
        random_share = self.random_replace_prob / (1 - self.mask_replace_prob)
        randomized = torch.bernoulli(torch.full(labels.shape, random_share), generator=self.generator).bool()
        randomized &= chosen & ~replaced
        random_tokens = torch.randint(len(self.tokenizer), labels.shape, dtype=torch.long, generator=self.generator)
        input_ids[randomized] = random_tokens[randomized]
        return input_ids, labels


def word_ids_and_starts(offsets: np.ndarray, special_tokens_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """offsets (batch, seq, 2) and special_tokens_mask (batch, seq) -> (word_ids, not_word_start), both (batch, seq).

    A token starts a new word when it is not special and there is a gap before it in the text (or the
    token before it is special); word ids count the word starts, -1 for special tokens.
    """
    starts, ends = offsets[:, :, 0], offsets[:, :, 1]
    previous_ends = np.roll(ends, 1, axis=1)
    previous_ends[:, 0] = -1
    previous_special = np.roll(special_tokens_mask, 1, axis=1)
    previous_special[:, 0] = False
    is_word_start = ~special_tokens_mask & ((starts != previous_ends) | previous_special)
    word_ids = np.cumsum(is_word_start, axis=1)
    word_ids[special_tokens_mask] = -1
    return word_ids, ~is_word_start


def spread_to_whole_words(word_ids: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """chosen (batch, seq) at word starts -> chosen at every token of those words, (batch, seq)."""
    valid = word_ids != -1
    same_word = (word_ids[:, :, None] == word_ids[:, None, :]) & valid[:, :, None] & valid[:, None, :]  # (batch, seq, seq)
    return np.any(same_word & chosen[:, None, :], axis=2)


def _as_list(values: Any) -> list:
    return values.tolist() if hasattr(values, "tolist") else [list(value) if isinstance(value, tuple) else value
                                                              for value in values]
