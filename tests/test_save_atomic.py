"""Saving is all or nothing: a save killed at any moment leaves the old model, the new one, or a
folder that refuses to load with a clear error; never new weights under an old config.json.

A child process saves over a good copy and is killed (SIGKILL) before its N-th file-system call,
for every N until a save runs to its end, then at a few moments in time. The child forks one
grandchild per kill from a process that has already imported torch, so the run takes seconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

import minibert
from minibert import BertModel, BertTokenizer

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the kill test forks (POSIX only)")

# The child: for each job, copy the old folder, fork a grandchild that saves the new object over it
# and SIGKILLs itself just before its N-th call in CALLS (N = 1, 2, ... until a save completes),
# then kill grandchildren from outside at moments spread over one save's duration.
KILLER = r"""
import builtins, io, json, os, shutil, signal, sys, time
from pathlib import Path

import torch

torch.set_num_threads(1)  # no thread pool in the process that forks
from minibert import BertModel, BertTokenizer

# The calls that can change what the folder shows: renames, removals, and files opened for writing.
CALLS = [(os, "replace"), (os, "rename"), (os, "unlink"), (os, "remove"), (io, "open"), (builtins, "open")]


def die_before_call(number):
    count = [0]
    for module, name in CALLS:
        original = getattr(module, name)

        def counted(*args, _original=original, **kwargs):
            count[0] += 1
            if count[0] == number:
                os.kill(os.getpid(), signal.SIGKILL)
            return _original(*args, **kwargs)

        setattr(module, name, counted)


def save_in_grandchild(saved, target, number=None):
    pid = os.fork()
    if pid == 0:
        if number is not None:
            die_before_call(number)
        saved.save_pretrained(target)
        os._exit(0)
    return pid


results = []
for job in json.loads(sys.argv[1]):
    loader = {"model": BertModel, "tokenizer": BertTokenizer}[job["kind"]]
    saved = loader.from_pretrained(job["new"])
    work = Path(job["work"])
    number, killed = 0, True
    while killed:
        number += 1
        target = work / f"call-{number}"
        shutil.copytree(job["old"], target)
        start = time.perf_counter()
        _, status = os.waitpid(save_in_grandchild(saved, target, number), 0)
        duration = time.perf_counter() - start
        killed = os.WIFSIGNALED(status)
        results.append({"kind": job["kind"], "folder": str(target), "killed": killed})
    for index in range(6):
        target = work / f"time-{index}"
        shutil.copytree(job["old"], target)
        pid = save_in_grandchild(saved, target)
        time.sleep(duration * index / 5)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        results.append({"kind": job["kind"], "folder": str(target), "killed": True})
