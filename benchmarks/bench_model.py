"""Model rows on the CPU: full batches, padded batches, a training step, torch.compile (GPU rows: bench_gpu.py).

minibert's BertModel (SDPA, unpadded: its default) against transformers' BertModel with sdpa and
eager attention, on the same checkpoint, in one process, runs alternated (harness.time_alternating).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from harness import (
    Timing,
    check_goal,
    encoder_flops,
    load_models,
    log,
    long_tailed_lengths,
    make_batch,
    matmul_call,
    padding_share,
    time_alternating,
    uniform_lengths,
)


def forward_call(model: torch.nn.Module, batch: dict):
    def call():
        with torch.inference_mode():
            return model(**batch)
    return call


def encoder_linear_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The encoder's linear layers in order: nn.Linear, or a prepacked model's PrepackedLinear."""
    from minibert.fast.prepack import PrepackedLinear

    return [module for module in model.encoder.modules() if isinstance(module, (torch.nn.Linear, PrepackedLinear))]


def linear_layers_call(model: torch.nn.Module, tokens: int, device: str):
    """Only the model's linear layers (Q, K, V, W^O, the feed-forward's two), on random inputs of
    ``tokens`` rows: what a forward would cost if everything else (attention, LayerNorm, GELU,
    residuals) were free. The bound on the roofline share for small batches."""
    from minibert.fast.prepack import PrepackedLinear

    layers = encoder_linear_layers(model)
    dtype = torch.float32 if isinstance(layers[0], PrepackedLinear) else layers[0].weight.dtype
    inputs = {width: torch.randn(tokens, width, device=device, dtype=dtype)
              for width in {layer.in_features for layer in layers}}  # (tokens, in_features)

    def call():
        with torch.inference_mode():
            for layer in layers:
                layer(inputs[layer.in_features])  # (tokens, out_features)
    return call


def busy_note(row: dict, timing: Timing) -> dict:
    """Timings share the machine with whatever else runs: say so when that was much."""
    row["others_cpu"] = round(timing.others_cpu, 3)
    if timing.others_cpu > 0.1 and timing.window > 1.0:  # CPU time is counted in 10 ms ticks
        row["note"] = (row.get("note", "") + f"; BUSY: others used {100 * timing.others_cpu:.0f}% of the CPU").lstrip("; ")
    return row


def forward_row(section: str, name: str, models: dict, config: dict, lengths: list[int], repeats: int,
                device: str = "cpu", seed: int = 0, roofline: bool = False) -> dict:
    """Median forward time of each model on one batch; GFLOP/s on the real tokens.

    With ``roofline``, a 2048^3 matmul and the model's linear layers alone run as two more
    contenders, so that the roofline is measured in the same stretch of time as the models.
    Ratios are medians of per-repeat ratios (see Timing.ratio).
    """
    ours = models["minibert"]
    dtype = ours.embeddings.word_embeddings.weight.dtype
    batch = make_batch(lengths, config["vocab_size"], seed, device)
    if len(set(lengths)) == 1:
        batch.pop("attention_mask")  # a full batch, as a caller without padding passes it
    contenders = {label: forward_call(model, batch) for label, model in models.items()}
    if roofline:
        contenders["matmul"], matmul_flops = matmul_call(device, dtype)
        contenders["linear_layers"] = linear_layers_call(ours, sum(lengths), device)
    timing = time_alternating(contenders, repeats, device)
    flops = encoder_flops(config, lengths)
    row = {"section": section, "name": name, "unit": "ms", "lengths": lengths,
           "padding": round(padding_share(lengths), 3), "gflops": flops / timing.median("minibert") / 1e9}
    row.update({label: 1000 * timing.median(label) for label in models})
    row["speedup"] = timing.ratio("transformers_sdpa", "minibert")
    if roofline:
        row["matmul_gflops"] = matmul_flops / timing.median("matmul") / 1e9
        row["roofline"] = timing.ratio("matmul", "minibert") * flops / matmul_flops
        row["transformers_sdpa_roofline"] = timing.ratio("matmul", "transformers_sdpa") * flops / matmul_flops
        linear_flops = encoder_flops(config, lengths, attention=False, pooler=False)
        row["linear_layers_roofline"] = timing.ratio("matmul", "linear_layers") * linear_flops / matmul_flops
        row["note"] = f"linear layers alone: {100 * row['linear_layers_roofline']:.0f}%"
    return busy_note(row, timing)


