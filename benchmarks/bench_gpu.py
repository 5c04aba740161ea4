"""GPU rows: minibert's default (unpadded, one variable-length flash call per layer) against
transformers' sdpa, in bfloat16, on full and padded batches, a training step, peak memory and host syncs.

The roofline is a large bfloat16 matmul (8192^3, or the largest that fits), timed alongside each row.
A padded row's ideal ratio is its padded tokens over its real tokens: what skipping the padding can
gain at best when time is proportional to tokens. Goals (issue 8): long-tailed rows reach 80% of the
ideal, and 5x at about 90% padding; uniform lengths 1.3x; full batches 1.0x; the training step 2x;
peak memory no more than transformers'.

``gpu_rows(..., device="cpu")`` runs the same code on the CPU with a tiny model (tests/test_bench_gpu.py),
so that the rows are known to work before GPU time is spent on them.
"""

from __future__ import annotations

import traceback
import warnings
from pathlib import Path
from typing import Callable

import torch

from harness import (
    check_goal,
    encoder_flops,
    load_models,
    log,
    long_tailed_lengths,
    make_batch,
    padding_share,
    time_alternating,
    uniform_lengths,
)

DTYPE = torch.bfloat16


def largest_matmul(device: str, dtype: torch.dtype, sizes: tuple[int, ...]) -> tuple[Callable[[], object], float, int]:
    """The biggest (size x size) @ (size x size) of ``sizes`` that fits in memory: the call, its FLOPs, the size."""
    for size in sizes:
        try:
            left = torch.randn(size, size, device=device, dtype=dtype)
            right = torch.randn(size, size, device=device, dtype=dtype)
            return (lambda: torch.mm(left, right)), 2.0 * size**3, size
        except torch.OutOfMemoryError:
            continue
    raise RuntimeError("no matmul fits on this device")


def forward_call(model: torch.nn.Module, batch: dict) -> Callable[[], object]:
    def call():
        with torch.inference_mode():
            return model(**batch)
    return call


def training_call(model: torch.nn.Module, batch: dict, labels: torch.Tensor, device: str) -> Callable[[], object]:
    """One bf16-autocast step: forward, loss, backward (dropout on, as in training)."""
    def call():
        model.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=DTYPE):
            loss = model(**batch, labels=labels).loss
        loss.backward()
    return call


def peak_mib(call: Callable[[], object], device: str) -> float | None:
    """Memory one call allocates at its peak above what was allocated before it (weights, inputs), in MiB."""
    if not device.startswith("cuda"):
        return None
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    call()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - before) / 2**20


def host_syncs(call: Callable[[], object], device: str) -> int | None:
    """How many times one call makes the host wait for the GPU (torch's sync debug mode, counted)."""
    if not device.startswith("cuda"):
        return None
    call()  # warm: lazy initialisation may sync once
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            call()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(warning.message) for warning in caught)


def kernel_in_use(config: dict, device: str, dropout: float = 0.0) -> str:
    """The attention kernel minibert's unpadded path picks for this device and dtype (varlen.choose_kernel)."""
    from minibert.fast import varlen

    head_dim = config["hidden_size"] // config["num_attention_heads"]
    name = varlen.choose_kernel(torch.device(device), DTYPE, head_dim, dropout)
    return f"{name} (failed once, fell back)" if name in varlen._broken else name


def forward_row(name: str, models: dict, config: dict, lengths: list[int], repeats: int, device: str,
                matmul: tuple[Callable, float, int]) -> dict:
    """Both libraries on one batch, the matmul alongside; speedup, ideal ratio and roofline share."""
    batch = make_batch(lengths, config["vocab_size"], seed=3, device=device)
    if len(set(lengths)) == 1:
        batch.pop("attention_mask")  # a full batch, as a caller without padding passes it
    contenders = {label: forward_call(model, batch) for label, model in models.items()}
    call, matmul_flops, _ = matmul
    contenders["matmul"] = call
    timing = time_alternating(contenders, repeats, device)
    flops = encoder_flops(config, lengths)
    ideal = len(lengths) * max(lengths) / sum(lengths)
    row = {"section": "gpu", "name": name, "unit": "ms", "lengths": lengths, "padding": round(padding_share(lengths), 3),
           "minibert": 1000 * timing.median("minibert"), "transformers_sdpa": 1000 * timing.median("transformers_sdpa"),
           "speedup": timing.ratio("transformers_sdpa", "minibert"), "ideal": ideal,
           "gflops": flops / timing.median("minibert") / 1e9,
           "roofline": timing.ratio("matmul", "minibert") * flops / matmul_flops,
           "matmul_gflops": matmul_flops / timing.median("matmul") / 1e9}
    row["share_of_ideal"] = row["speedup"] / ideal
    return row


