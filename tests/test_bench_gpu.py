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


def test_memory_and_sync_rows_with_cuda_numbers(tmp_path, monkeypatch):
    """The branch only CUDA reaches (peak memory and sync counts are numbers), with both measurements faked."""
    directory = harness.write_checkpoint(harness.TINY, tmp_path)
    models = harness.load_models(directory, "cpu", bench_gpu.DTYPE, eager=False)
    peaks = iter([30.0, 60.0])  # minibert, then transformers
    monkeypatch.setattr(bench_gpu, "peak_mib", lambda call, device: next(peaks))
    syncs = iter([1, 4])
    monkeypatch.setattr(bench_gpu, "host_syncs", lambda call, device: next(syncs))
    memory, syncs = bench_gpu.memory_and_sync_rows(models, dict(harness.TINY), 8, 64, "cpu")
    assert memory["speedup"] == 2.0 and memory["goal"] == ">= 1.0x" and memory["met"]
    assert syncs["note"] == "host syncs per forward: minibert 1, transformers 4 (torch.cuda.set_sync_debug_mode)"


def test_a_failing_part_becomes_a_row(monkeypatch):
    """On the GPU one part that raises must not cost the rows of the others."""
    def broken():
        raise RuntimeError("CUDA error: no kernel image is available\nsecond line")

    assert bench_gpu.guarded("ok", lambda: [{"name": "ok"}]) == [{"name": "ok"}]
    row, = bench_gpu.guarded("training step", broken)
    assert row["name"] == "training step" and row["note"].startswith("failed: RuntimeError: CUDA error")
