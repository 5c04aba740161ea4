"""ONNX Runtime rows: transformers' BertModel exported to ONNX, run plain, optimized, and in int8.

What people deploying BERT on CPU compare against. The export and optimization follow ONNX Runtime's
own recipe for BERT:
  1. ``torch.onnx.export`` of transformers' BertModel (eager attention, the TorchScript exporter,
     opset 17), with dynamic batch and sequence axes: the plain graph;
  2. ``onnxruntime.transformers.optimizer.optimize_model(model_type="bert")``: fuses attention,
     LayerNorm with its residual (SkipLayerNormalization), bias + GELU, and the embeddings;
  3. ``onnxruntime.quantization.quantize_dynamic`` of the optimized graph: int8 weights, per-call
     uint8 activations, like minibert.quantize.
Each graph's outputs are checked against transformers before anything is timed, and the fusions
that happened are printed: without a fused Attention the "optimized" row would not be ORT's best.

Needs the ``bench`` extra (``pip install -e '.[bench]'``: onnxruntime, onnx, onnxscript). Without
it, the rows say so and how to get them.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

from bench_model import encoder_linear_layers, linear_layers_call
from harness import check_goal, log, make_batch, time_alternating

INSTALL_HINT = "pip install -e '.[bench]' (onnxruntime, onnx, onnxscript)"
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
# Tolerances against transformers, float32: the fused kernels reorder sums (1e-5 would be too tight
# for 12 layers of bert-base); int8 is held to a cosine, as minibert's int8 is.
FLOAT_ATOL = 1e-3
INT8_MIN_COSINE = 0.99


def onnx_available() -> str | None:
    """None if the bench extra is installed, else what is missing."""
    missing = []
    for name in ("onnxruntime", "onnx", "onnxscript"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    return ", ".join(missing) or None


class _Exportable(torch.nn.Module):
    """transformers' BertModel with positional inputs and a tuple out, as the exporter wants them."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids):
        output = self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        return output.last_hidden_state, output.pooler_output


