"""A load that overlaps a save returns one save's config with that same save's weights.

One process saves two same-shaped models with different configs into one folder, alternately;
this process loops ``BertModel.from_pretrained`` on that folder. Each model's config names the
value its word embeddings are filled with, so a load that mixed the two saves shows at once.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import torch

from conftest import REPO
from minibert import BertConfig, BertModel

TINY = dict(vocab_size=16, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
            max_position_embeddings=16)

# The writer: two models whose every weight is the model's number, configs that say the number.
WRITER = r"""
import sys, time
import torch
torch.set_num_threads(1)
from minibert import BertConfig, BertModel

folder, seconds, pause, tiny = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), eval(sys.argv[4])
models = []
for number in (1, 2):
    model = BertModel(BertConfig(**tiny, extra={"filled_with": number}))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(number)
    models.append(model)
models[0].save_pretrained(folder)
print("ready", flush=True)
saves, end = 0, time.monotonic() + seconds
while time.monotonic() < end:
    models[saves % 2].save_pretrained(folder)
    saves += 1
    time.sleep(pause)  # a pause of about one load, so that loads both overlap saves and fall between them

"""


def test_loads_during_saves_never_mix_two_saves(tmp_path):
    folder = tmp_path / "model"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(folder), "60", "0.02", repr(TINY)],
                              stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert writer.stdout.readline().strip() == "ready"
        loads, mixed, failed, deadline = 0, 0, [], time.monotonic() + 50
        while loads < 300 and time.monotonic() < deadline:
            try:
                model = BertModel.from_pretrained(folder)
            except OSError as error:  # allowed, if rare: a save that never let the loader in
                failed.append(str(error))
                continue
            loads += 1
            filled = model.embeddings.word_embeddings.weight[0, 0].item()
            mixed += filled != model.config.extra["filled_with"]
    finally:
        writer.kill()
        writer.wait()
    print(f"{loads} loads, {mixed} mixed, {len(failed)} refused: {sorted(set(failed))[:3]}")
    assert loads >= 300, f"only {loads} loads succeeded in 50 s; failures: {failed[:3]}"
    assert mixed == 0, f"{mixed} of {loads} loads paired one save's weights with the other's config"


def test_a_config_edited_after_the_save_is_refused_then_loads_when_given(tmp_path):
    """The weights record their config.json's digest: another config.json beside them is refused, with
    what to do; config= (the caller's own choice) loads them anyway; a file without the digest (any
    transformers checkpoint) loads as before."""
    torch.manual_seed(0)
    saved = BertModel(BertConfig(**TINY))
    saved.save_pretrained(tmp_path)
    edited = (tmp_path / "config.json").read_text().replace('"layer_norm_eps": 1e-12', '"layer_norm_eps": 1e-06')
    assert edited != (tmp_path / "config.json").read_text()
    (tmp_path / "config.json").write_text(edited)
    try:
        BertModel.from_pretrained(tmp_path)
        raise AssertionError("a config.json the weights were not saved with was accepted")
    except OSError as error:
        assert "was saved with another config.json" in str(error) and "config=BertConfig.from_pretrained" in str(error)
    loaded = BertModel.from_pretrained(tmp_path, config=BertConfig.from_pretrained(tmp_path))
    assert loaded.config.layer_norm_eps == 1e-6
    assert torch.equal(loaded.embeddings.word_embeddings.weight, saved.embeddings.word_embeddings.weight)
