"""Write minibert/tokenizer/unicode_data.py: the character tables of BERT's basic tokenizer, read off the reference.

The reference is the Rust ``tokenizers`` library behind transformers' BertTokenizer. Its normalizer
and pre-tokenizer classify characters with Unicode tables compiled into it (Unicode 8.0 categories,
9.0 NFD, Rust's own lower-casing), which no Python's ``unicodedata`` reproduces. So we do not
derive the tables from Unicode data at all: we ask the reference about every code point, in a few
large batches, and write down what it did, as ranges. minibert then uses only these tables.

    python tools/make_unicode_data.py            # rewrite minibert/tokenizer/unicode_data.py
    python tools/make_unicode_data.py --check    # exit 1 if the file differs from the reference

Needs the ``tokenizers`` package (the test extra installs it). tests/test_tokenizer.py runs
``render()`` and compares it with the committed file, so a reference that changes is noticed.
It lives in tools/, not in the package (it needs the reference) nor in tests/ (it is not a test).
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Iterable
from pathlib import Path

from tokenizers import normalizers, pre_tokenizers

OUTPUT = Path(__file__).resolve().parent.parent / "minibert" / "tokenizer" / "unicode_data.py"
SEPARATOR = "|"  # a starter that no step changes, so each probe's output can be cut apart
# Hangul syllables decompose by arithmetic (Unicode's algorithm); checked, not listed.
HANGUL_FIRST, HANGUL_COUNT, JAMO_L, JAMO_V, JAMO_T, V_COUNT, T_COUNT = 0xAC00, 11172, 0x1100, 0x1161, 0x11A7, 21, 28
# Two marks whose combining classes are the lowest (1) and the highest (240) there are: any other
# mark reorders against one of them, so they find every mark with a class.
LOWEST_MARK, HIGHEST_MARK = "\u0334", "\u0345"


def all_characters() -> list[str]:
    """Every code point but the surrogates and the separator."""
    return [chr(point) for point in range(sys.maxunicode + 1)
            if not 0xD800 <= point <= 0xDFFF and chr(point) != SEPARATOR]


def each(normalize, texts: list[str]) -> list[str]:
    """``normalize`` applied to each text, in one call."""
    outputs = normalize(SEPARATOR.join(texts)).split(SEPARATOR)
    assert len(outputs) == len(texts), "an output holds the separator"
    return outputs


def bert_normalizer(clean: bool = False, cjk: bool = False, strip: bool = False, lower: bool = False):
    return normalizers.BertNormalizer(clean_text=clean, handle_chinese_chars=cjk, strip_accents=strip,
                                      lowercase=lower).normalize_str


def hangul(char: str) -> str:
    index = ord(char) - HANGUL_FIRST
    trailing = index % T_COUNT
    jamo = chr(JAMO_L + index // (V_COUNT * T_COUNT)) + chr(JAMO_V + index % (V_COUNT * T_COUNT) // T_COUNT)
    return jamo + (chr(JAMO_T + trailing) if trailing else "")


def probe() -> dict:
    """Ask the reference about every code point; returns the tables as sets and dicts."""
    chars = all_characters()
    tables: dict = {}

    cleaned = each(bert_normalizer(clean=True), chars)
    tables["control"] = {ord(c) for c, out in zip(chars, cleaned) if out == ""}
    spaced = {ord(c) for c, out in zip(chars, cleaned) if out == " " and c != " "}
    assert all(out in ("", " ", c) for c, out in zip(chars, cleaned))

    tables["cjk"] = {ord(c) for c, out in zip(chars, each(bert_normalizer(cjk=True), chars)) if out == f" {c} "}

    decomposed = each(normalizers.NFD().normalize_str, chars)
    decompositions = {ord(c): out for c, out in zip(chars, decomposed) if out != c}
    for point in range(HANGUL_FIRST, HANGUL_FIRST + HANGUL_COUNT):
        assert decompositions.pop(point) == hangul(chr(point))
    tables["decompositions"] = decompositions
    # The characters NFD can output; of these, accent stripping drops the nonspacing marks.
    syllables = range(HANGUL_FIRST, HANGUL_FIRST + HANGUL_COUNT)
    stable = [c for c in chars if ord(c) not in decompositions and ord(c) not in syllables]
    stripped = each(bert_normalizer(strip=True), stable)
    tables["marks"] = {ord(c) for c, out in zip(stable, stripped) if out == ""}
    assert all(out in ("", c) for c, out in zip(stable, stripped))
    strip = bert_normalizer(strip=True)
    for point, pieces in decompositions.items():  # stripping is NFD, then dropping those marks
        assert strip(chr(point)) == "".join(p for p in pieces if ord(p) not in tables["marks"]), hex(point)

    tables["combining_classes"] = combining_classes(stable)

    lowered = each(bert_normalizer(lower=True), chars)
    tables["lowercase"] = {ord(c): out for c, out in zip(chars, lowered) if out != c}

    # Splitting: each character between two letters shows as a word of its own (punctuation),
    # as nothing (whitespace) or as part of the word.
    words = pre_tokenizers.BertPreTokenizer().pre_tokenize_str(" ".join(f"a{c}a" for c in chars))
    words = [word for word, _ in words]
    punctuation, whitespace, position = set(), set(), 0
    for c in chars:
        if words[position] == f"a{c}a":
            position += 1
        elif words[position:position + 3] == ["a", c, "a"]:
            punctuation.add(ord(c))
            position += 3
        else:
            assert words[position:position + 2] == ["a", "a"], (hex(ord(c)), words[position:position + 3])
            whitespace.add(ord(c))
            position += 2
    punctuation.add(ord(SEPARATOR))  # not probed; ASCII "|" splits as BERT's other ASCII symbols do
    assert bert_normalizer(clean=True, cjk=True, strip=True, lower=True)(SEPARATOR) == SEPARATOR
    assert whitespace == spaced | ({0x0B, 0x0C, 0x85} & tables["control"]) | {ord(" ")}
    tables["punctuation"], tables["whitespace"] = punctuation, whitespace
    return tables


def combining_classes(stable: list[str]) -> dict[int, set[int]]:
    """The canonical combining class of each mark NFD reorders, found by how NFD orders pairs.

    The reference only tells us an order; the numbers are Unicode's (which never change for a
    character once assigned), read from Python's tables and checked against that order.
    """
    import unicodedata

    nfd = normalizers.NFD().normalize_str
    low_after = each(nfd, [f"a{c}{LOWEST_MARK}" for c in stable])
    high_before = each(nfd, [f"a{HIGHEST_MARK}{c}" for c in stable])
    marks = [c for c, low, high in zip(stable, low_after, high_before)
             if low == f"a{LOWEST_MARK}{c}" or high == f"a{c}{HIGHEST_MARK}" or c in (LOWEST_MARK, HIGHEST_MARK)]

    def compare(first: str, second: str) -> int:  # NFD moves the higher class after the lower
        if nfd(f"a{first}{second}") == f"a{second}{first}":
            return 1
        return -1 if nfd(f"a{second}{first}") == f"a{first}{second}" else 0

    ordered = sorted(marks, key=functools.cmp_to_key(compare))
    classes: dict[int, set[int]] = {}
    previous = None
    for mark in ordered:
        value = unicodedata.combining(mark)
        assert value > 0 and (previous is None or (value == previous[0]) == (compare(previous[1], mark) == 0)), \
            f"Python's class {value} of U+{ord(mark):04X} disagrees with the reference's order"
        classes.setdefault(value, set()).add(ord(mark))
        previous = (value, mark)
    return classes


# ---- writing ---------------------------------------------------------------------------------


def ranges(points: Iterable[int]) -> list[tuple[int, int]]:
    spans: list[list[int]] = []
    for point in sorted(points):
        if spans and spans[-1][1] == point - 1:
            spans[-1][1] = point
        else:
            spans.append([point, point])
    return [(first, last) for first, last in spans]


def wrap(items: list[str], indent: str = "") -> str:
    """Items separated by spaces, in lines of at most 100 characters."""
    lines, line = [], indent
    for item in items:
        if len(line) + len(item) + 1 > 100:
            lines.append(line.rstrip())
            line = indent
        line += item + " "
    lines.append(line.rstrip())
    return "\n".join(lines)


def hex_ranges(points: Iterable[int]) -> str:
    return '"""\n' + wrap([f"{a:04X}" if a == b else f"{a:04X}-{b:04X}" for a, b in ranges(points)]) + '"""'


def lowercase_runs(mapping: dict[int, str]) -> str:
    """One-character mappings as runs 'FIRST-LAST/STEP:DELTA' (STEP 1 or 2), the others listed."""
    items, runs = [], []
    for point in sorted(mapping):
        target = mapping[point]
        if len(target) != 1:
            items.append((point, f"{point:04X}>" + ",".join(f"{ord(c):04X}" for c in target)))
            continue
        delta = ord(target) - point
        last = runs[-1] if runs else None
        # A run grows by its step; a run of one takes the step of its second member.
        if last and last[3] == delta and (point - last[1] == last[2] or (last[0] == last[1] and point - last[1] == 2)):
            last[2], last[1] = point - last[1], point
        else:
            runs.append([point, point, 1, delta])
    for first, last, step, delta in runs:
        span = f"{first:04X}" if first == last else f"{first:04X}-{last:04X}" + ("" if step == 1 else f"/{step}")
        items.append((first, f"{span}:{delta:+d}"))
    items = [text for _, text in sorted(items)]
    return '"""\n' + wrap(items) + '"""'


def render(tables: dict) -> str:
    """The text of minibert/tokenizer/unicode_data.py."""
    import tokenizers

    classes = "\n".join(f"    {value}: {hex_ranges(points)},"
                        for value, points in sorted(tables["combining_classes"].items()))
    decompositions = wrap([f"{point:04X}>" + ",".join(f"{ord(c):04X}" for c in pieces)
                           for point, pieces in sorted(tables["decompositions"].items())])
    return f'''"""The character tables of BERT's basic tokenizer, as the reference applies them. Generated: do not edit.

