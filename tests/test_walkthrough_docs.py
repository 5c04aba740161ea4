"""Every snippet of docs/walkthrough.md and docs/walkthrough.ko.md runs, offline, and prints what the
page shows.

The pages use "bert-base-cased". Here that name resolves, through a hub cache laid out in a temp
folder with HF_HUB_OFFLINE=1, to a tiny checkpoint with bert-base-cased's tensor names and a small
cased vocabulary (tests/text_checkpoint.py). An output block preceded by the page's visible mark line
(REAL_WEIGHTS_MARKS: "> Output with the real bert-base-cased weights:" in English) depends on the real
weights: its snippet still runs, but its text is not compared. Every other output block must match line
for line; a line "..." stands for any lines. Nothing else may stand between a snippet and its output
block, so a misspelt mark fails instead of silently leaving a block unchecked.

Snippets run in order in one child process (so the hub cache location is read fresh), in one
namespace: ```python blocks as code, ```console blocks as `python -m minibert ...` command lines
through minibert.cli.main.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import REPO
from text_checkpoint import write_hub_cache, write_text_checkpoint

PAGES = [REPO / "docs" / "walkthrough.md", REPO / "docs" / "walkthrough.ko.md"]
# The line, visible on the rendered page, that stands just before an output needing the real weights.
REAL_WEIGHTS_MARKS = {
    "walkthrough.md": "> Output with the real bert-base-cased weights:",
    "walkthrough.ko.md": "> 실제 bert-base-cased 가중치로 얻은 출력:",
}
SEPARATOR = "@@@ snippet {} @@@"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.MULTILINE | re.DOTALL)

DRIVER = r"""
import contextlib, io, json, shlex, sys
from minibert.cli import main

snippets = json.loads(sys.stdin.read())
namespace = {"__name__": "__walkthrough__"}
for index, (kind, code) in enumerate(snippets):
    print(SEPARATOR.format(index), flush=True)
    if kind == "python":
        exec(compile(code, f"<snippet {index}>", "exec"), namespace)
        continue
    for line in code.splitlines():
        words = shlex.split(line.removeprefix("$ "))
        words = words[3:] if words[:3] == ["python", "-m", "minibert"] else words[1:]
        status = main(words)
        if status != 0:
            raise SystemExit(f"snippet {index}: {line} exited with {status}")
"""


@dataclass
class Snippet:
    kind: str  # "python" or "console"
    code: str
    expected: str | None  # the output block after it, None if none
    checked: bool  # False when the output depends on the real bert-base-cased
    line: int


def parse(page: Path, mark: str | None = None) -> list[Snippet]:
    """The page's runnable blocks, each with the output block that follows it.

    Raises ValueError for an output block that does not directly follow a snippet (only ``mark``, the
    page's real-weights line, may stand between them), so that no output block goes unchecked unseen.
    """
    mark = REAL_WEIGHTS_MARKS[page.name] if mark is None else mark
    text = page.read_text(encoding="utf-8")
    snippets: list[Snippet] = []
    last_end = 0
    for match in FENCE.finditer(text):
        language, body = match.group(1), match.group(2)
        between = text[last_end:match.start()].strip()
        last_end = match.end()
        line = text.count("\n", 0, match.start()) + 1
        if language in ("python", "console"):
            snippets.append(Snippet(language, body, None, True, line))
        elif language == "text":
            if not snippets or snippets[-1].expected is not None or between not in ("", mark):
                raise ValueError(f"{page.name}, line {line}: an output block must follow a snippet directly, "
                                 f"with nothing or {mark!r} between; found {between[-80:]!r}")
            snippets[-1].expected = body
            snippets[-1].checked = between != mark
    return snippets


def matches(expected: str, actual: str) -> bool:
    """Line by line, trailing spaces and blank lines aside; an expected line "..." matches any run of lines."""
    pattern = "".join(r"(?:.*\n)*?" if line.strip() == "..." else re.escape(line.rstrip()) + r"\n"
                      for line in expected.rstrip().splitlines())
    return re.fullmatch(pattern, "".join(line.rstrip() + "\n" for line in actual.rstrip().splitlines())) is not None


@pytest.fixture(scope="module")
def stand_in_cache(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("walkthrough")
    return write_hub_cache(root / "hub", write_text_checkpoint(root / "model"))


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_snippet_runs_and_prints_what_the_page_shows(page, stand_in_cache, tmp_path):
    pytest.importorskip("matplotlib")  # the page draws an attention map (the [plot] extra, in [test] too)
    snippets = parse(page)
    assert len(snippets) >= 10 and sum(s.expected is not None and s.checked for s in snippets) >= 5
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(stand_in_cache), "HF_HOME": str(tmp_path),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", f"SEPARATOR = {SEPARATOR!r}\n" + DRIVER],
                            input=json.dumps([(s.kind, s.code) for s in snippets]), capture_output=True,
                            text=True, env=env, cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    outputs = re.split(r"^@@@ snippet \d+ @@@\n", result.stdout, flags=re.MULTILINE)[1:]
    assert len(outputs) == len(snippets)
    for snippet, output in zip(snippets, outputs):
        if snippet.expected is not None and snippet.checked:
            assert matches(snippet.expected, output), (
                f"{page.name}, snippet at line {snippet.line}:\n--- shown\n{snippet.expected}--- printed\n{output}")
    assert (tmp_path / "attention.png").stat().st_size > 10_000  # the attention steps wrote their images
    assert (tmp_path / "head.png").stat().st_size > 10_000


def test_matches_understands_ellipsis():
    assert matches("a\n...\nd\n", "a\nb\nc\nd\n") and matches("a\n...\n", "a\n")
    assert not matches("a\nd\n", "a\nb\nd\n") and not matches("a\n...\nd\n", "a\nb\n")


def test_parse_tells_marked_outputs_and_refuses_a_misspelt_mark(tmp_path):
    page = tmp_path / "walkthrough.md"
    mark = REAL_WEIGHTS_MARKS["walkthrough.md"]
    page.write_text(f"```python\nprint(1)\n```\n\n```text\n1\n```\n\n```python\nprint(2)\n```\n\n{mark}\n```text\n2\n```\n",
                    encoding="utf-8")
    assert [(s.expected, s.checked) for s in parse(page)] == [("1\n", True), ("2\n", False)]
    page.write_text("```python\nprint(2)\n```\n\n> Output with the real bert-base-cased weight:\n```text\n2\n```\n",
                    encoding="utf-8")
    with pytest.raises(ValueError, match="must follow a snippet directly"):
        parse(page)


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_the_real_weights_mark_is_visible(page):
    text = page.read_text(encoding="utf-8")
    assert "<!--" not in text  # a comment does not show on the rendered page
    assert text.count(REAL_WEIGHTS_MARKS[page.name]) >= 5
    assert sum(not s.checked for s in parse(page)) == text.count(REAL_WEIGHTS_MARKS[page.name])