def gpu_rows(directory: Path, config: dict, quick: bool, device: str = "cuda") -> list[dict]:
    """Every GPU row (bfloat16). Without CUDA (and device="cuda"), one row that says so."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        return [{"section": "gpu", "name": "-", "note": "no CUDA device on this machine: GPU rows skipped"}]
    on_gpu = device.startswith("cuda")
    models = load_models(directory, device, DTYPE, eager=False)
    longest = min(512, config["max_position_embeddings"])
    if quick or not on_gpu:
        full_shapes, sizes, repeats, matmul_sizes = [(4, 32)], [8, 16], 2, (256,)
    else:
        full_shapes, sizes, repeats, matmul_sizes = [(64, 128), (64, 512)], [64, 256, 1024], 10, (8192, 4096, 2048)
    matmul = largest_matmul(device, DTYPE, matmul_sizes)
    rows = []
    for batch, seq in full_shapes:
        rows += guarded(f"full {batch}x{seq}", lambda: [full_row(models, config, batch, seq, repeats, device, matmul)])
    for size in sizes:
        for kind, lengths in (("long-tailed", long_tailed_lengths(size, seed=1, longest=longest)),
                              ("uniform", uniform_lengths(size, seed=2, high=min(128, longest)))):
            rows += guarded(f"{kind} {size}x{max(lengths)}", lambda: [padded_row(
                kind, models, config, lengths, max(2, repeats - 4 if size < 1024 else repeats - 7), device, matmul)])
    rows += guarded("memory and syncs", lambda: memory_and_sync_rows(models, config, sizes[-1], longest, device))
    del models
    rows += guarded("training step", lambda: training_rows(directory, config, sizes[0], longest, device, repeats))
    return rows


def guarded(name: str, make_rows: Callable[[], list[dict]]) -> list[dict]:
    """One part's rows; if it raises (a kernel or an allocation this GPU refuses), one row that says so
    instead, with the traceback on stderr, so that the parts after it still run and the table still prints:
    GPU time is too scarce to lose a whole run to one row."""
    try:
        return make_rows()
    except Exception as error:  # noqa: BLE001 - reported in the table, not hidden
        log(traceback.format_exc())
        return [{"section": "gpu", "name": name, "note": f"failed: {type(error).__name__}: {error}"[:160]}]


def full_row(models: dict, config: dict, batch: int, seq: int, repeats: int, device: str,
             matmul: tuple[Callable, float, int]) -> dict:
    log(f"  gpu full {batch}x{seq} ...")
    row = forward_row(f"full {batch}x{seq}", models, config, [seq] * batch, repeats, device, matmul)
    row["note"] = f"roofline: {matmul[2]}^3 bf16 matmul, {row['matmul_gflops']:.0f} GFLOP/s"
    return check_goal(row, ">= 1.0x", row["speedup"])


def padded_row(kind: str, models: dict, config: dict, lengths: list[int], repeats: int, device: str,
               matmul: tuple[Callable, float, int]) -> dict:
    log(f"  gpu padded {kind} {len(lengths)}x{max(lengths)} ...")
    row = forward_row(f"{kind} {len(lengths)}x{max(lengths)}", models, config, lengths, repeats, device, matmul)
    kernel = kernel_in_use(config, device)  # asked after the row ran, so that a kernel that fell back says so
    row["note"] = (f"{100 * row['padding']:.0f}% padding; ideal {row['ideal']:.1f}x, "
                   f"reached {100 * row['share_of_ideal']:.0f}%; kernel {kernel}")
    if kind == "uniform":
        check_goal(row, ">= 1.3x", row["speedup"])
    else:
        check_goal(row, ">= 80%", row["share_of_ideal"])
        if row["padding"] >= 0.85:
            check_goal(row, ">= 5x", row["speedup"])
    log(f"    {row['minibert']:.1f} ms vs {row['transformers_sdpa']:.1f} ms: {row['speedup']:.2f}x ({row['note']})")
    return row


def memory_and_sync_rows(models: dict, config: dict, size: int, longest: int, device: str) -> list[dict]:
    """Peak activation memory of one forward on the largest long-tailed batch; host syncs per forward."""
    lengths = long_tailed_lengths(size, seed=1, longest=longest)
    batch = make_batch(lengths, config["vocab_size"], seed=3, device=device)
    peaks = {label: peak_mib(forward_call(model, batch), device) for label, model in models.items()}
    syncs = {label: host_syncs(forward_call(model, batch), device) for label, model in models.items()}
    name = f"long-tailed {size}x{max(lengths)}"
    memory = {"section": "gpu memory", "name": f"forward {name}", "unit": "MiB", **peaks,
              "note": "peak allocated above weights and inputs (torch.cuda.max_memory_allocated)"}
    if peaks["minibert"] is not None:
        memory["speedup"] = peaks["transformers_sdpa"] / max(peaks["minibert"], 1e-9)
        check_goal(memory, ">= 1.0x", memory["speedup"])
    else:
        memory["note"] = "peak memory: CUDA only"
    sync_note = ("host syncs per forward: CUDA only" if syncs["minibert"] is None else
                 f"host syncs per forward: minibert {syncs['minibert']}, transformers {syncs['transformers_sdpa']} "
                 "(torch.cuda.set_sync_debug_mode)")
    sync_row = {"section": "gpu syncs", "name": name, "note": sync_note, "syncs": syncs}
    log(f"    {memory['note']}; {sync_note}")
    return [memory, sync_row]


def training_rows(directory: Path, config: dict, size: int, longest: int, device: str, repeats: int) -> list[dict]:
    """A bf16-autocast training step of sequence classification on the long-tailed batch: time and peak memory."""
    from bench_model import classifiers

    models, what = classifiers(directory)
    models = {label: model.to(device) for label, model in models.items()}
    lengths = long_tailed_lengths(size, seed=1, longest=longest)
    batch = make_batch(lengths, config["vocab_size"], seed=4, device=device)
    labels = (torch.arange(size) % 2).to(device)
    calls = {label: training_call(model, batch, labels, device) for label, model in models.items()}
    log(f"  gpu training step long-tailed {size}x{max(lengths)} ...")
    timing = time_alternating(calls, max(2, repeats - 5), device)
    name = f"train long-tailed {size}x{max(lengths)}"
    row = {"section": "gpu training", "name": name, "unit": "ms", "lengths": lengths,
           "minibert": 1000 * timing.median("minibert"), "transformers_sdpa": 1000 * timing.median("transformers_sdpa"),
           "speedup": timing.ratio("transformers_sdpa", "minibert"),
           "note": f"{what}, bf16 autocast, dropout on; kernel {kernel_in_use(config, device, dropout=0.1)}"}
    check_goal(row, ">= 2x", row["speedup"])
    peaks = {label: peak_mib(call, device) for label, call in calls.items()}
    memory = {"section": "gpu memory", "name": name, "unit": "MiB", **peaks,
              "note": "peak allocated in one training step above weights and inputs"}
    if peaks["minibert"] is not None:
        memory["speedup"] = peaks["transformers_sdpa"] / max(peaks["minibert"], 1e-9)
        check_goal(memory, ">= 1.0x", memory["speedup"])
    log(f"    {row['minibert']:.1f} ms vs {row['transformers_sdpa']:.1f} ms: {row['speedup']:.2f}x")
    return [row, memory]
