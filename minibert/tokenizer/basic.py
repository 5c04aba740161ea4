"""Stage 1 of BERT's tokenizer: normalise the text and split it into words.

Drop control characters, turn every whitespace into a space, put spaces around CJK ideographs,
strip accents and lower-case (only with ``do_lower_case`` / ``strip_accents``, as the checkpoint's
tokenizer_config.json says: bert-base-cased does neither), then split on whitespace and around every
punctuation character. The character classes come from ``unicode_tables.py``.
"""

from __future__ import annotations

import re

from .unicode_tables import unicode_tables


class BasicTokenizer:
    """Text -> words: the reference's BertNormalizer followed by its BertPreTokenizer."""

    def __init__(self, do_lower_case: bool = True, strip_accents: bool | None = None,
                 tokenize_chinese_chars: bool = True) -> None:
        self.do_lower_case = do_lower_case
        # As in the original BERT, accents go whenever case goes, unless strip_accents says otherwise.
        self.strip_accents = do_lower_case if strip_accents is None else strip_accents
        self.tokenize_chinese_chars = tokenize_chinese_chars
        self.tables = unicode_tables()

        # The reference's steps, in its order; each maps text to text.
        self.steps = [self.clean]
        if tokenize_chinese_chars:
            self.steps.append(self.space_out_cjk)
        if self.strip_accents:
            self.steps += [self.decompose, self.drop_marks]
        if do_lower_case:
            self.steps.append(self.lower)

    def normalize(self, text: str) -> str:
        """Clean, space out CJK, strip accents, lower-case, as the flags say."""
        if text.isascii():
            # Fast path: no CJK, no accents, so one C-level pass cleans (and lower-cases).
            return text.translate(self.tables.ascii_clean_lower if self.do_lower_case else self.tables.ascii_clean)
        for step in self.steps:
            text = step(text)
        return text

    def clean(self, text: str) -> str:
        """Drop control characters; every whitespace becomes a space."""
        return self.tables.whitespace.sub(" ", self.tables.control.sub("", text))

    def space_out_cjk(self, text: str) -> str:
        """A space either side of each CJK ideograph, so that each is a word."""
        return self.tables.cjk.sub(r" \g<0> ", text)

    def decompose(self, text: str) -> str:
        """NFD as the reference's (older) tables do it: "é" -> "e" + U+0301."""
        text = text.translate(self.tables.decompose)
        # Canonical reordering: each run of marks sorted by combining class (stable, so equal classes keep order).
        return self.tables.mark_runs.sub(self._reorder, text)

    def _reorder(self, run: re.Match[str]) -> str:
        return "".join(sorted(run[0], key=self.tables.combining_class.__getitem__))

    def drop_marks(self, text: str) -> str:
        """Remove the nonspacing marks (the accents, once decomposed)."""
        return self.tables.marks.sub("", text)

    def lower(self, text: str) -> str:
        """Lower-case as Rust does it, one character at a time (so "Σ" is always "σ": no final "ς")."""
        return text.translate(self.tables.lowercase)

    def origins(self, text: str) -> list[int]:
        """For each character of ``normalize(text)``, the index in ``text`` of the one it came from."""
        if text.isascii():
            removed = self.tables.ascii_clean
            return [index for index, char in enumerate(text) if removed.get(ord(char), 0) is not None]
        origins = list(range(len(text)))
        for step in self.steps:
            if step == self.decompose:
                origins = self._decomposed_origins(text, origins)
            else:  # the other steps map each character on its own
                origins = [origin for char, origin in zip(text, origins) for _ in range(len(step(char)))]
            text = step(text)
        return origins

    def _decomposed_origins(self, text: str, origins: list[int]) -> list[int]:
        """Origins through NFD, assigned as the reference's aligner does.

        Each character decomposes on its own: its first piece replaces it, the others are inserted.
        Canonical reordering then sorts each run of marks by combining class, and the pieces keep
        their kind: in the new order, replacing pieces take the old characters' origins one by one,
        and an inserted piece the origin of the last one taken.
        """
        classes = self.tables.combining_class
        pieces = [(classes.get(piece, 0), index == 0)
                  for char in text for index, piece in enumerate(self.decompose(char))]
        reordered: list[tuple[int, bool]] = []
        marks: list[tuple[int, bool]] = []
        for piece in pieces + [(0, True)]:  # a last starter flushes the last run of marks
            if piece[0]:
                marks.append(piece)
            else:
                reordered += sorted(marks, key=lambda mark: mark[0]) + [piece]  # stable, as NFD's reordering
                marks = []
        taken, new_origins = 0, []
        for _, replaces in reordered[:-1]:
            new_origins.append(origins[taken] if replaces else origins[max(taken - 1, 0)])
            taken += replaces
        return new_origins

    def split(self, normalized: str) -> list[str]:
        """Normalized text -> words: split on whitespace, each punctuation character a word."""
        return self.tables.words.findall(normalized)

    def spans(self, normalized: str) -> list[tuple[int, int]]:
        """Like ``split``, as (start, end) character positions in ``normalized``."""
        return [match.span() for match in self.tables.words.finditer(normalized)]

    def tokenize(self, text: str) -> list[str]:
        """Text -> words."""
        return self.split(self.normalize(text))
