"""The benchmark command works and reports every row (structure only: no assertions on speed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import harness  # noqa: E402

# Without CUDA the gpu section is one row that says so; with it, the GPU rows fill four sections.
GPU_SECTIONS = {"gpu", "gpu memory", "gpu syncs", "gpu training"} if torch.cuda.is_available() else {"gpu"}
ALL_SECTIONS = {"full batch", "onnx", "precision", "padded", "load", "fresh process", "training", "pretrain",
                "compile", "tokenizer"} | GPU_SECTIONS


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> tuple[dict, str, dict]:
    """python benchmarks/run.py --quick --json PATH, once for the module: (document, stdout, file's document)."""
    path = tmp_path_factory.mktemp("bench") / "bench.json"
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "run.py"), "--quick", "--json", str(path)],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    last_line = done.stdout.strip().splitlines()[-1]
    return json.loads(last_line), done.stdout + done.stderr, json.loads(path.read_text())


def test_quick_run_reports_every_row(quick_run):
    document, output, written = quick_run
    assert written == document
    assert document["quick"] is True
    assert {"cpu", "threads", "torch", "transformers"} <= set(document["machine"])
    rows = document["rows"]
    assert {row["section"] for row in rows} == ALL_SECTIONS
    by_name = {(row["section"], row["name"]): row for row in rows}
    full = [row for row in rows if row["section"] == "full batch"]
    assert len(full) == 2
    for row in full:
        assert row["minibert"] > 0 and row["transformers_sdpa"] > 0 and row["transformers_eager"] > 0
        assert 0 < row["roofline"] and row["matmul_gflops"] > 0 and row["goal"] == ">= 1.0x, >= 90%"
    padded = [row for row in rows if row["section"] == "padded"]
    assert [row["name"].split()[0] for row in padded] == ["long-tailed", "uniform"]
    assert all(0 < row["padding"] < 1 and row["speedup"] > 0 and "met" in row for row in padded)
    memory = by_name[("load", "peak RSS added by load")]
    assert memory["unit"] == "MiB" and memory["checkpoint_mib"] > 0
    assert by_name[("fresh process", "start to first output")]["outputs_agree"] is True
    assert len([row for row in rows if row["section"] == "training"]) == 2
    pretrain = [row for row in rows if row["section"] == "pretrain"]
    assert [row["threads"] for row in pretrain] == sorted({1, document["machine"]["threads"]})
    assert all(row["speedup"] > 0 and row["goal"] == ">= 2.0x" and row["padding"] > 0 for row in pretrain)
    onnx = [row for row in rows if row["section"] == "onnx"]
    if onnx[0]["name"] == "-":  # without the bench extra the section is one row that says how to get it
        assert "pip install -e '.[bench]'" in onnx[0]["note"]
    else:
        export = by_name[("onnx", "export and fusions")]
        assert export["fusions"]["Attention"] == 2 and export["met"] is True  # every layer's attention fused
        assert export["checks"]["plain"] < 1e-3 and export["checks"]["int8"] > 0.99
        for row in onnx[1:]:
            assert all(row[name] > 0 for name in ("minibert", "transformers_sdpa", "ort_plain", "ort_optimized",
                                                  "ort_int8"))
            assert "met" in row and (row["minibert_prepacked"] > 0 if row["name"].startswith("1x") else
                                     row["minibert_int8"] > 0)
            if row["name"].startswith("1x"):  # the GEMMs alone, each library's own
                assert all(row[name] > 0 for name in ("minibert_linear_layers", "minibert_prepacked_linear_layers",
                                                      "ort_linear_layers"))
    precision = {row["name"]: row for row in rows if row["section"] == "precision"}
    assert set(precision) == {"1x32 bf16", "1x32 int8", "4x32 bf16", "4x32 int8"}
    assert all(row["minibert"] > 0 and row["fp32_ms"] > 0 and "avx" in row["cpu_flags"] for row in precision.values())
    if "accuracy" in precision["4x32 int8"]:  # all-MiniLM-L6-v2 is on this machine
        assert precision["4x32 int8"]["accuracy"]["min_cosine"] >= 0.99
        assert precision["4x32 bf16"]["accuracy"]["top1_changes"] == 0
    # The progress lines (stderr) name each row as it runs; the table (stdout) has the machine line.
    assert "Machine: " in output and "long-tailed" in output and "fresh process to first output" in output


def test_cli_forwards_to_the_runner(tmp_path):
    """python -m minibert bench passes its options on to benchmarks/run.py."""
    path = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "-m", "minibert", "bench", "--quick", "--only", "gpu", "--json", str(path)],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert {row["section"] for row in json.loads(path.read_text())["rows"]} == GPU_SECTIONS


def test_onnx_rows_without_the_extra_say_how_to_get_them(monkeypatch):
    import bench_onnx

    monkeypatch.setattr(bench_onnx, "onnx_available", lambda: "onnxruntime")
    rows = bench_onnx.onnx_rows(REPO, harness.TINY, quick=True)
    assert rows == [{"section": "onnx", "name": "-",
                     "note": "skipped: onnxruntime not installed; pip install -e '.[bench]' (onnxruntime, onnx, onnxscript)"}]


def test_encoder_flops_of_bert_base():
    """About 2 x 85M multiply-adds per token for bert-base, plus attention, which grows with length."""
    per_token = harness.encoder_flops(harness.BERT_BASE_CASED, [128]) / 128
    assert 170e6 < per_token < 175e6
    assert harness.encoder_flops(harness.BERT_BASE_CASED, [512]) / 512 > per_token


def test_long_tailed_lengths_are_seeded_and_long_tailed():
    lengths = harness.long_tailed_lengths(16, seed=1)
    assert lengths == harness.long_tailed_lengths(16, seed=1)
    assert max(lengths) == 270 and 25 <= sorted(lengths)[8] <= 60
    assert 0.7 < harness.padding_share(lengths) < 0.85


def test_goals():
    assert harness.check_goal({}, ">= 4x", 4.5)["met"] is True
    assert harness.check_goal({}, "<= 1.2x", 1.3)["met"] is False
    row = harness.check_goal(harness.check_goal({}, ">= 1.0x", 1.1), ">= 90%", 0.85)
    assert row == {"goal": ">= 1.0x, >= 90%", "met": False}


def test_import_and_load_stay_light(tiny_checkpoints):
    """The fresh-process goal rests on this: minibert imports torch and safetensors, nothing heavier,
    and from_pretrained's meta-device skeleton does not pull in torch._dynamo."""
    script = (
        "import sys, minibert\n"
        f"minibert.BertModel.from_pretrained({str(tiny_checkpoints['tiny'])!r})\n"
        "print(sorted(m for m in ('transformers', 'huggingface_hub', 'torch._dynamo', 'sympy') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_skip_normal_init_only_on_meta():
    import torch

    from minibert.loading.pretrained import SkipNormalInitOnMeta

    with SkipNormalInitOnMeta():
        real = torch.zeros(1000).normal_()  # a real tensor is still initialised
        meta = torch.nn.Embedding(10, 4, device="meta")
    assert real.std() > 0.5 and meta.weight.is_meta
