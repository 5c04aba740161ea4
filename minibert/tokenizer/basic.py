"""Stage 1 of BERT's tokenizer: normalise the text and split it into words.

Drop control characters, turn every whitespace into a space, put spaces around CJK ideographs,
strip accents and lower-case (only with ``do_lower_case`` / ``strip_accents``, as the checkpoint's
tokenizer_config.json says: bert-base-cased does neither), then split on whitespace and around every
punctuation character. The character classes come from ``unicode_tables.py``.
"""

from __future__ import annotations

import functools
import itertools
import re
from dataclasses import dataclass
from typing import Sequence

from .unicode_tables import unicode_tables


@dataclass(frozen=True)
class _Widths:
    """How many characters a step turns each character of a text into, computed by C loops: the
    characters that change are marked with their width as a control character (chr(0) to chr(9)),
    then every other character becomes the byte 1 (encoded to Latin-1, "?" past it, then mapped byte
    by byte). Control characters are gone after cleaning, the first step, so no mark is mistaken for
    text; cleaning itself marks only chr(0), the width of the control characters it removes."""

    changed: re.Pattern[str]  # the characters that become other than one character
    marks: dict[int, str] | str  # a translate map to their marks, or the one mark of them all
    widths: bytes  # a bytes.translate table: each mark's byte to itself, every other byte to 1

    @classmethod
    def of(cls, changed: re.Pattern[str], widths: dict[int, int] | int) -> _Widths:
        used = {widths} if isinstance(widths, int) else set(widths.values())
        table = bytes(byte if byte in used else 1 for byte in range(256))
        if isinstance(widths, int):
            return cls(changed, chr(widths), table)
        return cls(changed, {point: chr(width) for point, width in widths.items()}, table)

    def carry(self, origins: Sequence[int], text: str, marked: str | None = None) -> Sequence[int]:
        """Origins through the step: each character's origin, repeated as many times as it
        becomes characters (0: removed). ``marked``: the text marked already, where the caller has it."""
        if marked is None and self.changed.search(text) is None:
            return origins
        if marked is None:
            marked = self.changed.sub(self.marks, text) if isinstance(self.marks, str) else text.translate(self.marks)
        widths = marked.encode("latin-1", "replace").translate(self.widths)  # one byte per character
        if self.marks == "\x00":  # a step that only removes characters
            return list(itertools.compress(origins, widths))
        return list(itertools.chain.from_iterable(map(itertools.repeat, origins, widths)))


@functools.cache
def _widths(step: str) -> _Widths:
    """The _Widths of a normalization step ("clean", "space_out_cjk", "decompose", "drop_marks", "lower")."""
    tables = unicode_tables()
    if step in ("decompose", "lower"):
        table = tables.decompose if step == "decompose" else tables.lowercase
        widths = {point: len(value) for point, value in table.items() if len(value) != 1}
        return _Widths.of(re.compile(_char_class(sorted(widths))), widths)
    changed, width = {"clean": (tables.control, 0), "space_out_cjk": (tables.cjk, 3), "drop_marks": (tables.marks, 0)}[step]
    return _Widths.of(changed, width)


