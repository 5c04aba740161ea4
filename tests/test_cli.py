"""`python -m minibert`: every command driven through main(argv), on tiny checkpoints, offline."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch

from conftest import REPO, minilm_dir
from minibert import BertModel
from minibert.cli import main
from text_checkpoint import write_text_checkpoint


@pytest.fixture(scope="module")
def text_model(tmp_path_factory):
    return write_text_checkpoint(tmp_path_factory.mktemp("text-model"))


def run(capsys, *argv) -> tuple[int, str, str]:
    status = main([str(arg) for arg in argv])
    printed = capsys.readouterr()
    return status, printed.out, printed.err


# ---- walkthrough ---------------------------------------------------------------------------


def test_walkthrough_from_text_on_a_local_checkpoint(capsys):
    """A folder with weights and vocab.txt: minibert's own tokenizer turns the sentences into ids."""
    if not (minilm_dir() / "vocab.txt").is_file():
        pytest.skip("all-MiniLM-L6-v2 is absent; run `python tests/fetch_minilm.py`")
    status, printed, _ = run(capsys, "--model", minilm_dir())
    assert status == 0
    assert "BertConfig {" in printed and "Loaded" in printed and "note:" not in printed
    assert "LoadReport(used=103, dropped=1 (embeddings.position_ids), unused=0, missing=0)" in printed
    assert "'Hello!'   -> tokens ['hello', '!']" in printed
    assert "input_ids: [[101, 7592, 999, 102], [101, 4658, 1012, 102], [101, 3835, 999, 102]]" in printed
    assert "last_hidden_state: (3, 4, 384)" in printed


def test_walkthrough_without_a_vocabulary_uses_the_seed_ids(base_cased_checkpoint, capsys):
    status, printed, _ = run(capsys, "walkthrough", "--model", base_cased_checkpoint)
    assert status == 0
    assert "note: no tokenizer" in printed and "last_hidden_state: (3, 4, 768)" in printed
    assert "LoadReport(used=199, dropped=1 (bert.embeddings.position_ids), unused=7 (cls.*), missing=0)" in printed


def test_walkthrough_dtype_and_device_options(text_model, capsys):
    status, printed, _ = run(capsys, "walkthrough", "--model", text_model, "--dtype", "bf16", "--device", "cpu")
    assert status == 0 and "dtype=torch.bfloat16" in printed
    assert "'Hello!'   -> tokens ['Hello', '!']" in printed


