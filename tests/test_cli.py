"""`python -m minibert`: the walkthrough, from a local checkpoint and offline with the random fallback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import REPO, minilm_dir
from minibert.cli import main


def test_walkthrough_from_text_on_a_local_checkpoint(capsys):
    """A folder with weights and vocab.txt: minibert's own tokenizer turns the sentences into ids."""
    if not (minilm_dir() / "vocab.txt").is_file():
        pytest.skip("all-MiniLM-L6-v2 is absent; run `python tests/fetch_minilm.py`")
    assert main(["--model", str(minilm_dir())]) == 0
    printed = capsys.readouterr().out
    assert "BertConfig {" in printed and "Loaded" in printed and "note:" not in printed
    assert "'Hello!'   -> tokens ['hello', '!']" in printed
    assert "input_ids: [[101, 7592, 999, 102], [101, 4658, 1012, 102], [101, 3835, 999, 102]]" in printed
    assert "last_hidden_state: (3, 4, 384)" in printed


def test_walkthrough_without_a_vocabulary_uses_the_seed_ids(base_cased_checkpoint, capsys):
    assert main(["--model", str(base_cased_checkpoint)]) == 0
    printed = capsys.readouterr().out
    assert "note: no tokenizer" in printed and "last_hidden_state: (3, 4, 768)" in printed


def test_walkthrough_offline_falls_back_to_random_weights(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path), "HF_HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "minibert"], capture_output=True, text=True, env=env, cwd=REPO,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    notices = [line for line in result.stdout.splitlines() if line.startswith("note:")]
    assert len(notices) == 1 and "seeded random weights" in notices[0]
    assert "last_hidden_state: (3, 4, 768)" in result.stdout
