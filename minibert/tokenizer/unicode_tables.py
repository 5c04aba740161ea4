"""The basic tokenizer's character tables, compiled for use: regexes and ``str.translate`` maps.

The data is ``unicode_data.py`` (``data`` here), read off the reference by
``tools/make_unicode_data.py``. Nothing here asks Python's ``unicodedata`` or ``str.lower()``,
whose answers change with the Python version (Unicode 13.0 in 3.10, 14.0 in 3.11, 15.0 in 3.12,
...): the ids are the same on every Python. Built once, on first use, in a few milliseconds.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from . import unicode_data as data

# Hangul syllables decompose by Unicode's arithmetic: leading consonant, vowel, optional trailing one.
_HANGUL_FIRST, _HANGUL_COUNT = 0xAC00, 11172
_JAMO_LEADING, _JAMO_VOWEL, _JAMO_TRAILING, _VOWELS, _TRAILINGS = 0x1100, 0x1161, 0x11A7, 21, 28


def ranges(spec: str) -> list[tuple[int, int]]:
    """'0890-0891 08E2' -> [(0x890, 0x891), (0x8E2, 0x8E2)]."""
    spans = []
    for item in spec.split():
        first, _, last = item.partition("-")
        spans.append((int(first, 16), int(last or first, 16)))
    return spans


def code_points(spec: str) -> list[int]:
    """'0890-0891 08E2' -> [0x890, 0x891, 0x8E2]."""
    return [point for first, last in ranges(spec) for point in range(first, last + 1)]


def _char_class(spec: str) -> str:
    """'0041-005A 00E9' -> the regex character class '[A-Z\u00e9]'."""
    body = "".join(re.escape(chr(first)) + ("" if first == last else "-" + re.escape(chr(last)))
                   for first, last in ranges(spec))
    return f"[{body}]"


def _hex_chars(spec: str) -> str:
    """'0041,0300' -> 'A\u0300'."""
    return "".join(chr(int(point, 16)) for point in spec.split(","))


def _hangul() -> dict[int, str]:
    """Hangul syllables -> their jamo, in code point order (leading, then vowel, then trailing or none)."""
    leading = [chr(_JAMO_LEADING + index) for index in range(_HANGUL_COUNT // (_VOWELS * _TRAILINGS))]
    vowels = [chr(_JAMO_VOWEL + index) for index in range(_VOWELS)]
    trailing = [""] + [chr(_JAMO_TRAILING + index) for index in range(1, _TRAILINGS)]
    jamo = [first + vowel + last for first in leading for vowel in vowels for last in trailing]
    return dict(zip(range(_HANGUL_FIRST, _HANGUL_FIRST + _HANGUL_COUNT), jamo))


def _lowercase(spec: str) -> dict[int, str]:
    """'0041-005A:+32 0100-012E/2:+1 0130>0069,0307' -> {code point: its lower case}."""
    lower = {}
    for item in spec.split():
        if ">" in item:
            point, pieces = item.split(">")
            lower[int(point, 16)] = _hex_chars(pieces)
            continue
        span, delta = item.split(":")
        span, _, step = span.partition("/")
        first, _, last = span.partition("-")
        for point in range(int(first, 16), int(last or first, 16) + 1, int(step or 1)):
            lower[point] = chr(point + int(delta))
    return lower


@dataclass(frozen=True)
class UnicodeTables:
    """The compiled character classes and maps of the basic tokenizer."""

    control: re.Pattern[str]  # removed by cleaning
    whitespace: re.Pattern[str]  # replaced by " "
    cjk: re.Pattern[str]  # each gets a space on either side
    decompose: dict[int, str]  # str.translate map: each character to its NFD
    combining_class: dict[str, int]  # the marks NFD reorders; every other character is a starter (0)
    mark_runs: re.Pattern[str]  # two or more of those marks in a row: what canonical reordering sorts
    marks: re.Pattern[str]  # nonspacing marks, removed with the accents after NFD
    lowercase: dict[int, str]  # str.translate map: lower-casing, one character at a time
    words: re.Pattern[str]  # one punctuation character, or a run of neither punctuation nor space
    words_and_cjk: re.Pattern[str]  # the same, and each CJK ideograph a word, as spacing them out makes it
    # Each word with the whitespace before it (the offsets path: see basic.py), and the same where CJK
    # ideographs were not spaced out: each ideograph is then a word, as spacing makes it.
    spaced_words: re.Pattern[str]
    spaced_words_and_cjk: re.Pattern[str]
    whitespace_chars: str  # what whitespace_class matches, for str.lstrip
    ascii_clean: dict[int, int | None]  # str.translate tables: cleaning all ASCII text needs
    ascii_clean_lower: dict[int, int | None]


@functools.cache
def unicode_tables() -> UnicodeTables:
    """The tables, compiled from ``unicode_data`` (once per process)."""
    whitespace = code_points(data.WHITESPACE)
    punctuation, whitespace_class = _char_class(data.PUNCTUATION), _char_class(data.WHITESPACE)
    combining_class = {chr(point): value for value, spec in data.COMBINING_CLASSES.items()
                       for point in code_points(spec)}
    decompose = _hangul()
    for item in data.DECOMPOSITIONS.split():
        point, pieces = item.split(">")
        decompose[int(point, 16)] = _hex_chars(pieces)
    lower = _lowercase(data.LOWERCASE)

    ascii_clean: dict[int, int | None] = {point: None for first, last in ranges(data.CONTROL) if first < 128
                                          for point in range(first, min(last, 127) + 1)}
    ascii_clean.update({point: ord(" ") for point in whitespace if point < 128 and point not in ascii_clean
                        and point != ord(" ")})
    ascii_lower = {point: ord(lower[point]) for point in lower if point < 128}
    return UnicodeTables(
        control=re.compile(_char_class(data.CONTROL)),
        whitespace=re.compile(whitespace_class),
        cjk=re.compile(_char_class(data.CJK)),
        decompose=decompose,
        combining_class=combining_class,
        mark_runs=re.compile(f"[{''.join(map(re.escape, combining_class))}]{{2,}}"),
        marks=re.compile(_char_class(data.MARKS)),
        lowercase=lower,
        words=re.compile(f"{punctuation}|[^{punctuation[1:-1]}{whitespace_class[1:-1]}]+"),
        words_and_cjk=re.compile(f"{_char_class(data.CJK)}|{punctuation}|"
                                 f"[^{punctuation[1:-1]}{whitespace_class[1:-1]}{_char_class(data.CJK)[1:-1]}]+"),
        spaced_words=re.compile(f"{whitespace_class}*(?:{punctuation}|[^{punctuation[1:-1]}{whitespace_class[1:-1]}]+)"),
        spaced_words_and_cjk=re.compile(
            f"{whitespace_class}*(?:{_char_class(data.CJK)}|{punctuation}|"
            f"[^{punctuation[1:-1]}{whitespace_class[1:-1]}{_char_class(data.CJK)[1:-1]}]+)"),
        whitespace_chars="".join(map(chr, whitespace)),
        ascii_clean=ascii_clean,
        ascii_clean_lower={**ascii_clean, **ascii_lower},
    )
