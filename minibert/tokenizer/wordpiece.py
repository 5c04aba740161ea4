"""Stage 2 of BERT's tokenizer: WordPiece covers each word with vocabulary pieces.

Greedy longest-match-first, left to right; the pieces after the first carry a ``##`` prefix. A word
it cannot cover, or one longer than ``max_input_chars_per_word``, becomes ``[UNK]`` as a whole.
"""

from __future__ import annotations

import itertools


class WordPiece:
    """Word -> vocabulary pieces, greedy longest-match-first; ``##`` marks a continuation."""

    CACHE_SIZE = 1 << 18  # words; cleared when full, which in practice means never

    def __init__(self, vocab: dict[str, int], unk_token: str = "[UNK]", max_input_chars_per_word: int = 100,
                 prefix: str = "##") -> None:
        self.vocab = vocab
        self.unk_id = vocab[unk_token]
        self.max_input_chars_per_word = max_input_chars_per_word
        self.prefix = prefix
        self.longest = max(map(len, vocab), default=0)  # no piece is longer, so no longer match is tried
        self.cache: dict[str, tuple[int, ...]] = {}
        self.bounds_cache: dict[str, tuple[int, ...]] = {}  # see pieces

    def spans(self, word: str) -> list[tuple[int, int, int]]:
        """(id, start, end) of each piece of ``word``; a single [UNK] when it cannot be covered."""
        unknown = [(self.unk_id, 0, len(word))]
        if len(word) > self.max_input_chars_per_word:
            return unknown
        pieces, start = [], 0
        while start < len(word):
            prefix = self.prefix if start else ""
            for end in range(min(len(word), start + self.longest), start, -1):
                piece_id = self.vocab.get(prefix + word[start:end])
                if piece_id is not None:
                    pieces.append((piece_id, start, end))
                    start = end
                    break
            else:  # no piece starts here: the whole word is unknown, not just this part
                return unknown
        return pieces

    def ids(self, word: str) -> tuple[int, ...]:
        """The piece ids of ``word``, remembered: real text repeats its words."""
        ids = self.cache.get(word)
        if ids is None:
            if len(self.cache) >= self.CACHE_SIZE:
                self.cache.clear()
            ids = self.cache[word] = tuple(piece_id for piece_id, _, _ in self.spans(word))
        return ids

    def pieces(self, word: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The piece ids of ``word`` and the pieces' bounds in it, flat: (start 0, end 0, start 1, ...),
        remembered: offsets need both. Flat tuples of ints, which the garbage collector stops
        tracking, where nested ones would make every collection walk the whole cache."""
        bounds = self.bounds_cache.get(word)
        if bounds is None:
            if len(self.bounds_cache) >= self.CACHE_SIZE:
                self.bounds_cache.clear()
            spans = self.spans(word)
            self.cache[word] = tuple(piece_id for piece_id, _, _ in spans)
            bounds = self.bounds_cache[word] = ((spans[0][1], spans[0][2]) if len(spans) == 1 else
                                                tuple(itertools.chain.from_iterable((start, end) for _, start, end in spans)))
        return self.cache[word], bounds

    def clear_caches(self) -> None:
        """Forget every word seen (a benchmark's cold start)."""
        self.cache.clear()
        self.bounds_cache.clear()