def model_rows(directory: Path, config: dict, quick: bool, device: str = "cpu",
               dtype: torch.dtype = torch.float32) -> list[dict]:
    """Full batches (with the roofline) and padded batches (long-tailed and uniform lengths)."""
    on_gpu = device.startswith("cuda")
    models = load_models(directory, device, dtype, eager=not on_gpu)
    label = "" if dtype == torch.float32 else f" {str(dtype).removeprefix('torch.')}"
    section = f"gpu{label}" if on_gpu else "full batch"
    if quick:
        full_shapes, padded_batch, repeats = [(1, 32), (4, 32)], 8, 2
    elif on_gpu:
        full_shapes, padded_batch, repeats = [(64, 128), (64, 512)], 64, 10
    else:
        full_shapes, padded_batch, repeats = [(1, 128), (8, 128), (8, 512)], 16, 9
    rows = []
    for batch, seq in full_shapes:
        log(f"  {section} {batch}x{seq}{label} ...")
        row = forward_row(section, f"{batch}x{seq}{label}", models, config, [seq] * batch,
                          repeats if batch * seq < 4096 else max(2, repeats - 5), device, roofline=True)
        if not on_gpu:  # the goals are for this CPU; on a GPU the rows are for information
            check_goal(row, ">= 1.0x", row["speedup"])
            check_goal(row, ">= 90%", row["roofline"])
        rows.append(row)
        log(f"    {row['minibert']:.1f} ms vs {row['transformers_sdpa']:.1f} ms (sdpa): {row['speedup']:.2f}x, "
            f"{100 * row['roofline']:.0f}% of a {row['matmul_gflops']:.0f} GFLOP/s matmul ({row['note']})")
    longest = min(270, config["max_position_embeddings"])
    distributions = {
        "long-tailed": (long_tailed_lengths(padded_batch, seed=1, longest=longest), ">= 4x"),
        "uniform": (uniform_lengths(padded_batch, seed=2, high=min(128, longest)), ">= 1.5x"),
    }
    for kind, (lengths, goal) in distributions.items():
        name = f"{kind} {padded_batch}x{max(lengths)}{label}"
        log(f"  padded {name} ({100 * padding_share(lengths):.0f}% padding) ...")
        row = forward_row(f"gpu{label} padded" if on_gpu else "padded", name, models, config, lengths,
                          max(2, repeats - 4), device, seed=3)
        row["note"] = f"{100 * row['padding']:.0f}% padding" + (f"; {row['note']}" if row.get("note") else "")
        rows.append(row if on_gpu else check_goal(row, goal, row["speedup"]))
        log(f"    {row['minibert']:.1f} ms vs {row['transformers_sdpa']:.1f} ms (sdpa): {row['speedup']:.2f}x")
    return rows


# ---- one training step ----------------------------------------------------------------------------


def classifiers(directory: Path) -> tuple[dict[str, torch.nn.Module], str]:
    """Sequence classification (2 labels) on the checkpoint, for both libraries, in training mode."""
    import transformers

    import minibert

    torch.manual_seed(0)
    ours = minibert.BertForSequenceClassification.from_pretrained(directory, num_labels=2, strict=False)
    theirs = transformers.BertForSequenceClassification.from_pretrained(str(directory), num_labels=2,
                                                                        attn_implementation="sdpa")
    return {"minibert": ours.train(), "transformers_sdpa": theirs.train()}, "BertForSequenceClassification"


