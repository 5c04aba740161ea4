"""Which characters BERT's basic tokenizer treats as punctuation, control, accent, space or CJK.

The reference classifies characters with older tables than Python's `unicodedata` (Unicode 14.0
in Python 3.11): Unicode 8.0 for punctuation, control characters and accents (the
`unicode_categories` crate), 9.0 for NFD, and Rust's own Unicode 16 for lower-casing. We start
from Python's tables and apply the differences below, found by asking the reference about every
code point; tests/test_tokenizer.py::test_every_code_point_like_the_reference asks again.
Ranges of hex code points.
"""

from __future__ import annotations

import functools
import re
import sys
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

# Punctuation added since Unicode 8.0: part of a word for the reference.
_NEW_PUNCTUATION = """
061D 09FD 0A76 0C77 0C84 1B7D-1B7E 2E43-2E4F 2E52-2E5D 10EAD 10F55-10F59 10F86-10F89 1144B-1144F
1145A-1145B 1145D 11660-1166C 116B9 1183B 11944-11946 119E2 11A3F-11A46 11A9A-11A9C 11A9E-11AA2
11C41-11C45 11C70-11C71 11EF7-11EF8 11FFF 12FF1-12FF2 16E97-16E9A 16FE2 1E95E-1E95F"""
# Format characters added since Unicode 8.0: kept, where other format characters are removed.
_NEW_FORMAT = "0890-0891 08E2 110CD 13430-13438"
# Nonspacing marks added since Unicode 8.0: kept when accents are stripped.
_NEW_MARKS = """
07FD 0898-089F 08CA-08E1 09FE 0AFA-0AFF 0B55 0C04 0C3C 0D00 0D3B-0D3C 0D81 0EBA 180F 1885-1886
1ABF-1ACE 1DF6-1DFB A82C A8C5 A8FF A9BD 10D24-10D27 10EAB-10EAC 10F46-10F50 10F82-10F85 11070
11073-11074 110C2 111C9 111CF 1123E 1133B 11438-1143F 11442-11444 11446 1145E 1182F-11837
11839-1183A 1193B-1193C 1193E 11943 119D4-119D7 119DA-119DB 119E0 11A01-11A0A 11A33-11A38
11A3B-11A3E 11A47 11A51-11A56 11A59-11A5B 11A8A-11A96 11A98-11A99 11C30-11C36 11C38-11C3D 11C3F
11C92-11CA7 11CAA-11CB0 11CB2-11CB3 11CB5-11CB6 11D31-11D36 11D3A 11D3C-11D3D 11D3F-11D45 11D47
11D90-11D91 11D95 11D97 11EF3-11EF4 16F4F 16FE4 1CF00-1CF2D 1CF30-1CF46 1E000-1E006 1E008-1E018
1E01B-1E021 1E023-1E024 1E026-1E02A 1E130-1E136 1E2AE 1E2EC-1E2EF 1E944-1E94A"""
# Characters whose decomposition or combining class is newer than Unicode 9.0: NFD leaves them
# as they are and reorders no marks across them.
_NEW_DECOMPOSITIONS = """
07FD 0898-089F 08CA-08D3 09FE 0C3C 0D3B-0D3C 0EBA 1715 1ABF-1ACE 1DF6-1DFA A82C 10D24-10D27
10EAB-10EAC 10F46-10F50 10F82-10F85 11070 1133B 1145E 11839-1183A 11938 1193D-1193E 11943 119E0
11A34 11A47 11A99 11D42 11D44-11D45 11D97 16FF0-16FF1 1E130-1E136 1E2AE 1E2EC-1E2EF"""
# Categories changed since Unicode 8.0: still punctuation for the reference (U+166D CANADIAN
# SYLLABICS CHI SIGN, U+111C9 SHARADA SANDHI MARK), still a nonspacing mark (U+1734 HANUNOO SIGN
# PAMUDPOD).
_OLD_PUNCTUATION = "166D 111C9"
_OLD_MARKS = "1734"
# Lower-casing that differs, as "CAPITALS>FIRST_SMALL_LETTER": Unicode 16's new capitals, unknown to
# Python 3.11; and, a reference quirk, Σ always becomes σ: Rust lower-cases one character at a
# time, so there is no word-final ς as with Python's str.lower().
_NEW_LOWERCASE = """
03A3>03C3 1C89>1C8A A7CB>0264 A7CC>A7CD A7CE>A7CF A7D2>A7D3 A7D4>A7D5 A7DA>A7DB A7DC>019B
10D50-10D65>10D70 16EA0-16EB8>16EBB"""

