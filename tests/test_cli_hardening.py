"""`python -m minibert` as a demanding user meets it: outputs that survive a full disk, the real path
printed, strict JSON alone on stdout, devices checked before loading, classes and checkpoints refused
in the caller's words, truncation said, a plain --help; and the parity verdict's edges (large values,
every dtype table, NaN)."""

from __future__ import annotations

import errno
import json
import math
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import REPO
from minibert import BertModel
from test_cli import run, text_model  # noqa: F401  (text_model is a fixture)


def disk_full_after_a_few_bytes(target) -> None:
    """What a writer does on a full disk: the file is opened (truncated), a little goes in, then ENOSPC."""
    with open(target, "wb") as handle:
        handle.write(b"PK\x03\x04 a few bytes")
    raise OSError(errno.ENOSPC, "No space left on device", str(target))


# ---- outputs: all or nothing, and the real path ---------------------------------------------


def test_encode_output_a_full_disk_leaves_the_old_file(text_model, tmp_path, capsys, monkeypatch):
    out = tmp_path / "vectors.npz"
    assert run(capsys, "encode", "Hello!", "--model", text_model, "-o", out)[0] == 0
    good = out.read_bytes()
    monkeypatch.setattr(np, "savez", lambda file, **arrays: disk_full_after_a_few_bytes(file))
    status, _, error = run(capsys, "encode", "Cool.", "--model", text_model, "-o", out)
    assert status == 2 and "No space left on device" in error
    assert out.read_bytes() == good
    assert sorted(path.name for path in tmp_path.iterdir()) == ["vectors.npz"]  # no staging left behind


def test_attention_map_a_full_disk_leaves_the_old_image(text_model, tmp_path, capsys, monkeypatch):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    out = tmp_path / "map.png"
    assert run(capsys, "attention", "Hello!", "--layer", "1", "--model", text_model, "-o", out)[0] == 0
    good = out.read_bytes()
    monkeypatch.setattr(Figure, "savefig", lambda self, file, **options: disk_full_after_a_few_bytes(file))
    status, _, error = run(capsys, "attention", "Cool.", "--layer", "2", "--model", text_model, "-o", out)
    assert status == 2 and "No space left on device" in error
    assert out.read_bytes() == good


def test_parity_json_a_full_disk_leaves_the_old_report(tmp_path, monkeypatch):
    from pathlib import Path

    from minibert.cli.parity_report import write_json

    report = tmp_path / "report.json"
    write_json(str(report), {"passed": True})
    good = report.read_bytes()
    monkeypatch.setattr(Path, "write_text", lambda self, *args, **kwargs: disk_full_after_a_few_bytes(self))
    with pytest.raises(OSError, match="No space left"):
        write_json(str(report), {"passed": False})
    assert report.read_bytes() == good