def training_call(model: torch.nn.Module, batch: dict, labels: torch.Tensor):
    def call():
        model.zero_grad(set_to_none=True)
        loss = model(**batch, labels=labels).loss
        loss.backward()
    return call


def training_rows(directory: Path, config: dict, quick: bool) -> list[dict]:
    """Forward + backward of sequence classification (dropout on, as in training), full and padded."""
    models, what = classifiers(directory)
    batches = {"8x128": [128] * 8, "uniform 16x": uniform_lengths(16, seed=2)}
    if quick:
        batches = {"4x32": [32] * 4, "uniform 8x": uniform_lengths(8, seed=2, high=32)}
    rows = []
    for name, lengths in batches.items():
        name = name + (str(max(lengths)) if name.endswith("x") else "")
        log(f"  training step {name} ...")
        batch = make_batch(lengths, config["vocab_size"], seed=4)
        if len(set(lengths)) == 1:
            batch.pop("attention_mask")
        labels = torch.arange(len(lengths)) % 2
        timing = time_alternating({label: training_call(model, batch, labels) for label, model in models.items()},
                                  repeats=1 if quick else 3)
        flops = 3 * encoder_flops(config, lengths)  # backward costs about twice the forward
        row = {"section": "training", "name": name, "unit": "ms", "lengths": lengths,
               "minibert": 1000 * timing.median("minibert"),
               "transformers_sdpa": 1000 * timing.median("transformers_sdpa"),
               "speedup": timing.ratio("transformers_sdpa", "minibert"),
               "gflops": flops / timing.median("minibert") / 1e9, "note": f"{what}, forward + backward"}
        rows.append(check_goal(busy_note(row, timing), ">= 1.0x", row["speedup"]))
        log(f"    {row['minibert']:.0f} ms vs {row['transformers_sdpa']:.0f} ms (sdpa): {row['speedup']:.2f}x")
    return rows


# ---- torch.compile ------------------------------------------------------------------------------


def compile_rows(directory: Path, config: dict, quick: bool) -> list[dict]:
    """Does torch.compile help minibert's dense path on this machine? Compile time, then steady state.

    --quick uses the "eager" backend: dynamo captures the graphs, no code is generated (seconds, not a minute).
    """
    import minibert

    # Graph breaks (input checks that read values, the padding test) are expected: not worth a warning each.
    logging.getLogger("torch._dynamo").setLevel(logging.ERROR)
    model = minibert.BertModel.from_pretrained(directory)
    batch, seq = (4, 32) if quick else (8, 128)
    inputs = make_batch([seq] * batch, config["vocab_size"], seed=5)
    inputs.pop("attention_mask")
    backend = "eager" if quick else "inductor"
    log(f"  torch.compile {batch}x{seq} (backend {backend}) ...")
    compiled = torch.compile(model, backend=backend)
    start = time.perf_counter()
    try:
        forward_call(compiled, inputs)()
    except Exception as error:  # no C++ compiler, an unsupported platform: say so, do not stop the run
        return [{"section": "compile", "name": f"{batch}x{seq}", "note": f"torch.compile failed: {error}"[:120]}]
    compile_seconds = time.perf_counter() - start
    timing = time_alternating({"eager": forward_call(model, inputs), "compiled": forward_call(compiled, inputs)},
                              repeats=2 if quick else 5)
    gain = timing.ratio("eager", "compiled")
    row = {"section": "compile", "name": f"minibert {batch}x{seq}", "unit": "ms",
           "minibert": 1000 * timing.median("compiled"), "eager_ms": 1000 * timing.median("eager"), "speedup": gain,
           "compile_seconds": compile_seconds,
           "backend": backend,
           "note": f"{backend}: compiled vs not {gain:.2f}x ({'helps' if gain > 1.03 else 'no gain'}); "
                   f"compiling took {compile_seconds:.0f} s"}
    log(f"    {row['note']}")
    return [busy_note(row, timing)]