# Whitespace, as Rust's char::is_whitespace. Cleaning removes \x0b, \x0c and \x85 first, as control
# characters (and Python's str.isspace() would add \x1c-\x1f, which are control characters too).
_WHITESPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# The "Chinese character" blocks of the original BERT. Reference quirk: its fifth block starts at
# U+2B920 where BERT's starts at U+2B820, so U+2B820-U+2B91F (early CJK Extension E) stay joined.
_CJK_BLOCKS = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
               (0x2B740, 0x2B81F), (0x2B920, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))


def _code_points(spec: str) -> set[int]:
    """'0890-0891 08E2' -> {0x890, 0x891, 0x8E2}."""
    points = set()
    for item in spec.split():
        first, _, last = item.partition("-")
        points.update(range(int(first, 16), int(last or first, 16) + 1))
    return points


def _char_class(points: Iterable[int]) -> str:
    """Code points -> a regex character class written as ranges: '[a-z\\u00e9]'."""
    ranges: list[list[int]] = []
    for point in sorted(points):
        if ranges and ranges[-1][1] == point - 1:
            ranges[-1][1] = point
        else:
            ranges.append([point, point])
    body = "".join(re.escape(chr(a)) + ("" if a == b else "-" + re.escape(chr(b))) for a, b in ranges)
    return f"[{body}]"


@dataclass(frozen=True)
class UnicodeTables:
    """The compiled character classes of the basic tokenizer (built once, on first use)."""

    control: re.Pattern[str]  # removed by cleaning
    whitespace: re.Pattern[str]  # replaced by " "
    cjk: re.Pattern[str]  # each gets a space on either side
    marks: re.Pattern[str]  # nonspacing marks, removed with the accents after NFD
    opaque_to_nfd: re.Pattern[str]  # NFD leaves these alone (capturing, for re.split)
    lowercase_fixes: re.Pattern[str]
    lowercase_fix: dict[str, str]
    words: re.Pattern[str]  # one punctuation character, or a run of neither punctuation nor space
    ascii_clean: dict[int, int | None]  # str.translate tables: cleaning all ASCII text needs
    ascii_clean_lower: dict[int, int | None]


@functools.cache
def unicode_tables() -> UnicodeTables:
    control, punctuation, marks = {0, 0xFFFD}, set(), set()
    for point in range(sys.maxunicode + 1):
        category = unicodedata.category(chr(point))
        if category in ("Cc", "Cf", "Co"):
            control.add(point)
        elif category[0] == "P":
            punctuation.add(point)
        elif category == "Mn":
            marks.add(point)
    control -= {ord("\t"), ord("\n"), ord("\r")} | _code_points(_NEW_FORMAT)
    # Like BERT, every printable ASCII character that is not a letter or digit splits words ($, +, ^, ...).
    punctuation |= {point for point in range(33, 127) if not chr(point).isalnum()}
    punctuation = (punctuation - _code_points(_NEW_PUNCTUATION)) | _code_points(_OLD_PUNCTUATION)
    marks = (marks - _code_points(_NEW_MARKS)) | _code_points(_OLD_MARKS)

    lowercase_fix = {}
    for item in _NEW_LOWERCASE.split():
        capitals, small = item.split(">")
        for offset, capital in enumerate(sorted(_code_points(capitals))):
            lowercase_fix[chr(capital)] = chr(int(small, 16) + offset)

    ascii_clean: dict[int, int | None] = {point: None for point in control if point < 128}
    ascii_clean.update({ord(space): ord(" ") for space in "\t\n\r"})
    punctuation_class = _char_class(punctuation)
    return UnicodeTables(
        control=re.compile(_char_class(control)),
        whitespace=re.compile(f"[{_WHITESPACE}]"),
        cjk=re.compile(_char_class(point for first, last in _CJK_BLOCKS for point in range(first, last + 1))),
        marks=re.compile(_char_class(marks)),
        opaque_to_nfd=re.compile(f"({_char_class(_code_points(_NEW_DECOMPOSITIONS))})"),
        lowercase_fixes=re.compile(_char_class(map(ord, lowercase_fix))),
        lowercase_fix=lowercase_fix,
        words=re.compile(f"{punctuation_class}|[^{punctuation_class[1:-1]}{_WHITESPACE}]+"),
        ascii_clean=ascii_clean,
        ascii_clean_lower={**ascii_clean, **{point: point + 32 for point in range(ord("A"), ord("Z") + 1)}},
    )