def export(checkpoint: Path, directory: Path, config: dict) -> tuple[dict[str, Path], dict]:
    """Write plain.onnx, optimized.onnx and int8.onnx into ``directory``; return their paths and what
    each step did (seconds, and the optimizer's fused-operator counts)."""
    import onnx
    import transformers
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers import optimizer

    reference = transformers.BertModel.from_pretrained(str(checkpoint), attn_implementation="eager").eval()
    sample = make_batch([16, 12], config["vocab_size"], seed=7)
    sample["token_type_ids"] = torch.zeros_like(sample["input_ids"])
    paths = {name: directory / f"{name}.onnx" for name in ("plain", "optimized", "int8")}
    dynamic = {name: {0: "batch", 1: "seq"} for name in (*INPUT_NAMES, "last_hidden_state")}
    dynamic["pooler_output"] = {0: "batch"}
    start = time.perf_counter()
    # The tracer warns about transformers' Python branches on shapes: expected, the axes are declared dynamic.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_Exportable(reference), tuple(sample[name] for name in INPUT_NAMES), str(paths["plain"]),
                          input_names=list(INPUT_NAMES), output_names=["last_hidden_state", "pooler_output"],
                          dynamic_axes=dynamic, opset_version=17, dynamo=False)
    info = {"export_seconds": time.perf_counter() - start}
    start = time.perf_counter()
    optimized = optimizer.optimize_model(str(paths["plain"]), model_type="bert",
                                         num_heads=config["num_attention_heads"], hidden_size=config["hidden_size"])
    optimized.save_model_to_file(str(paths["optimized"]))
    info["fusions"] = {name: count for name, count in optimized.get_fused_operator_statistics().items() if count}
    info["optimize_seconds"] = time.perf_counter() - start
    logging.getLogger().setLevel(logging.ERROR)  # the quantizer's advice to pre-process, on the root logger
    start = time.perf_counter()
    # The fused ops come from ONNX Runtime's own domain, where ONNX shape inference finds no output
    # type: the quantizer is told that they are float.
    quantize_dynamic(str(paths["optimized"]), str(paths["int8"]), weight_type=QuantType.QInt8,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    info["quantize_seconds"] = time.perf_counter() - start
    return paths, info


def session(path: Path):
    """An ONNX Runtime CPU session with as many threads as torch uses, so both get the same cores."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    # ORT's threads otherwise spin for a while after each run, waiting for more work: with the
    # contenders alternated, they would take the cores from whichever runs next.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def feed(batch: dict[str, torch.Tensor]) -> dict:
    """minibert's batch as ONNX Runtime's numpy inputs (all three, as the graph declares them)."""
    input_ids = batch["input_ids"]
    attention_mask = batch.get("attention_mask", torch.ones_like(input_ids))
    token_type_ids = batch.get("token_type_ids", torch.zeros_like(input_ids))
    return {"input_ids": input_ids.numpy(), "attention_mask": attention_mask.numpy(),
            "token_type_ids": token_type_ids.numpy()}


def check_against_transformers(sessions: dict, reference: torch.nn.Module, config: dict) -> dict[str, float]:
    """Run each graph on a padded batch and compare last_hidden_state on the real tokens with
    transformers. Raises if a float graph differs by more than FLOAT_ATOL or int8's lowest per-token
    cosine is under INT8_MIN_COSINE. Returns the max |difference| (float) and the cosine (int8)."""
    batch = make_batch([32, 9, 20], config["vocab_size"], seed=8)
    with torch.no_grad():
        expected = reference(**batch).last_hidden_state  # (batch, seq, hidden)
    real = batch["attention_mask"].bool()
    found = {}
    for name, runner in sessions.items():
        actual = torch.from_numpy(runner.run(["last_hidden_state"], feed(batch))[0])
        if name == "int8":
            cosine = torch.nn.functional.cosine_similarity(actual[real], expected[real], dim=-1).min().item()
            found[name] = cosine
            if cosine < INT8_MIN_COSINE:
                raise RuntimeError(f"ONNX Runtime {name}: lowest per-token cosine {cosine:.4f} against transformers")
        else:
            difference = (actual[real] - expected[real]).abs().max().item()
            found[name] = difference
            if difference > FLOAT_ATOL:
                raise RuntimeError(f"ONNX Runtime {name}: max |difference| {difference:.1e} against transformers")
    return found


def ort_linear_layers_call(model: torch.nn.Module, tokens: int):
    """ONNX Runtime's MatMul + Add for the same linear layers as linear_layers_call, on random inputs of
    ``tokens`` rows, in one session: ORT's GEMMs alone, to set beside minibert's."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    layers = encoder_linear_layers(model)  # a float model's: nn.Linear, whose weights ORT is given
    widths = sorted({layer.in_features for layer in layers})
    nodes, weights, outputs = [], [], []
    for index, layer in enumerate(layers):
        weights += [numpy_helper.from_array(layer.weight.detach().T.contiguous().numpy(), f"weight{index}"),
                    numpy_helper.from_array(layer.bias.detach().numpy(), f"bias{index}")]
        nodes += [helper.make_node("MatMul", [f"x{layer.in_features}", f"weight{index}"], [f"product{index}"]),
                  helper.make_node("Add", [f"product{index}", f"bias{index}"], [f"y{index}"])]
        outputs.append(helper.make_tensor_value_info(f"y{index}", TensorProto.FLOAT, [tokens, layer.out_features]))
    graph = helper.make_graph(nodes, "linear_layers", [helper.make_tensor_value_info(f"x{width}", TensorProto.FLOAT,
                                                                                     [tokens, width]) for width in widths],
                              outputs, weights)
    with tempfile.TemporaryDirectory(prefix="minibert-onnx-") as temporary:
        path = Path(temporary) / "linear_layers.onnx"
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path),
                  save_as_external_data=True)  # over protobuf's 2 GB limit otherwise at bert-large
        runner = session(path)
    inputs = {f"x{width}": torch.randn(tokens, width).numpy() for width in widths}
    return lambda: runner.run(None, inputs)


def skipped(reason: str) -> list[dict]:
    return [{"section": "onnx", "name": "-", "note": reason}]