class CountingServer:
    """A local TCP port that counts connections and closes each at once: a hub that never answers."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.connections = 0
        threading.Thread(target=self.serve, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.socket.getsockname()[1]}"

    def serve(self) -> None:
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            self.connections += 1
            connection.close()


def test_walkthrough_without_network_falls_back_after_one_attempt(tmp_path):
    """No HF_HUB_OFFLINE, an empty cache and a hub that does not answer: one connection, no retries,
    one note, then the random fallback."""
    server = CountingServer()
    env = {key: value for key, value in os.environ.items() if key != "HF_HUB_OFFLINE"}
    env.update(HF_ENDPOINT=server.endpoint, HF_HUB_CACHE=str(tmp_path), HF_HOME=str(tmp_path), NO_PROXY="127.0.0.1")
    result = subprocess.run([sys.executable, "-m", "minibert"], capture_output=True, text=True, env=env, cwd=REPO,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    notices = [line for line in result.stdout.splitlines() if line.startswith("note:")]
    assert len(notices) == 1 and "seeded random weights" in notices[0] and "cannot be reached" in notices[0]
    assert "Retrying" not in result.stderr and "last_hidden_state: (3, 4, 768)" in result.stdout
    assert server.connections == 1


# ---- encode --------------------------------------------------------------------------------


def test_encode_prints_a_summary_and_saves_the_arrays(text_model, tmp_path, capsys):
    out = tmp_path / "out.npz"
    status, printed, _ = run(capsys, "encode", "Hello!", "The quick brown fox", "--model", text_model, "-o", out)
    assert status == 0
    assert "text 1: [CLS] Hello ! [SEP]" in printed and "text 2: [CLS] The quick brown fox [SEP]" in printed
    assert "last_hidden_state  (2, 6, 32)" in printed and "pooler_output      (2, 32)" in printed
    arrays = np.load(out)
    model = BertModel.from_pretrained(text_model)
    with torch.no_grad():
        expected = model(torch.tensor(arrays["input_ids"]), torch.tensor(arrays["attention_mask"]))
    assert arrays["input_ids"].shape == (2, 6) and arrays["attention_mask"][0].tolist() == [1, 1, 1, 1, 0, 0]
    # Same model, same batch, same path: the saved arrays are the model's output exactly.
    assert np.array_equal(arrays["last_hidden_state"], expected.last_hidden_state.numpy())
    assert np.array_equal(arrays["pooler_output"], expected.pooler_output.numpy())


def test_encode_json(text_model, capsys):
    status, printed, _ = run(capsys, "encode", "Nice!", "--model", text_model, "--json")
    document = json.loads(printed)
    assert status == 0 and document["tokens"] == [["[CLS]", "Nice", "!", "[SEP]"]]
    assert np.asarray(document["last_hidden_state"]).shape == (1, 4, 32)
    assert np.asarray(document["pooler_output"]).shape == (1, 32)


# ---- attention -----------------------------------------------------------------------------


def png_pixels(path) -> np.ndarray:
    import matplotlib.image

    return matplotlib.image.imread(str(path))  # (height, width, channels), floats in [0, 1]


@pytest.mark.parametrize("head, size", [(2, (700, 600)), (None, (600, 600))])
def test_attention_writes_a_heatmap(text_model, tmp_path, capsys, head, size):
    pytest.importorskip("matplotlib")
    path = tmp_path / "attention.png"
    argv = ["attention", "The cat sat on the mat because it was tired.", "--model", text_model, "--layer", 2,
            "-o", path] + (["--head", head] if head else [])
    status, printed, _ = run(capsys, *argv)
    assert status == 0 and f"wrote {path} ({size[0]}x{size[1]} px)" in printed
    pixels = png_pixels(path)
    assert pixels.shape[:2] == (size[1], size[0])
    # Not blank: the heatmaps (left of the colour bar, if any) hold many colours of the colour map;
    # text and frames are grey (red = green = blue), so only saturated pixels count.
    rgb = (pixels[:, : int(0.78 * size[0]), :3] * 255).astype(np.int16)
    saturated = rgb[(rgb.max(axis=-1) - rgb.min(axis=-1)) > 40]
    assert len(np.unique(saturated, axis=0)) > 20
    assert len(saturated) > 0.1 * rgb.shape[0] * rgb.shape[1]  # and they cover a good part of the image


def test_attention_errors_are_one_line(text_model, tmp_path, capsys, monkeypatch):
    status, printed, error = run(capsys, "attention", "Hello!", "--model", text_model, "--layer", 9)
    assert status == 2 and error == "error: --layer must be between 1 and 2 (the model has 2 layers), got 9\n"
    status, _, error = run(capsys, "attention", "Hello!", "--model", text_model, "--layer", 1, "--head", 5)
    assert status == 2 and "--head must be between 1 and 4" in error
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if the [plot] extra were not installed
    status, _, error = run(capsys, "attention", "Hello!", "--model", text_model, "--layer", 1, "-o", tmp_path / "a.png")
    assert status == 2 and error == "error: attention maps need matplotlib: pip install 'minibert[plot]'\n"
    assert not (tmp_path / "a.png").exists()


# ---- inspect -------------------------------------------------------------------------------


def columns(line: str) -> list[str]:
    """A table row's cells (columns are separated by two or more spaces)."""
    return re.split(r"\s{2,}", line.strip())


def test_inspect_explains_every_tensor_of_a_bert_base_cased_checkpoint(base_cased_checkpoint, capsys):
    status, printed, error = run(capsys, "inspect", base_cased_checkpoint)
    assert status == 0 and error == ""
    lines = printed.splitlines()
    rows = {line.split()[0]: columns(line) for line in lines if line.startswith(("bert.", "cls."))}
    assert len(rows) == 207  # every tensor of the file, each on its own row
    assert rows["bert.embeddings.LayerNorm.gamma"] == [
        "bert.embeddings.LayerNorm.gamma", "(768,)", "float32", "embeddings.layer_norm.weight", "used",
        "'bert.' prefix + gamma -> weight + table 'embeddings.LayerNorm'"]
    assert rows["bert.encoder.layer.11.output.dense.weight"][1:] == [
        "(768, 3072)", "float32", "encoder.layers.11.feed_forward.output.weight", "used",
        "'bert.' prefix + table 'encoder.layer.{}.output.dense'"]
    assert rows["bert.embeddings.position_ids"][3:] == [
        "-", "dropped", "'bert.' prefix + table 'embeddings.position_ids' -> None (dropped on purpose)"]
    assert rows["cls.predictions.transform.LayerNorm.beta"][3:] == [
        "-", "unused", "beta -> bias + table 'cls.predictions.transform.LayerNorm'; BertModel has no "
        "mlm_head.transform_norm.bias"]
    assert sum(row[4] == "used" for row in rows.values()) == 199
    assert "LoadReport(used=199, dropped=1 (bert.embeddings.position_ids), unused=7 (cls.*), missing=0)" in lines
    assert any(line.split() == ["encoder.layers.11", "7,087,872"] for line in lines)
    assert any(line.split() == ["total", "108,310,272"] for line in lines)
    assert '"vocab_size": 28996' in printed


