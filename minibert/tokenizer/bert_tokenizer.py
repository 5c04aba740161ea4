"""BertTokenizer: the basic tokenizer (basic.py) then WordPiece (wordpiece.py), under transformers' API.

It adds what a model needs around the two stages (special tokens, pairs, truncation, padding,
tensors, offsets; see ``batch.py``), decoding, and loading and saving, under transformers' names. Its ids are
those of transformers' ``BertTokenizer`` (the Rust ``tokenizers`` one), surprises included; each
surprise is marked "Reference quirk" where we reproduce it.
"""

from __future__ import annotations

import itertools
import json
import numbers
import os
import re
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .basic import BasicTokenizer
from .batch import BatchEncoding, check_text, encode_batch
from .wordpiece import WordPiece

VOCAB_FILE = "vocab.txt"
FAST_TOKENIZER_FILE = "tokenizer.json"  # transformers' (tokenizers') own description; minibert does not write it
CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_FILE = "special_tokens_map.json"
SPECIAL_TOKEN_NAMES = ("unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


class BertTokenizer:
    """BERT's tokenizer under transformers' API: ``tok(["Hello!"], padding=True, return_tensors="pt")``.

    ``from_pretrained`` reads the settings from ``tokenizer_config.json`` as transformers does.
    ``never_split`` is accepted and, as in transformers' (Rust) ``BertTokenizer``, has no effect:
    the special tokens are the words that are never split.
    """

    def __init__(
        self,
        vocab_file: str | os.PathLike | list[str],
        do_lower_case: bool = True,
        strip_accents: bool | None = None,
        tokenize_chinese_chars: bool = True,
        never_split: Iterable[str] | None = None,
        *,
        unk_token: str = "[UNK]",
        sep_token: str = "[SEP]",
        pad_token: str = "[PAD]",
        cls_token: str = "[CLS]",
        mask_token: str = "[MASK]",
        model_max_length: int | None = None,
        clean_up_tokenization_spaces: bool = False,
        max_input_chars_per_word: int = 100,
        extra_special_tokens: Iterable[str] = (),
    ) -> None:
        for name, value in [("do_lower_case", do_lower_case), ("tokenize_chinese_chars", tokenize_chinese_chars),
                            ("clean_up_tokenization_spaces", clean_up_tokenization_spaces)]:
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be True or False, got {value!r}")
        if strip_accents is not None and not isinstance(strip_accents, bool):
            raise TypeError(f"strip_accents must be None, True or False, got {strip_accents!r}")
        if model_max_length is not None and (not isinstance(model_max_length, int) or model_max_length < 1):
            raise ValueError(f"model_max_length must be a positive int or None, got {model_max_length!r}")
        self.never_split = list(never_split) if never_split else None
        if self.never_split:
            warnings.warn("never_split has no effect, as in transformers' BertTokenizer", stacklevel=2)

        self.vocab_file = None if isinstance(vocab_file, list) else Path(vocab_file)  # or the tokens, in id order
        self.id_to_token = list(vocab_file) if self.vocab_file is None else _read_vocab(self.vocab_file)
        self.vocab = {token: index for index, token in enumerate(self.id_to_token)}  # a repeated line: last id
        self.do_lower_case = do_lower_case
        self.strip_accents = strip_accents
        self.tokenize_chinese_chars = tokenize_chinese_chars
        self.model_max_length = model_max_length
        self.clean_up_tokenization_spaces = clean_up_tokenization_spaces
        self.basic = BasicTokenizer(do_lower_case, strip_accents, tokenize_chinese_chars)

        specials = dict(unk_token=unk_token, sep_token=sep_token, pad_token=pad_token, cls_token=cls_token,
                        mask_token=mask_token)
        self.extra_special_tokens = list(extra_special_tokens)
        for name, token in [*specials.items(), *(("extra special token", token) for token in self.extra_special_tokens)]:
            if not isinstance(token, str) or token not in self.vocab:
                raise ValueError(f"{name} {token!r} is not in {self.vocab_file or 'the vocabulary'}")
        for name, token in specials.items():
            setattr(self, name, token)
            setattr(self, name + "_id", self.vocab[token])
        self.wordpiece = WordPiece(self.vocab, unk_token, max_input_chars_per_word)
        self.all_special_ids = {self.vocab[token] for token in [*specials.values(), *self.extra_special_tokens]}
        # The special tokens are found in the raw text, before normalization, so "[CLS]" is one token
        # while "[cls]" is lower-cased text; the longest wins where two start at the same place.
        by_length = sorted({*specials.values(), *self.extra_special_tokens}, key=len, reverse=True)
        self._special_split = re.compile("(" + "|".join(map(re.escape, by_length)) + ")").split

    def __repr__(self) -> str:
        return (f"BertTokenizer(vocab_size={len(self.vocab)}, do_lower_case={self.do_lower_case}, "
                f"strip_accents={self.strip_accents}, tokenize_chinese_chars={self.tokenize_chinese_chars})")

    def __len__(self) -> int:
        """The number of distinct tokens, as transformers counts: a repeated vocab.txt line is not counted twice
        (the token keeps the id of its last line, so an id may reach beyond ``len``, as in transformers)."""
        return len(self.vocab)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    # -- loading and saving --

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None,
                        revision: str | None = None, token: str | bool | None = None,
                        local_files_only: bool = False, **overrides: Any) -> BertTokenizer:
        """Load from a directory holding vocab.txt (+ tokenizer_config.json), or a hub id.

        Hub files go through huggingface_hub's cache (``cache_dir``); ``HF_HUB_OFFLINE=1`` or
        ``local_files_only`` use only that cache. Keyword ``overrides`` win over the config file.
        """
        hub = dict(cache_dir=cache_dir, revision=revision, token=token, local_files_only=local_files_only)
        # Imported here so that the tokenizer module itself needs only the standard library.
        from ..loading.atomic import check_not_interrupted
        from ..loading.hub import resolve_file

        check_not_interrupted(name_or_path, VOCAB_FILE)  # a killed save removed it: say so, as the model's loader
        vocab_file = resolve_file(name_or_path, VOCAB_FILE, required=True, **hub)
        settings: dict[str, Any] = {}
        for file in (CONFIG_FILE, SPECIAL_TOKENS_FILE):  # as in transformers, the special tokens map wins
            path = resolve_file(name_or_path, file, required=False, **hub)
            if path is not None:
                settings.update(_read_settings(path))
        settings.update(overrides)
        return cls(vocab_file, **settings)

    def save_pretrained(self, directory: str | os.PathLike) -> tuple[str, ...]:
        """Write vocab.txt, tokenizer_config.json and special_tokens_map.json, readable by transformers.

        All or nothing, as the model's save (see loading/atomic.py): vocab.txt, which loading needs, goes in last.
        A tokenizer.json there (transformers' fast tokenizer, which transformers reads before vocab.txt)
        would describe another tokenizer: it is removed in the same step.
        """
        from ..loading.atomic import save_files

        directory = Path(directory)
        specials = {name: getattr(self, name) for name in SPECIAL_TOKEN_NAMES}
        config = dict(tokenizer_class="BertTokenizer", do_lower_case=self.do_lower_case,
                      strip_accents=self.strip_accents, tokenize_chinese_chars=self.tokenize_chinese_chars,
                      never_split=self.never_split, clean_up_tokenization_spaces=self.clean_up_tokenization_spaces,
                      **specials)
        if self.model_max_length is not None:
            config["model_max_length"] = self.model_max_length
        if self.extra_special_tokens:
            config["extra_special_tokens"] = self.extra_special_tokens
        files = {VOCAB_FILE: "".join(token + "\n" for token in self.id_to_token),
                 CONFIG_FILE: json.dumps(config, indent=2, ensure_ascii=False) + "\n",
                 SPECIAL_TOKENS_FILE: json.dumps(specials, indent=2, ensure_ascii=False) + "\n"}
        save_files(directory, {name: _text_writer(content) for name, content in files.items()}, completing=VOCAB_FILE,
                   removing=(FAST_TOKENIZER_FILE,))
        return tuple(str(directory / name) for name in files)

    def train_new_from_iterator(self, text_iterator: Iterable[str | list[str]], vocab_size: int,
                                length: int | None = None, new_special_tokens: list[str] | None = None,
                                special_tokens_map: dict[str, str] | None = None, *, min_frequency: int = 0,
                                show_progress: bool = True, limit_alphabet: int | None = None,
                                initial_alphabet: Iterable[str] = ()) -> BertTokenizer:
        """This tokenizer's settings and special tokens (renamed by ``special_tokens_map``, plus ``new_special_tokens``)
        with a vocabulary trained on the texts (strings or lists of strings) by the Rust WordPieceTrainer's rules,
        with its defaults (trainer.py). ``length``: how many texts, for the progress bar."""
        from .trainer import train_new_tokenizer

        return train_new_tokenizer(self, text_iterator, vocab_size, length, new_special_tokens, special_tokens_map,
                                   min_frequency=min_frequency, show_progress=show_progress,
                                   limit_alphabet=limit_alphabet, initial_alphabet=initial_alphabet)

    # -- text -> ids --

    def encode_text(self, text: str, offsets: list[tuple[int, int]] | None = None) -> list[int]:
        """One text -> token ids, no special tokens added. With ``offsets`` (a list), also append
        each token's (start, end) character span in ``text``."""
        ids: list[int] = []
        position = 0
        # Odd parts are special tokens written in the text; even parts are ordinary text.
        for index, part in enumerate(self._special_split(text)):
            if index % 2:
                ids.append(self.vocab[part])
                if offsets is not None:
                    offsets.append((position, position + len(part)))
            elif part and offsets is None:
                word_ids = self.wordpiece.ids
                for word in self.basic.tokenize(part):
                    ids += word_ids(word)
            elif part:
                self._encode_with_offsets(part, position, ids, offsets)
            position += len(part)
        return ids

    def _encode_with_offsets(self, text: str, position: int, ids: list[int],
                             offsets: list[tuple[int, int]]) -> None:
        """``encode_text``'s work on ordinary text at ``position``, with offsets. Each step is a C loop
        over all the words or pieces (map, chain, accumulate, zip): Python runs per new word only."""
        normalized, origins = self.basic.normalize_with_origins(text, space_out_cjk=False)
        spaced_words = self.basic.spaced_words(normalized, cjk_spaced_out=False)
        pieces = self.wordpiece.pieces_of_spaced_words(spaced_words, self.basic.tables.whitespace_chars)
        ids += pieces[2::3]
        del pieces[2::3]  # leaves (gap, length) per piece: the steps from one bound to the next
        if isinstance(origins, range):  # normalizing moved nothing: a character's origin is its index
            bounds = itertools.accumulate(pieces, initial=position)
            next(bounds)  # the initial value itself
            offsets += zip(bounds, bounds)  # (start, end) pairs, taken in turn from the one iterator
            return
        # Else a piece spans from its first character's source to just past its last one's.
        bounds = list(itertools.accumulate(pieces))  # every piece's start and end in `normalized`, in turn
        starts = map(position.__add__, map(origins.__getitem__, bounds[0::2]))
        ends = map((position + 1).__add__, map(origins.__getitem__, map((-1).__add__, bounds[1::2])))
        offsets += zip(starts, ends)

    def tokenize(self, text: str, pair: str | None = None) -> list[str]:
        """Text (and a pair) -> WordPiece tokens, without [CLS]/[SEP]."""
        texts = [text] if pair is None else [text, pair]
        for index, item in enumerate(texts):
            check_text(item, "text" if index == 0 else "pair")
        return [self.id_to_token[piece_id] for item in texts for piece_id in self.encode_text(item)]

    def __call__(
        self,
        text: str | list[str] | tuple[str, ...],
        text_pair: str | list[str] | tuple[str, ...] | None = None,
        *,
        add_special_tokens: bool = True,
        padding: bool | str = False,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        return_tensors: str | None = None,
        return_offsets_mapping: bool = False,
    ) -> BatchEncoding:
        """Texts (and pairs) -> {"input_ids", "token_type_ids", "attention_mask"} (+ "offset_mapping").

        A single text gives flat lists; a list of texts gives one row each. ``padding``: False,
        True/"longest", "max_length". ``truncation``: False, True/"longest_first", "only_first",
        "only_second", counting ``max_length`` with the special tokens. ``return_tensors``: None
        (lists), "pt" (torch.long) or "np" (int64), shape (batch, seq).
        """
        return encode_batch(self, text, text_pair, add_special_tokens=add_special_tokens, padding=padding,
                            truncation=truncation, max_length=max_length, return_tensors=return_tensors,
                            return_offsets_mapping=return_offsets_mapping)

    # -- ids <-> tokens <-> text --

    def convert_tokens_to_ids(self, tokens: str | list[str]) -> int | list[int]:
        """Token(s) -> id(s); a token outside the vocabulary gives the [UNK] id."""
        if isinstance(tokens, str):
            return self.vocab.get(tokens, self.unk_token_id)
        return [self.vocab.get(token, self.unk_token_id) for token in tokens]

    def convert_ids_to_tokens(self, ids: int | Iterable[int] | Any, skip_special_tokens: bool = False) -> str | list[str]:
        """Id(s) -> token(s); ids may also come as a tensor or array."""
        ids = _plain_ids(ids)
        if isinstance(ids, int):
            return self.id_to_token[self._check_id(ids)]
        ids = [self._check_id(piece_id) for piece_id in ids]
        return [self.id_to_token[piece_id] for piece_id in ids
                if not (skip_special_tokens and piece_id in self.all_special_ids)]

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        """Tokens -> text, as the reference's WordPiece decoder: "##" pieces join the previous one."""
        pieces = []
        for index, token in enumerate(tokens):
            if index:  # the first token keeps a "##" it may start with
                token = token[2:] if token.startswith("##") else " " + token
            # Reference quirk: its clean-up works token by token, so " ." loses its space but
            # an apostrophe ("isn ' t") never meets the " ' " it looks for.
            pieces.append(_replace_all(token, _DECODER_CLEANUP))
        return "".join(pieces)

    def decode(self, token_ids: int | Iterable[int] | Any, skip_special_tokens: bool = False,
               clean_up_tokenization_spaces: bool | None = None) -> str | list[str]:
        """Ids -> text. A batch of rows (list of lists, 2-D tensor) gives a list of texts."""
        ids = _plain_ids(token_ids)
        if isinstance(ids, int):
            ids = [ids]
        elif ids and isinstance(ids[0].tolist() if hasattr(ids[0], "tolist") else ids[0], (list, tuple)):
            return self.batch_decode(ids, skip_special_tokens, clean_up_tokenization_spaces)  # rows, as transformers
        text = self.convert_tokens_to_string(self.convert_ids_to_tokens(ids, skip_special_tokens))
        if self.clean_up_tokenization_spaces if clean_up_tokenization_spaces is None else clean_up_tokenization_spaces:
            text = _replace_all(text, _CLEANUP)
        return text

    def batch_decode(self, sequences: Iterable[Iterable[int]] | Any, skip_special_tokens: bool = False,
                     clean_up_tokenization_spaces: bool | None = None) -> list[str]:
        """Rows of ids -> one text each."""
        rows = _plain_ids(sequences)
        if isinstance(rows, int):
            raise TypeError("batch_decode takes rows of token ids, got a single int")
        return [self.decode(row, skip_special_tokens, clean_up_tokenization_spaces) for row in rows]

    def _check_id(self, piece_id: Any) -> int:
        if not _is_int(piece_id):
            raise TypeError(f"token ids must be ints, got {type(piece_id).__name__}")
        if not 0 <= piece_id < len(self.id_to_token):
            raise ValueError(f"token id {piece_id} is outside the vocabulary (ids 0..{len(self.id_to_token) - 1})")
        return int(piece_id)


