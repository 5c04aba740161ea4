"""benchmarks/bench_gpu.py runs: its rows on the CPU with a tiny model (the GPU's own run is
benchmarks/gpu_check.sh), so no GPU time is spent finding a broken row."""

from __future__ import annotations

import sys

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
bench_gpu = pytest.importorskip("bench_gpu")
harness = pytest.importorskip("harness")


def test_gpu_rows_on_cpu(tmp_path):
    directory = harness.write_checkpoint(harness.TINY, tmp_path)
    rows = bench_gpu.gpu_rows(directory, dict(harness.TINY), quick=True, device="cpu")
    by_name = {(row["section"], row["name"]): row for row in rows}
    full = by_name[("gpu", "full 4x32")]
    assert full["goal"] == ">= 1.0x" and full["minibert"] > 0 and full["roofline"] > 0
    for size in (8, 16):
        long_tailed = next(row for (section, name), row in by_name.items() if name.startswith(f"long-tailed {size}x"))
        assert long_tailed["ideal"] == pytest.approx(size * max(long_tailed["lengths"]) / sum(long_tailed["lengths"]))
        assert "kernel per-length-group SDPA" in long_tailed["note"] and ">= 80%" in long_tailed["goal"]
        uniform = next(row for (section, name), row in by_name.items() if name.startswith(f"uniform {size}x"))
        assert uniform["goal"] == ">= 1.3x"
    training = next(row for row in rows if row["section"] == "gpu training")
    assert training["goal"] == ">= 2x" and training["minibert"] > 0 and "bf16 autocast" in training["note"]
    assert {row["section"] for row in rows} >= {"gpu memory", "gpu syncs"}
    assert "CUDA only" in next(row for row in rows if row["section"] == "gpu syncs")["note"]


def test_gpu_rows_without_cuda_say_so(tmp_path):
    if bench_gpu.torch.cuda.is_available():
        pytest.skip("CUDA is here")
    rows = bench_gpu.gpu_rows(tmp_path, dict(harness.TINY), quick=True)
    assert rows == [{"section": "gpu", "name": "-", "note": "no CUDA device on this machine: GPU rows skipped"}]