Written by tools/make_unicode_data.py from tokenizers {tokenizers.__version__} (the Rust library behind
transformers' BertTokenizer) by asking it about every code point, so that minibert gives the
reference's ids whatever Unicode version the running Python's unicodedata has. Hex code points;
"A-B" is a range.
"""

# Removed by cleaning (control and format characters, U+FFFD).
CONTROL = {hex_ranges(tables["control"])}

# Whitespace: cleaning makes each a space (after removing the control characters among them),
# and words are split on them.
WHITESPACE = {hex_ranges(tables["whitespace"])}

# Punctuation: each is a word of its own.
PUNCTUATION = {hex_ranges(tables["punctuation"])}

# "Chinese characters": a space is put either side of each.
CJK = {hex_ranges(tables["cjk"])}

# Nonspacing marks: removed after NFD when accents are stripped.
MARKS = {hex_ranges(tables["marks"])}

# Canonical combining classes of the marks NFD reorders (class: code points); others are starters.
COMBINING_CLASSES = {{
{classes}
}}

# NFD, fully decomposed and reordered: "CHAR>PIECE,PIECE". Hangul syllables (AC00-D7A3) decompose
# by Unicode's arithmetic instead.
DECOMPOSITIONS = """
{decompositions}"""

# Lower-casing, one character at a time: "FIRST-LAST/STEP:DELTA" maps every STEP-th code point of
# the range (STEP 1 if absent) to itself plus DELTA; "CHAR>PIECE,PIECE" maps to several.
LOWERCASE = {lowercase_runs(tables["lowercase"])}
'''


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed file instead of writing")
    text = render(probe())
    if parser.parse_args().check:  # the tables, whichever tokenizers version wrote them
        def tables(module_text: str) -> str:
            return module_text[module_text.index("\nCONTROL"):]

        same = tables(OUTPUT.read_text(encoding="utf-8")) == tables(text)
        print(f"{OUTPUT} {'matches' if same else 'differs from'} the reference")
        return 0 if same else 1
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT} ({len(text):,} characters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