def test_inspect_against_a_head_shows_missing_tensors(text_model, capsys):
    status, printed, _ = run(capsys, "inspect", "--model", text_model, "--class", "BertForSequenceClassification")
    assert status == 0
    missing = [columns(line) for line in printed.splitlines() if " missing " in line]
    assert missing == [["-", "(2, 32)", "float32", "classifier.weight", "missing",
                        "not in the checkpoint: freshly initialised"],
                       ["-", "(2,)", "float32", "classifier.bias", "missing", "not in the checkpoint: freshly initialised"]]
    assert "cls.seq_relationship.weight" in printed and "bert.encoder.layers.1.attention.key.weight" in printed


# ---- parity --------------------------------------------------------------------------------


def test_parity_on_a_tiny_checkpoint(text_model, tmp_path, capsys):
    report = tmp_path / "parity.json"
    status, printed, error = run(capsys, "parity", text_model, "--json", report)
    assert status == 0, printed + error
    document = json.loads(report.read_text())
    eager, sdpa = document["tables"]
    assert eager["title"] == "minibert vs transformers, eager, fp32 (tolerance: bit-identical)"
    assert [row["stage"] for row in eager["rows"]] == ["embeddings", "layer 1", "layer 2", "pooler", "head logits"]
    assert all(row["bit_identical"] and row["max_abs_diff"] == 0 for row in eager["rows"])
    assert all(row["max_abs_diff"] <= 1e-5 and not row["exceeded"] for row in sdpa["rows"])
    assert document["passed"] and "all compared rows within tolerance" in printed
    assert "layer 2      0           0             yes" in printed


def test_parity_marks_the_first_row_over_tolerance(text_model, capsys, monkeypatch):
    """With sdpa held to bit-identity (which its other summation order cannot meet), the first
    layer after the embeddings fails; exit status 1 so that a CI job fails."""
    import minibert.cli.parity as parity

    monkeypatch.setitem(parity.TOLERANCES, ("sdpa", torch.float32), parity.Tolerance(0.0, 0.0))
    status, printed, _ = run(capsys, "parity", text_model, "Hello!", "The quick brown fox jumps over the lazy dog.",
                             "--implementations", "sdpa")
    assert status == 1
    marked = [line for line in printed.splitlines() if "<-- first over tolerance" in line]
    assert len(marked) == 1 and marked[0].startswith("layer 1 ")
    assert printed.splitlines()[-1].startswith("over tolerance, first at: layer 1")


def test_parity_dtypes_side_by_side(text_model, capsys):
    status, printed, _ = run(capsys, "parity", "--model", text_model, "Hello!", "--implementations", "eager",
                             "--dtypes", "bf16", "--json", "-")
    document = json.loads(printed[printed.index("{"):])
    assert status == 0
    table = document["tables"][1]
    assert table["title"].startswith("eager, bf16: error against transformers' float64 eager run")
    for row in table["rows"]:
        # Eager runs the same operations: in bf16 too, minibert's error is transformers' error exactly.
        assert row["minibert_error"] == row["transformers_error"] and 1e-4 < row["minibert_error"] < 0.2


def test_parity_on_minilm_is_bit_identical_on_the_eager_path(capsys):
    if not (minilm_dir() / "vocab.txt").is_file():
        pytest.skip("all-MiniLM-L6-v2 is absent; run `python tests/fetch_minilm.py`")
    status, printed, _ = run(capsys, "parity", minilm_dir(), "--implementations", "eager", "--json", "-")
    document = json.loads(printed[printed.index("{"):])
    rows = document["tables"][0]["rows"]
    assert status == 0 and len(rows) == 8  # embeddings, 6 layers, pooler (the checkpoint has no head)
    assert all(row["bit_identical"] for row in rows)


def test_parity_without_transformers_says_so(text_model, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    status, _, error = run(capsys, "parity", text_model)
    assert status == 2 and error == "error: parity needs transformers (the reference): pip install transformers\n"


# ---- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["walkthrough"], ["encode", "Hi"], ["attention", "Hi", "--layer", "1"],
                                     ["inspect"], ["parity"], ["fill-mask", "[MASK]"]])
def test_a_missing_model_is_one_line_and_a_non_zero_exit(command, tmp_path, capsys):
    status, printed, error = run(capsys, *command, "--model", tmp_path / "nowhere")
    # The walkthrough too: only the default model, when it cannot be fetched, falls back to random weights.
    assert status == 2 and error.count("\n") == 1 and error.startswith("error: ") and "nowhere" in error
    assert "Traceback" not in error


def test_bad_options_are_refused_by_argparse(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["encode", "Hi", "--dtype", "int3"])
    assert exit_info.value.code == 2 and "unknown dtype 'int3'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["parity", "--implementations", "flash"])
