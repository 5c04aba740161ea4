"""`python -m minibert`: the walkthrough, from a local checkpoint and offline with the random fallback."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import REPO
from minibert.cli import main


def test_walkthrough_on_a_local_checkpoint(base_cased_checkpoint, capsys):
    assert main(["--model", str(base_cased_checkpoint)]) == 0
    printed = capsys.readouterr().out
    assert "BertConfig {" in printed and "Loaded" in printed
    assert "last_hidden_state: (3, 4, 768)" in printed and "note:" not in printed


def test_walkthrough_offline_falls_back_to_random_weights(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path), "HF_HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "minibert"], capture_output=True, text=True, env=env, cwd=REPO,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    notices = [line for line in result.stdout.splitlines() if line.startswith("note:")]
    assert len(notices) == 1 and "seeded random weights" in notices[0]
    assert "last_hidden_state: (3, 4, 768)" in result.stdout
