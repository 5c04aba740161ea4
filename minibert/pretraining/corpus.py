"""A corpus that ships with Python: the paragraphs of the standard library's docstrings.

Every docstring of every module, class and function in the standard library's source (tests, IDLE's
tests and installed packages left out), split into paragraphs at blank lines, with whitespace folded:
about 13,500 paragraphs and 1.6 MB on Python 3.11. The held-out split is chosen by a checksum of each
paragraph's text, so it is the same on every run and machine; which paragraphs exist depends on the
Python version, as the standard library does.
"""

from __future__ import annotations

import ast
import re
import sysconfig
import zlib
from pathlib import Path

HELD_OUT_EVERY = 20  # one paragraph in 20 (by checksum) is held out for evaluation
_SKIPPED_PARTS = ("site-packages", "dist-packages", "test", "tests", "idle_test")


def stdlib_source_files(root: Path | None = None) -> list[Path]:
    """The standard library's .py files, sorted, without tests or installed packages."""
    root = Path(sysconfig.get_paths()["stdlib"]) if root is None else Path(root)
    files = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).parts
        if any(part in _SKIPPED_PARTS or part.startswith("test_") for part in parts):
            continue
        files.append(path)
    return files


def docstring_paragraphs(files: list[Path] | None = None, min_words: int = 5) -> list[str]:
    """Every distinct docstring paragraph of at least ``min_words`` words, sorted.

    Read from the source with ``ast`` rather than by importing the modules: nothing runs, and
    modules that need a missing C extension or another platform still count.
    """
    paragraphs = set()
    for path in stdlib_source_files() if files is None else files:
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue  # a template or a file for another Python: not part of the corpus
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                docstring = ast.get_docstring(node)
                for paragraph in re.split(r"\n\s*\n", docstring or ""):
                    paragraph = " ".join(paragraph.split())
                    if len(paragraph.split()) >= min_words:
                        paragraphs.add(paragraph)
    return sorted(paragraphs)


def is_held_out(paragraph: str) -> bool:
    """Whether a paragraph belongs to the held-out split: decided by its CRC-32, so stable everywhere."""
    return zlib.crc32(paragraph.encode("utf-8")) % HELD_OUT_EVERY == 0


def split_corpus(paragraphs: list[str]) -> tuple[list[str], list[str]]:
    """(training paragraphs, held-out paragraphs), each in the input's order."""
    train = [paragraph for paragraph in paragraphs if not is_held_out(paragraph)]
    held_out = [paragraph for paragraph in paragraphs if is_held_out(paragraph)]
    return train, held_out
