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
        self.cache: dict[str, tuple[int, ...]] = {}  # see ids
        self.spaced_pieces: dict[str, tuple[int, ...]] = {}  # see pieces_of_spaced_words

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

    def pieces_of_spaced_words(self, spaced_words: list[str], spaces: str) -> list[int]:
        """Each word comes with the spaces before it (characters of ``spaces``). -> Three ints per
        piece of every word in turn, flat: (gap, length, id), where the gap is the spaces before a
        word's first piece and 0 before the others (each piece ends where the next starts).

        Remembered per spaced word, and looked up by a C loop (map): Python runs for new words only.
        Flat tuples of ints, which the garbage collector stops tracking, where nested ones would make
        every collection walk the whole cache."""
        try:
            return list(itertools.chain.from_iterable(map(self.spaced_pieces.__getitem__, spaced_words)))
        except KeyError:  # new words: learn them all, then the same lookup finds every one
            self._learn_spaced_words(spaced_words, spaces)
        return self.pieces_of_spaced_words(spaced_words, spaces)

    def _learn_spaced_words(self, spaced_words: list[str], spaces: str) -> None:
        """Remember the new words of ``spaced_words``. A word with spaces takes its pieces from the same
        word without them, which is remembered too (words after punctuation come without spaces), so
        each word's pieces are searched for once."""
        known = self.spaced_pieces
        if len(known) + 2 * len(spaced_words) > self.CACHE_SIZE:
            known.clear()
        for spaced_word in set(spaced_words).difference(known):
            word = spaced_word.lstrip(spaces)
            bare = known.get(word)
            if bare is None:
                spans = self.spans(word)
                if len(spans) == 1:  # most words: one piece, the whole word
                    bare = known[word] = (0, len(word), spans[0][0])
                else:
                    bare = known[word] = tuple(itertools.chain.from_iterable(
                        (0, end - start, piece_id) for piece_id, start, end in spans))
            if spaced_word is not word:
                known[spaced_word] = (len(spaced_word) - len(word), *bare[1:])

    def clear_caches(self) -> None:
        """Forget every word seen (a benchmark's cold start)."""
        self.cache.clear()
        self.spaced_pieces.clear()