def onnx_rows(checkpoint: Path, config: dict, quick: bool) -> list[dict]:
    """transformers (sdpa), ORT plain / optimized / int8 and minibert (fp32; prepacked at batch 1, int8 at
    batch 8) on full batches and batch 1."""
    missing = onnx_available()
    if missing:
        return skipped(f"skipped: {missing} not installed; {INSTALL_HINT}")
    import transformers

    import minibert

    with tempfile.TemporaryDirectory(prefix="minibert-onnx-") as temporary:
        log("  exporting transformers' BertModel to ONNX, optimizing, quantizing ...")
        paths, info = export(checkpoint, Path(temporary), config)
        log(f"    fused: {info['fusions']}; export {info['export_seconds']:.0f} s, "
            f"optimize {info['optimize_seconds']:.0f} s, quantize {info['quantize_seconds']:.0f} s")
        sessions = {name: session(path) for name, path in paths.items()}
    reference = transformers.BertModel.from_pretrained(str(checkpoint), attn_implementation="sdpa").eval()
    checks = check_against_transformers(sessions, reference, config)
    log(f"    outputs vs transformers: max |diff| plain {checks['plain']:.1e}, optimized {checks['optimized']:.1e}; "
        f"int8 lowest cosine {checks['int8']:.4f}")
    ours = minibert.BertModel.from_pretrained(checkpoint)
    ours_int8 = minibert.quantize(minibert.BertModel.from_pretrained(checkpoint), "int8")
    ours_prepacked = minibert.prepack(minibert.BertModel.from_pretrained(checkpoint))
    fused_attention = info["fusions"].get("Attention", 0) + info["fusions"].get("MultiHeadAttention", 0)
    fusion_note = ", ".join(f"{name} {count}" for name, count in info["fusions"].items())
    rows = [{"section": "onnx", "name": "export and fusions", "unit": "s", "minibert": None,
             "fusions": info["fusions"], "checks": checks,
             **{key: value for key, value in info.items() if key.endswith("seconds")},
             "note": f"fused {fusion_note}; vs transformers: max |diff| plain {checks['plain']:.1e}, "
                     f"optimized {checks['optimized']:.1e}, int8 cosine >= {checks['int8']:.4f}"}]
    check_goal(rows[0], ">= 1", fused_attention / max(1, config["num_hidden_layers"]))  # every layer's attention fused
    shapes = [(1, 16), (2, 32)] if quick else [(1, 16), (1, 128), (1, 512), (8, 128)]
    for batch, seq in shapes:
        seq = min(seq, config["max_position_embeddings"])
        inputs = make_batch([seq] * batch, config["vocab_size"], seed=9)
        inputs.pop("attention_mask")  # a full batch, as a caller without padding passes it
        onnx_inputs = feed(inputs)

        def torch_call(model):
            def run():
                with torch.inference_mode():
                    return model(**inputs)
            return run

        contenders = {"minibert": torch_call(ours), "transformers_sdpa": torch_call(reference),
                      **{f"ort_{name}": (lambda runner=runner: runner.run(None, onnx_inputs))
                         for name, runner in sessions.items()}}
        first_call = None
        if batch > 1:
            contenders["minibert_int8"] = torch_call(ours_int8)
            # int8's first call in the process compiles its input rounding (torch.compile): say what it costs.
            start = time.perf_counter()
            contenders["minibert_int8"]()
            first_call = time.perf_counter() - start
        else:
            contenders["minibert_prepacked"] = torch_call(ours_prepacked)
            # What the GEMMs alone cost, as each runs them: the floor for any change outside them.
            contenders["minibert_linear_layers"] = linear_layers_call(ours, seq, "cpu")
            contenders["minibert_prepacked_linear_layers"] = linear_layers_call(ours_prepacked, seq, "cpu")
            contenders["ort_linear_layers"] = ort_linear_layers_call(ours, seq)
        log(f"  onnx {batch}x{seq} ...")
        # 9 rounds at 8x128: its per-round ratios spread by +-8% on a shared 2-core machine.
        timing = time_alternating(contenders, repeats=2 if quick else (9 if batch * seq >= 1024 else 11))
        row = {"section": "onnx", "name": f"{batch}x{seq}", "unit": "ms",
               **{name: 1000 * timing.median(name) for name in contenders},
               "speedup": timing.ratio("ort_optimized", "minibert")}
        row["note"] = (f"ORT plain {row['ort_plain']:.1f}, optimized {row['ort_optimized']:.1f}, "
                       f"int8 {row['ort_int8']:.1f} ms; speedup = ORT optimized / minibert")
        if batch == 1:  # the goal: batch-1 latency at or below ORT optimized, with minibert's fastest float32
            row["prepacked_speedup"] = timing.ratio("ort_optimized", "minibert_prepacked")
            # A user picks prepack where it pays (few tokens) and the default where it does not.
            row["best_speedup"] = max(row["speedup"], row["prepacked_speedup"])
            check_goal(row, ">= 1.0x", row["best_speedup"])
            row["note"] += (f"; minibert.prepack {row['minibert_prepacked']:.1f} ms = {row['prepacked_speedup']:.2f}x; "
                            f"linear layers alone: minibert {row['minibert_linear_layers']:.1f}, prepacked "
                            f"{row['minibert_prepacked_linear_layers']:.1f}, ORT {row['ort_linear_layers']:.1f} ms")
        else:
            row["int8_speedup"] = timing.ratio("ort_int8", "minibert_int8")
            row["int8_first_call_s"] = first_call
            row["note"] += (f"; minibert int8 {row['minibert_int8']:.1f} ms = "
                            f"{row['int8_speedup']:.2f}x ORT int8's speed (its first call {first_call:.1f} s, "
                            f"torch.compile included)")
            check_goal(row, ">= 1.0x", row["int8_speedup"])  # minibert int8 at least as fast as ORT int8
        rows.append(row)
        log(f"    minibert {row['minibert']:.1f} ms, {row['note']}")
    return rows


if __name__ == "__main__":
    sys.exit("run through benchmarks/run.py --only onnx")
