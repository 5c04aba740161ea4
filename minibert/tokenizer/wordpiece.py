"""Stage 2 of BERT's tokenizer: WordPiece covers each word with vocabulary pieces.

Greedy longest-match-first, left to right; the pieces after the first carry a ``##`` prefix. A word
it cannot cover, or one longer than ``max_input_chars_per_word``, becomes ``[UNK]`` as a whole.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator


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
        self.steps_cache: dict[str, tuple[int, ...]] = {}  # see _pieces
        self.spaced_ids: dict[str, tuple[int, ...]] = {}  # see pieces_of_spaced_words
        self.spaced_steps: dict[str, tuple[int, ...]] = {}

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

    def _pieces(self, word: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The piece ids of ``word`` and the steps through the pieces' bounds: (length 0, 0, length 1,
        ...), remembered (see pieces_of_spaced_words)."""
        steps = self.steps_cache.get(word)
        if steps is None or word not in self.cache:  # ids() may have emptied its cache alone
            if len(self.steps_cache) >= self.CACHE_SIZE or len(self.cache) >= self.CACHE_SIZE:
                self.cache.clear()
                self.steps_cache.clear()
            spans = self.spans(word)
            if len(spans) == 1:  # most words: one piece, the whole word
                self.cache[word], steps = (spans[0][0],), (len(word),)
            else:
                self.cache[word] = tuple(piece_id for piece_id, _, _ in spans)
                steps = tuple(itertools.chain.from_iterable((end - start, 0) for _, start, end in spans))[:-1]
            self.steps_cache[word] = steps
        return self.cache[word], steps

    def pieces_of_spaced_words(self, spaced_words: list[str], spaces: str) -> tuple[Iterator[tuple[int, ...]],
                                                                                   list[tuple[int, ...]]]:
        """For each word, which comes with the spaces before it (characters of ``spaces``): its piece
        ids (an iterator, to be read at once), and the steps from the first space through the pieces' bounds: (spaces, length 0, 0,
        length 1, 0, ...), since each piece ends where the next starts. Remembered, and looked up by
        C loops (map): Python runs for new words only. Flat tuples of ints, which the garbage
        collector stops tracking, where nested ones would make every collection walk the whole cache."""
        steps = list(map(self.spaced_steps.get, spaced_words))
        if None in steps:
            if len(self.spaced_steps) + len(spaced_words) > self.CACHE_SIZE:
                self.spaced_ids.clear()
                self.spaced_steps.clear()
            for spaced_word in set(spaced_words).difference(self.spaced_steps):
                word = spaced_word.lstrip(spaces)
                self.spaced_ids[spaced_word], word_steps = self._pieces(word)
                self.spaced_steps[spaced_word] = (len(spaced_word) - len(word), *word_steps)
            steps = list(map(self.spaced_steps.__getitem__, spaced_words))
        return map(self.spaced_ids.__getitem__, spaced_words), steps

    def clear_caches(self) -> None:
        """Forget every word seen (a benchmark's cold start)."""
        self.cache.clear()
        self.steps_cache.clear()
        self.spaced_ids.clear()
        self.spaced_steps.clear()