# ---- helpers ---------------------------------------------------------------------------------

# The reference's WordPiece decoder cleans each token; transformers' clean_up_tokenization_spaces
# cleans the whole text afterwards with nearly the same list.
_DECODER_CLEANUP = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                    (" 'm", "'m"), (" do not", " don't"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))
_CLEANUP = tuple(pair for pair in _DECODER_CLEANUP if pair[0] != " do not")


def _replace_all(text: str, replacements: tuple[tuple[str, str], ...]) -> str:
    for old, new in replacements:
        text = text.replace(old, new)
    return text


def _text_writer(content: str):
    return lambda path: path.write_text(content, encoding="utf-8")


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)  # numpy's ints are Integral too


def _plain_ids(values: Any) -> int | list:
    """Token ids from a list, tuple, tensor or array -> an int or a (nested) Python list."""
    values = values.tolist() if hasattr(values, "tolist") else values
    if _is_int(values):
        return int(values)
    if not isinstance(values, (list, tuple)):
        raise TypeError(f"expected token ids (an int or a list of ints), got {type(values).__name__}")
    return list(values)


def _read_vocab(path: Path) -> list[str]:
    """vocab.txt -> its tokens, one a line; the line number is the id."""
    if not path.is_file():
        raise OSError(f"vocab file {path} does not exist" if not path.exists() else f"{path} is not a file")
    try:
        tokens = path.read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError as error:
        raise OSError(f"{path} is not UTF-8 text: {error}") from None
    if tokens[-1] == "":
        tokens.pop()  # the newline that ends the last line
    if not tokens:
        raise ValueError(f"{path} is empty")
    return tokens


def _read_settings(path: Path) -> dict[str, Any]:
    """The settings BertTokenizer takes from a tokenizer_config.json or special_tokens_map.json."""
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise OSError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(config, dict):
        raise OSError(f"{path} should hold a JSON object, not {type(config).__name__}")
    known = {"do_lower_case", "strip_accents", "tokenize_chinese_chars", "never_split", "model_max_length",
             "clean_up_tokenization_spaces", "extra_special_tokens", *SPECIAL_TOKEN_NAMES}
    settings = {key: value for key, value in config.items() if key in known}
    for name in SPECIAL_TOKEN_NAMES:  # transformers may save a token as {"content": "[CLS]", ...}
        if isinstance(settings.get(name), dict):
            settings[name] = settings[name].get("content")
    extra = settings.get("extra_special_tokens")  # a list, or (transformers 4) a dict of named tokens
    if extra is not None:
        settings["extra_special_tokens"] = [token.get("content") if isinstance(token, dict) else token
                                            for token in (extra.values() if isinstance(extra, dict) else extra)]
    # transformers writes a huge number (int(1e30)) for "no limit".
    if isinstance(settings.get("model_max_length"), (int, float)) and settings["model_max_length"] > 1e12:
        settings["model_max_length"] = None
    return settings