def _char_class(points: list[int]) -> str:
    """Sorted code points -> a regex character class, consecutive ones as a range (Hangul's 11,172
    syllables are one)."""
    runs: list[list[int]] = []
    for point in points:
        if runs and point == runs[-1][1] + 1:
            runs[-1][1] = point
        else:
            runs.append([point, point])
    body = "".join(re.escape(chr(first)) + ("" if first == last else "-" + re.escape(chr(last))) for first, last in runs)
    return f"[{body}]" if body else "(?!)"


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

    def normalize(self, text: str, space_out_cjk: bool = True) -> str:
        """Clean, space out CJK, strip accents, lower-case, as the flags say. ``space_out_cjk=False``
        leaves that step out, for ``split(..., cjk_spaced_out=False)``."""
        if text.isascii():
            # Fast path: no CJK, no accents, so one C-level pass cleans (and lower-cases).
            return text.translate(self.tables.ascii_clean_lower if self.do_lower_case else self.tables.ascii_clean)
        for step in self.steps:
            if space_out_cjk or step != self.space_out_cjk:
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

    def origins(self, text: str) -> Sequence[int]:
        """For each character of ``normalize(text)``, the index in ``text`` of the one it came from."""
        return self.normalize_with_origins(text)[1]

    def normalize_with_origins(self, text: str, space_out_cjk: bool = True) -> tuple[str, Sequence[int]]:
        """``normalize(text)`` and, for each of its characters, the index in ``text`` of the one it
        came from (a range where every character stayed in place, as in most ASCII text).
        ``space_out_cjk=False`` leaves that step out: ``spaced_words`` then splits each CJK
        ideograph off as spacing would (a third of the work on CJK text, where every character moves).

        Each step maps characters one by one, so each character's origin is repeated as many times
        as the step turns it into characters (see _Widths); NFD's canonical reordering, where a run of marks is out of order
        (rare), takes the reference aligner's rules (_decomposed_origins)."""
        origins: Sequence[int] = range(len(text))
        # Each step turns every character into one or more, or only drops characters (cleaning, accent
        # stripping): where it keeps the text's length, every character stayed in place.
        if text.isascii():
            normalized = self.normalize(text)
            return normalized, origins if len(normalized) == len(text) else _widths("clean").carry(origins, text)
        for step in self.steps:
            if step == self.space_out_cjk and not space_out_cjk:
                continue
            if step == self.decompose:
                decomposed = text.translate(self.tables.decompose)
                reordered = self.tables.mark_runs.sub(self._reorder, decomposed)
                if reordered != decomposed:
                    origins = self._decomposed_origins(text, origins)
                elif len(decomposed) != len(text):
                    origins = _widths("decompose").carry(origins, text)
                text = reordered
            elif step == self.drop_marks:
                # One substitution marks the marks, for their origins and for their removal.
                marked = self.tables.marks.sub("\x00", text)
                stripped = marked.replace("\x00", "")
                if len(stripped) != len(text):
                    origins = _widths("drop_marks").carry(origins, text, marked)
                text = stripped
            else:
                normalized = step(text)
                if len(normalized) != len(text):
                    origins = _widths(step.__name__).carry(origins, text)
                text = normalized
        return text, origins

    def _decomposed_origins(self, text: str, origins: Sequence[int]) -> list[int]:
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

    def split(self, normalized: str, cjk_spaced_out: bool = True) -> list[str]:
        """Normalized text -> words: split on whitespace, each punctuation character a word.
        ``cjk_spaced_out=False``: each CJK ideograph is a word, as spacing makes it."""
        tables = self.tables
        pattern = tables.words if cjk_spaced_out or not self.tokenize_chinese_chars else tables.words_and_cjk
        return pattern.findall(normalized)

    def spans(self, normalized: str) -> list[tuple[int, int]]:
        """Like ``split``, as (start, end) character positions in ``normalized``."""
        return [match.span() for match in self.tables.words.finditer(normalized)]

    def spaced_words(self, normalized: str, cjk_spaced_out: bool = True) -> list[str]:
        """``split(normalized)``, each word with the whitespace before it, so that their lengths add up
        to each word's place (one C loop). ``cjk_spaced_out=False``: each CJK ideograph is a word, as
        spacing makes it."""
        tables = self.tables
        pattern = tables.spaced_words if cjk_spaced_out or not self.tokenize_chinese_chars else tables.spaced_words_and_cjk
        return pattern.findall(normalized)

    def tokenize(self, text: str) -> list[str]:
        """Text -> words. CJK ideographs are split off as words, not spaced out: the same words, from
        a third of the work on CJK text (where spacing out moves every character)."""
        return self.split(self.normalize(text, space_out_cjk=False), cjk_spaced_out=False)

