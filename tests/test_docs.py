"""The README stays one screen, every relative link and file path in the docs leads somewhere, and the
docs say what is true of the current code, with no history of earlier versions."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import REPO

README_MAX_LINES = 200
PAGES = [REPO / "README.md", REPO / "DEVELOPERS.md", *sorted((REPO / "docs").glob("*.md"))]
# Phrases that tell the history of the code instead of what it is.
HISTORY_PHRASES = ("not yet", "has not yet", "this stop", "before the rewrite", "after the rewrite",
                   "measured when this was planned", "the earlier", "since the varlen rewrite")
# [text](target): a Markdown link; the target ends at whitespace or the closing parenthesis.
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
# `minibert/fast/unpadded.py`, `benchmarks/gpu_check.sh`: a path in the repository, in backticks.
CODE_PATH = re.compile(r"`((?:minibert|tests|benchmarks|examples|tools|docs)/[\w./-]+\.(?:py|sh|md|png))`")


def relative_links(text: str) -> list[str]:
    """The link targets of ``text`` that point into the repository (not web addresses, not mail)."""
    return [target for target in LINK.findall(text) if not re.match(r"[a-z][a-z+.-]*:", target)]


def broken_links(page: Path) -> list[str]:
    """Relative links of ``page`` whose file (the part before any #anchor) does not exist."""
    broken = []
    for target in relative_links(page.read_text(encoding="utf-8")):
        path = target.split("#", 1)[0]
        if path and not (page.parent / path).exists():
            broken.append(target)
    return broken


def history_phrases(text: str) -> list[str]:
    lowered = text.lower()
    return [phrase for phrase in HISTORY_PHRASES if phrase in lowered]


def test_readme_is_one_screen():
    lines = (REPO / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move details to docs/ (at most {README_MAX_LINES})"


def test_readme_links_at_least_three_docs_pages():
    pages = {target.split("#", 1)[0] for target in relative_links((REPO / "README.md").read_text(encoding="utf-8"))
             if target.startswith("docs/") and target.split("#", 1)[0].endswith(".md")}
    assert len(pages) >= 3, pages


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO)))
def test_every_relative_link_leads_to_a_file(page):
    assert broken_links(page) == []


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO)))
def test_every_file_path_named_exists(page):
    named = CODE_PATH.findall(page.read_text(encoding="utf-8"))
    assert [path for path in named if not (REPO / path).exists()] == []


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO)))
def test_no_history_phrasing(page):
    assert history_phrases(page.read_text(encoding="utf-8")) == []


def test_the_checks_catch_what_they_guard(tmp_path):
    page = tmp_path / "page.md"
    (tmp_path / "there.md").write_text("x", encoding="utf-8")
    page.write_text("[ok](there.md#a) [web](https://arxiv.org/abs/1810.04805) [gone](missing.md) [anchor](#top)",
                    encoding="utf-8")
    assert broken_links(page) == ["missing.md"]
    assert "not yet" in history_phrases("The GPU path has Not yet run.")
    assert history_phrases("The GPU path is tested on the CPU.") == []
    assert CODE_PATH.findall("see `minibert/unpadded.py` and `minibert/fast/unpadded.py`") == [
        "minibert/unpadded.py", "minibert/fast/unpadded.py"]