def test_encode_output_without_npz_prints_the_path_written(text_model, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, printed, _ = run(capsys, "encode", "Hello!", "--model", text_model, "-o", "out")
    assert status == 0 and (tmp_path / "out.npz").is_file() and not (tmp_path / "out").exists()
    assert printed.splitlines()[-1].endswith(" to out.npz")


# ---- parity: strict JSON on stdout, and the verdict -----------------------------------------


def crafted_tables(failing_dtype_table: int | None = None, nan: bool = False):
    """Tables as run_parity returns them: one library comparison, then two dtype tables."""
    from minibert.cli.parity import Row, Table

    library = Table("minibert vs transformers, eager, fp32", ["stage", "max |diff|", "max rel diff", "bit-identical"],
                    [Row("layer 1", {"max_abs_diff": 0.0, "max_rel_diff": 0.0, "bit_identical": True}, False)])
    tables = [library]
    for index, name in enumerate(("bf16", "fp16")):
        error = float("nan") if nan and index == 1 else 0.01
        row = Row("layer 1", {"minibert_error": error, "transformers_error": 0.01,
                              "ratio": error / 0.01}, index == failing_dtype_table or math.isnan(error))
        tables.append(Table(f"eager, {name}: error against transformers' float64 eager run",
                            ["stage", "minibert", "transformers", "minibert / transformers"], [row]))
    return tables


@pytest.fixture
def parity_returns(monkeypatch):
    """parity_command without the two libraries: make_batches and run_parity return what a test gives."""
    import minibert.cli.parity as parity

    def set_tables(tables):
        monkeypatch.setattr(parity, "make_batches", lambda model, texts, vocab_size: ([], None))
        monkeypatch.setattr(parity, "run_parity", lambda *args, **kwargs: tables)

    return set_tables


def no_constants(name: str):
    raise ValueError(f"{name} is not JSON")


def test_parity_json_on_stdout_is_strict_json_alone(text_model, capsys, parity_returns):
    parity_returns(crafted_tables(nan=True))
    status, printed, error = run(capsys, "parity", text_model, "--dtypes", "bf16,fp16", "--json", "-")
    document = json.loads(printed, parse_constant=no_constants)  # all of stdout, and no NaN or Infinity
    assert status == 1 and not document["passed"]
    row = document["tables"][2]["rows"][0]
    assert row["minibert_error"] is None and row["ratio"] is None and row["exceeded"] is True
    assert row["null_because"]["minibert_error"].startswith("NaN")
    assert "over tolerance, first at: layer 1" in error  # the tables went to stderr


@pytest.mark.parametrize("failing", [0, 1])
def test_parity_dtypes_exit_1_when_any_dtype_table_fails(text_model, capsys, parity_returns, failing):
    parity_returns(crafted_tables(failing_dtype_table=failing))
    assert run(capsys, "parity", text_model, "--dtypes", "bf16,fp16")[0] == 1
    parity_returns(crafted_tables())
    assert run(capsys, "parity", text_model, "--dtypes", "bf16,fp16")[0] == 0


def test_parity_tolerance_is_relative_to_the_expected_value_at_large_values():
    """|diff| <= atol + rtol * |expected|: at 1e6 a difference of 0.5 rtol passes and 2 rtol fails,
    though both are far above atol."""
    from minibert.cli.parity import Tolerance, compare_libraries

    tolerance = Tolerance(1e-5, 1e-5)
    expected = torch.tensor([1e6, -3e6, 1.0], dtype=torch.float64)
    within = expected * torch.tensor([1 + 0.5e-5, 1 - 0.5e-5, 1.0], dtype=torch.float64)
    beyond = expected * torch.tensor([1.0, 1 + 2e-5, 1.0], dtype=torch.float64)
    table = compare_libraries({"a": within, "b": beyond}, {"a": expected, "b": expected}, tolerance, "t")
    assert [row.exceeded for row in table.rows] == [False, True]


def test_parity_a_nan_is_a_failure_in_both_comparisons():
    from minibert.cli.parity import Tolerance, compare_libraries, compare_to_float64

    expected = torch.tensor([1.0, 2.0], dtype=torch.float64)
    with_nan = torch.tensor([1.0, float("nan")], dtype=torch.float64)
    table = compare_libraries({"a": with_nan}, {"a": expected}, Tolerance(1.0, 1.0), "t")
    assert table.rows[0].exceeded is True
    table = compare_to_float64({"a": with_nan.float()}, {"a": expected.float()}, {"a": expected},
                               torch.float32, "eager")
    assert table.rows[0].exceeded is True


# ---- checked before loading, in the caller's words ------------------------------------------


@pytest.mark.parametrize("device, words", [("meta", "--device meta holds shapes but no values"),
                                           ("cuda", "--device cuda: this torch"),
                                           ("cuda:3", "--device cuda:3: this torch")])
def test_a_device_this_torch_cannot_use_is_refused_before_loading(text_model, capsys, monkeypatch, device, words):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on a CPU-only torch
    loads = []
    monkeypatch.setattr(BertModel, "from_pretrained", classmethod(lambda cls, *args, **kwargs: loads.append(args)))
    for command in (["encode", "Hi"], ["walkthrough"], ["attention", "Hi", "--layer", "1"]):
        status, _, error = run(capsys, *command, "--model", text_model, "--device", device)
        assert status == 2 and error.startswith(f"error: {words}") and error.count("\n") == 1, error
    assert loads == []


@pytest.mark.parametrize("name", ["BertConfig", "__init__", "PreTrainedBert", "BertTaskModel"])
def test_inspect_accepts_only_the_model_classes(text_model, capsys, name):
    status, _, error = run(capsys, "inspect", text_model, "--class", name)
    assert status == 2 and error.startswith(f"error: unknown --class {name!r}; the model classes are BertModel, ")
    assert "BertForMaskedLM" in error and "BertForSequenceClassification" in error


def test_fill_mask_refuses_a_checkpoint_without_a_masked_lm_head(text_model, tmp_path, capsys):
    encoder_only = BertModel.from_pretrained(text_model).save_pretrained(tmp_path / "encoder")
    for name in ("vocab.txt", "tokenizer_config.json"):
        shutil.copy(text_model / name, encoder_only / name)
    status, printed, error = run(capsys, "fill-mask", "Paris is the [MASK] of France.", "--model", encoder_only)
    assert status == 2 and printed == ""
    assert "has no masked-LM head" in error and "such as bert-base-uncased" in error
    assert run(capsys, "fill-mask", "Paris is the [MASK] of France.", "--model", text_model)[0] == 0


def test_walkthrough_with_a_model_that_fails_to_load_is_an_error(tmp_path, capsys):
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "config.json").write_text("{not json")
    status, printed, error = run(capsys, "walkthrough", "--model", corrupt)
    assert status == 2 and "not valid JSON" in error and "random weights" not in printed


def test_encode_and_attention_say_when_a_text_is_truncated(text_model, tmp_path, capsys):
    long_text = " ".join(["Hello"] * 100)  # 102 tokens with [CLS] and [SEP]; the model has 64 positions
    status, printed, error = run(capsys, "encode", "Cool.", long_text, "--model", text_model, "--json")
    assert status == 0 and json.loads(printed)["input_ids"][1].__len__() == 64
    assert error == "note: text 2 has 102 tokens; only its first 64 are run (the model's max_position_embeddings)\n"
    status, _, error = run(capsys, "attention", long_text, "--layer", "1", "--model", text_model,
                           "-o", tmp_path / "map.png")
    assert status == 0 and error.startswith("note: text 1 has 102 tokens")
    assert run(capsys, "encode", "Cool.", "--model", text_model)[2] == ""  # nothing said when nothing is cut


def test_help_is_plain_text_with_examples():
    result = subprocess.run([sys.executable, "-m", "minibert", "--help"], capture_output=True, text=True,
                            cwd=REPO, timeout=120)
    assert result.returncode == 0 and "``" not in result.stdout
    assert "BERT from scratch in plain PyTorch" in result.stdout
    assert "examples:\n  python -m minibert" in result.stdout and "encode" in result.stdout.split("examples:")[1]