print(json.dumps(results))
"""


def model_state(folder: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    model = BertModel.from_pretrained(folder)
    return model.config.to_dict(), model.state_dict()


def tokenizer_state(folder: Path) -> tuple:
    """What minibert loads, and whether transformers would read a tokenizer.json instead (only the old
    folder has one: a save removes it with the files it replaces, never later)."""
    tokenizer = BertTokenizer.from_pretrained(folder)
    return (tokenizer.id_to_token, tokenizer.do_lower_case, tokenizer.strip_accents, tokenizer.model_max_length,
            (folder / "tokenizer.json").exists())


def same_model(a: tuple[dict, dict[str, torch.Tensor]], b: tuple[dict, dict[str, torch.Tensor]]) -> bool:
    return a[0] == b[0] and a[1].keys() == b[1].keys() and all(torch.equal(a[1][k], b[1][k]) for k in a[1])


def changed_model(old: Path, folder: Path) -> Path:
    """The old model with every weight x1.01, another activation and another LayerNorm epsilon."""
    model = BertModel.from_pretrained(old, hidden_act="gelu_new", layer_norm_eps=1e-5)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(1.01)
    return model.save_pretrained(folder)


def tokenizer_folder(folder: Path, words: list[str], **settings) -> Path:
    folder.mkdir(parents=True)
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    BertTokenizer(folder / "vocab.txt", **settings).save_pretrained(folder)
    return folder


def run_killer(jobs: list[dict], cwd: Path) -> list[dict]:
    # The child imports the minibert this test imported (not one that its working directory offers).
    path = os.pathsep.join([str(Path(minibert.__file__).parent.parent), os.environ.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, "-c", KILLER, json.dumps(jobs)], capture_output=True, text=True,
                          timeout=300, cwd=cwd, env={**os.environ, "PYTHONPATH": path, "PYTHONWARNINGS": "ignore"})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_killed_save_leaves_old_new_or_a_clear_error(tiny_checkpoints, tmp_path):
    old_model = tiny_checkpoints["tiny"]  # written by transformers: no trace of minibert in it
    new_model = changed_model(old_model, tmp_path / "new-model")
    old_tokenizer = tokenizer_folder(tmp_path / "old-tok", ["hello", "world"])
    from conftest import transformers  # the old folder as transformers leaves it: with its tokenizer.json

    transformers.BertTokenizerFast(vocab_file=str(old_tokenizer / "vocab.txt")).backend_tokenizer.save(
        str(old_tokenizer / "tokenizer.json"))
    new_tokenizer = tokenizer_folder(tmp_path / "new-tok", ["Hello", "World", "##s"], do_lower_case=False,
                                     model_max_length=128)
    jobs = [dict(kind="model", old=str(old_model), new=str(new_model), work=str(tmp_path / "model-kills")),
            dict(kind="tokenizer", old=str(old_tokenizer), new=str(new_tokenizer), work=str(tmp_path / "tok-kills"))]
    results = run_killer(jobs, tmp_path)
    new_model_object, new_tokenizer_object = BertModel.from_pretrained(new_model), BertTokenizer.from_pretrained(new_tokenizer)

    states = {"model": (model_state, [model_state(old_model), model_state(new_model)]),
              "tokenizer": (tokenizer_state, [tokenizer_state(old_tokenizer), tokenizer_state(new_tokenizer)])}
    seen: dict[str, set[str]] = {result["kind"]: set() for result in results}
    for result in results:
        read, (old, new) = states[result["kind"]]
        folder = Path(result["folder"])
        try:
            state = read(folder)
        except (OSError, ValueError) as error:
            # The one refusal a kill may leave: the file that completes a save is missing.
            assert re.search(r"interrupted|has no (config\.json|vocab\.txt)", str(error)), (folder, error)
            seen[result["kind"]].add("refused")
            continue
        if result["kind"] == "model":
            is_old, is_new = same_model(state, old), same_model(state, new)
        else:
            is_old, is_new = state == old, state == new
        assert is_old or is_new, f"{folder.name} ({result['kind']}) loads as neither the old nor the new save"
        seen[result["kind"]].add("new" if is_new else "old")
    for result in results:  # ... and the next save leaves nothing of the killed one behind
        folder = Path(result["folder"])
        {"model": new_model_object, "tokenizer": new_tokenizer_object}[result["kind"]].save_pretrained(folder)
        assert [path.name for path in folder.iterdir() if path.name.startswith(".")] == [], folder
    # Every kill before the save began leaves the old files, the last (uninterrupted) save the new ones.
    for kind in seen:
        assert {"old", "new"} <= seen[kind], (kind, seen[kind])


def test_the_next_save_removes_what_a_killed_save_left(tiny_checkpoints, tmp_path):
    """What a dead saver staged goes at the next save; what a live one (this process) stages stays."""
    folder = shutil.copytree(tiny_checkpoints["tiny"], tmp_path / "model")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    staged_by_the_dead = folder / f".minibert-save.{dead.pid}.0123abcd.tmp"
    staged_by_us = folder / f".minibert-save.{os.getpid()}.89abcdef.tmp"
    for staging in (staged_by_the_dead, staged_by_us):
        staging.mkdir()
        (staging / "model.safetensors").write_bytes(b"x" * 100)
        (staging / ".tmpH4ywsz").write_bytes(b"x" * 100)  # safetensors' own temporary file
    older_minibert = ".model.safetensors.k2j4_x9q.tmp"  # older versions' tempfile.mkstemp names
    unrelated = [".model.safetensors.notes.tmp", "model.safetensors.bak", ".minibert-save.notes.tmp"]
    for name in [older_minibert, *unrelated]:
        (folder / name).write_bytes(b"x" * 100)
    BertModel.from_pretrained(folder).save_pretrained(folder)
    left = sorted(path.name for path in folder.iterdir())
    assert left == sorted(["config.json", "model.safetensors", staged_by_us.name, *unrelated])


def test_an_interrupted_folder_says_so(tiny_checkpoints, tmp_path):
    folder = shutil.copytree(tiny_checkpoints["tiny"], tmp_path / "model")
    staging = folder / ".minibert-save.12345.0123abcd.tmp"
    staging.mkdir()
    (folder / "config.json").rename(staging / "config.json")
    with pytest.raises(OSError, match="has no config.json: a save into it was interrupted"):
        BertModel.from_pretrained(folder)


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_saved_files_get_the_umasks_permissions(tiny_checkpoints, tmp_path, umask):
    model = BertModel.from_pretrained(tiny_checkpoints["tiny"])
    tokenizer = BertTokenizer(tokenizer_folder(tmp_path / "vocab", ["hello"]) / "vocab.txt")
    previous = os.umask(umask)
    try:
        model.save_pretrained(tmp_path / "out")
        tokenizer.save_pretrained(tmp_path / "out")
        model.config.save_pretrained(tmp_path / "config-only")
        (tmp_path / "plain").write_text("written by open(..., 'w')")
    finally:
        os.umask(previous)
    expected = stat.S_IMODE((tmp_path / "plain").stat().st_mode)
    assert expected == 0o666 & ~umask
    written = [*(tmp_path / "out").iterdir(), tmp_path / "config-only" / "config.json"]
    assert len(written) == 6
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == expected, (path.name, oct(path.stat().st_mode))


def test_transformers_loads_what_minibert_saves_and_the_metadata_says_pt(tiny_checkpoints, tmp_path):
    from conftest import transformers

    saved = BertModel.from_pretrained(tiny_checkpoints["tiny"]).save_pretrained(tmp_path)
    with safe_open(saved / "model.safetensors", framework="pt") as handle:
        # "pt" for transformers; the digest pairs the weights with the config.json saved with them.
        assert handle.metadata() == {"format": "pt", "minibert_config_sha256":
                                     hashlib.sha256((saved / "config.json").read_bytes()).hexdigest()}
    _, info = transformers.BertModel.from_pretrained(str(saved), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
