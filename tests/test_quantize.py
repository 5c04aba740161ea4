"""minibert.quantize(model, "int8"): the int8 linear layer against exact integer arithmetic, the
quantized model against float32 (tiny random and the real all-MiniLM-L6-v2), and what it refuses."""

from __future__ import annotations

import os
import shutil
import sys

import pytest
import torch

import minibert
from minibert.fast.conversion import fuse_linears
from conftest import REPO, TINY_CONFIGS, assert_close, minilm_dir

quantize_module = sys.modules["minibert.fast.quantize"]  # the package's `quantize` is the function
DynamicInt8Linear = quantize_module.DynamicInt8Linear


def integer_reference(layer: DynamicInt8Linear, linear: torch.nn.Linear, hidden: torch.Tensor) -> torch.Tensor:
    """The layer's sum over its own uint8 codes, multiplied out in float64 (exact for these sizes)."""
    weight = linear.weight.double()
    scale_w = weight.abs().amax(dim=1) / layer.weight_levels
    weight_q = torch.round(weight / scale_w[:, None]).clamp(-layer.weight_levels, layer.weight_levels)
    codes, scale_x, zero_point = quantize_module.quantize_tokens(hidden)
    hidden_q = (codes.double() - zero_point.double()) * scale_x.double()  # (..., in)
    return hidden_q @ (weight_q * scale_w[:, None]).T + linear.bias.double()


@pytest.mark.parametrize("shift", [0.0, 3.0, -0.17], ids=["centred", "all-positive", "gelu-like"])
def test_int8_linear_is_exact_integer_arithmetic(shift):
    """Against the same codes in float64. The all-positive input puts most uint8 codes near 255,
    where 8-bit weights would overflow the int16 pair sums of an AVX2-only CPU (see int8_weight_levels)."""
    torch.manual_seed(0)
    linear = torch.nn.Linear(96, 40)
    hidden = torch.randn(3, 7, 96) + shift  # (batch, seq, in)
    if shift < 0:
        hidden = hidden.abs() * 2 + shift  # one-sided, as after GELU
    layer = DynamicInt8Linear(linear)
    with torch.inference_mode():
        actual = layer(hidden)  # (batch, seq, out)
    assert actual.shape == (3, 7, 40) and actual.dtype == torch.float32
    # float32 rescaling of exact integer sums: 1e-5 relative to the output's size.
    expected = integer_reference(layer, linear, hidden)
    assert_close(actual.double(), expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item(), what="int8 linear")


def test_int8_linear_with_gelu_is_integer_arithmetic_then_exact_gelu():
    """Config "gelu": the same per-token arithmetic, then exact GELU as the output is rescaled."""
    torch.manual_seed(3)
    linear = torch.nn.Linear(96, 40)
    hidden = torch.randn(3, 7, 96) * 2  # (batch, seq, in)
    layer = DynamicInt8Linear(linear)
    layer.post_op = "gelu"
    with torch.inference_mode():
        actual = layer(hidden)  # (batch, seq, out)
    before = integer_reference(layer, linear, hidden)  # (batch, seq, out)
    expected = torch.nn.functional.gelu(before)
    assert_close(actual.double(), expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item(), what="int8 + GELU")
    assert (torch.nn.functional.gelu(before, approximate="tanh") - expected).abs().max() > 1e-4  # erf, not tanh


@pytest.mark.parametrize("kind", ["signed", "gelu-like", "zeros"])
def test_token_codes_round_to_nearest(kind):
    """The codes against rounding in float64: off by at most one at a tie (float32 products), within
    0..255, zero a code exactly, every token using its range from one end of the codes to the other."""
    torch.manual_seed(2)
    hidden = torch.randn(100, 64) * torch.rand(100, 1) * 5  # (100, 64): tokens of different sizes
    if kind == "gelu-like":
        hidden = hidden.abs() - 0.17 * torch.rand(100, 64)
    elif kind == "zeros":
        hidden[7] = 0.0  # a token of zeros among the others
    hidden[:, 5] = 0.0
    codes, scale, zero_point = quantize_module.quantize_tokens(hidden)
    assert codes.dtype == torch.uint8 and scale.shape == (100, 1) and zero_point.shape == (100, 1)
    if kind == "gelu-like":
        assert zero_point.median() < 40  # near the bottom: most of the codes for the positive side
    elif kind == "signed":
        assert 100 < zero_point.median() < 155
    assert torch.equal(codes[:, 5], zero_point[:, 0].to(torch.uint8))  # 0 -> each token's zero point
    exact = torch.floor(hidden.double() / scale.double() + zero_point.double() + 0.5)
    assert exact.min() >= 0 and exact.max() <= 256  # in range, but for the top code's tie (clamped)
    exact = exact.clamp(max=255)
    difference = (codes.double() - exact).abs()
    assert difference.max() <= 1 and (difference == 0).double().mean() > 0.999
    error = ((codes.double() - zero_point.double()) * scale.double() - hidden.double()).abs() / scale.double()
    assert error.max() <= 0.5 + 1e-4  # half a step at most
    nonzero = hidden.abs().amax(dim=-1) > 0
    assert (codes.amax(dim=-1)[nonzero] >= 254).all() and (codes.amin(dim=-1)[nonzero] <= 1).all()  # both ends


def needs_a_compiler() -> None:
    compiler = os.environ.get("CXX", "g++")
    if shutil.which(compiler) is None:
        pytest.skip(f"torch.compile's CPU backend (inductor) needs a C++ compiler; {compiler} is not on PATH")


def test_compiled_rounding_gives_the_eager_codes():
    """quantize(compile=True)'s rounding against quantize_tokens: scales to float32 rounding, zero
    points and codes off by one at most (a tie, where the compiled loop rounds x / scale differently);
    and its rescaling against rescale_products."""
    needs_a_compiler()
    rounding = quantize_module.CompiledRounding()
    torch.manual_seed(5)
    for hidden in (torch.randn(2, 9, 48) * 3, torch.randn(13, 48).abs() - 0.1, torch.randn(1, 1, 48)):
        codes, scale, zero_point = quantize_module.quantize_tokens(hidden)
        compiled = rounding(hidden)
        assert quantize_module.CompiledRounding.failed is None  # it really compiled
        assert compiled[0].dtype == torch.uint8 and compiled[0].shape == codes.shape
        assert (compiled[2] - zero_point).abs().max() <= 1 and (compiled[2] == zero_point).double().mean() > 0.9
        assert_close(compiled[1], scale, rtol=1e-6, atol=0, what="compiled scales")
        difference = (compiled[0].int() - codes.int()).abs()
        assert difference.max() <= 1 and (difference == 0).double().mean() > 0.99
        products = torch.randn(*hidden.shape[:-1], 16) * 100  # (..., out)
        sums, bias = torch.randn(16), torch.randn(16)
        for gelu in (False, True):
            expected = quantize_module.rescale_products(products.clone(), scale, zero_point, sums, bias, gelu)
            actual = rounding.rescale(products.clone(), scale, zero_point, sums, bias, gelu)
            assert_close(actual, expected, rtol=1e-5, atol=1e-5, what=f"compiled rescaling, gelu={gelu}")


def test_rounding_that_cannot_compile_warns_once_and_runs_eagerly(monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler found\nmore detail")

    monkeypatch.setattr(quantize_module.CompiledRounding, "compiled", {})
    monkeypatch.setattr(quantize_module.CompiledRounding, "failed", None)
    monkeypatch.setattr(torch, "compile", broken)
    rounding = quantize_module.CompiledRounding()
    hidden = torch.randn(4, 32)
    with caplog.at_level("WARNING", logger="minibert"):
        for _ in range(3):
            codes, scale, zero_point = rounding(hidden)
    assert [record.getMessage() for record in caplog.records] == [
        "minibert int8: torch.compile could not build the input rounding (RuntimeError: no C++ compiler found); "
        "running it eagerly, which makes the int8 forward slower"]
    expected = quantize_module.quantize_tokens(hidden)
    assert torch.equal(codes, expected[0]) and torch.equal(scale, expected[1]) and torch.equal(zero_point, expected[2])


def test_quantize_compiles_the_rounding_unless_asked_not_to(tiny_checkpoints):
    eager = minibert.quantize(minibert.BertModel.from_pretrained(tiny_checkpoints["tiny"]), compile=False)
    compiled = minibert.quantize(minibert.BertModel.from_pretrained(tiny_checkpoints["tiny"]))
    def roundings(model):
        return [type(module.round_input).__name__ for module in model.modules() if isinstance(module, DynamicInt8Linear)]

    assert roundings(eager) == ["function"] * 8 and roundings(compiled) == ["CompiledRounding"] * 8  # 2 layers of 4
    assert all(isinstance(module.rescale_output.__self__, quantize_module.CompiledRounding)
               for module in compiled.modules() if isinstance(module, DynamicInt8Linear))
    assert "compiled rounding" in repr(compiled.encoder.layers[0].feed_forward.output)
    with pytest.raises(TypeError, match="compile must be True or False, not 'yes'"):
        minibert.quantize(minibert.BertModel.from_pretrained(tiny_checkpoints["tiny"]), compile="yes")
    needs_a_compiler()
    input_ids = torch.tensor([[2, 5, 7, 9, 3], [2, 8, 3, 0, 0]])
    with torch.inference_mode():
        expected = eager(input_ids=input_ids, attention_mask=(input_ids > 0).long()).last_hidden_state
        actual = compiled(input_ids=input_ids, attention_mask=(input_ids > 0).long()).last_hidden_state
    assert quantize_module.CompiledRounding.failed is None  # the compiled rounding ran, not the fallback
    cosine = torch.nn.functional.cosine_similarity(actual[input_ids > 0], expected[input_ids > 0], dim=-1)
    assert cosine.min() > 0.999  # a code off by one at a tie, no more


def test_int8_linear_takes_no_tokens_and_fuses_layers_without_a_bias():
    torch.manual_seed(4)
    layer = DynamicInt8Linear(torch.nn.Linear(16, 8))
    with torch.inference_mode():
        assert layer(torch.empty(0, 16)).shape == (0, 8)
        layer.post_op = "gelu"
        assert layer(torch.empty(2, 0, 16)).shape == (2, 0, 8)
    with_bias, without = torch.nn.Linear(16, 8), torch.nn.Linear(16, 4, bias=False)
    fused = fuse_linears([with_bias, without])
    hidden = torch.randn(3, 16)  # (tokens, in)
    with torch.no_grad():
        assert torch.allclose(fused(hidden), torch.cat([with_bias(hidden), without(hidden)], dim=-1))


def test_outlier_features_are_multiplied_in_float32():
    """A layer told its input's outlier features (say 2 of 64, at 500 where the rest are about 1)
    rounds the others on their own range and adds the outliers' products in float32: exact integer
    arithmetic on the rest plus the float32 outliers, and far closer to float than without."""
    torch.manual_seed(2)
    linear = torch.nn.Linear(64, 24)
    hidden = torch.randn(5, 64)  # (tokens, in)
    hidden[:, [7, 40]] = 500.0 * torch.rand(5, 2) + 100
    plain = DynamicInt8Linear(linear)
    linear.outlier_features = torch.tensor([7, 40])
    layer = DynamicInt8Linear(linear)
    assert "2 outlier features in float32" in repr(layer)
    rest = hidden.index_fill(1, linear.outlier_features, 0.0)  # (tokens, in)
    cut = torch.nn.Linear(64, 24)
    with torch.no_grad():
        cut.weight.copy_(linear.weight.index_fill(1, linear.outlier_features, 0.0))
        cut.bias.copy_(linear.bias)
    with torch.inference_mode():
        actual, before, expected = layer(hidden), plain(hidden), linear(hidden)  # (tokens, out)
        reference = integer_reference(layer, cut, rest) + (hidden[:, [7, 40]] @ linear.weight[:, [7, 40]].T).double()
    assert_close(actual.double(), reference, rtol=1e-5, atol=1e-5 * reference.abs().max().item(), what="outliers")
    assert (actual - expected).abs().max() < (before - expected).abs().max() / 10


def test_outlier_features_come_from_the_layer_norms(tiny_checkpoints):
    """Each feed-forward's first layer, which reads a LayerNorm's output, multiplies that output's
    features of largest |bias| + 4 |weight| in float32; the other layers none (the query-key-value
    layers read a LayerNorm's output too, and gain nothing from them on MiniLM)."""
    model = minibert.BertModel.from_pretrained(tiny_checkpoints["tiny"])
    with torch.no_grad():
        model.embeddings.layer_norm.bias[[3, 11]] = 9.0
        model.encoder.layers[0].attention_norm.weight[[2, 5, 8, 13]] = -6.0
    model = minibert.quantize(model, compile=False)
    layer = model.encoder.layers[0]
    expected = sys.modules["minibert.fast.outliers"].OUTLIER_FEATURES
    assert layer.feed_forward.intermediate.outliers.tolist() == [2, 5, 8, 13][:expected]
    assert all(len(layer.feed_forward.intermediate.outliers) == expected for layer in model.encoder.layers)
    for other in (layer.attention.query_key_value, layer.attention.output, layer.feed_forward.output):
        assert other.outliers is None


def test_int8_linear_is_close_to_float():
    torch.manual_seed(1)
    linear = torch.nn.Linear(256, 64)
    hidden = torch.randn(10, 256)
    with torch.inference_mode():
        cosine = torch.nn.functional.cosine_similarity(DynamicInt8Linear(linear)(hidden), linear(hidden), dim=-1)
    assert cosine.min() > 0.999


def test_weight_levels_follow_the_cpu():
    assert quantize_module.int8_weight_levels({"avx2", "fma"}) == 63
    assert quantize_module.int8_weight_levels({"avx2", "avx512_vnni"}) == 127
    assert quantize_module.int8_weight_levels({"amx_int8"}) == 127


@pytest.fixture()
def tiny_model(tiny_checkpoints):
    return minibert.BertModel.from_pretrained(tiny_checkpoints["tiny"])


def test_quantize_replaces_the_encoder_linear_layers_only(tiny_model, tiny_checkpoints):
    reference = minibert.BertModel.from_pretrained(tiny_checkpoints["tiny"])
    model = minibert.quantize(tiny_model, "int8")
    assert model is tiny_model and model.inference_conversion == "quantize int8" and not model.training
    layers = TINY_CONFIGS["tiny"]["num_hidden_layers"]
    # Per layer: query, key and value fused into one, the attention output, and the feed-forward's two.
    assert sum(isinstance(module, DynamicInt8Linear) for module in model.modules()) == 4 * layers
    attention = model.encoder.layers[0].attention
    assert attention.query_key_value.out_features == 3 * attention.output.out_features
    assert not any(hasattr(attention, name) for name in ("query", "key", "value"))  # dropped, not kept beside
    feed_forward = model.encoder.layers[0].feed_forward  # tiny's hidden_act is "gelu": fused into the kernel
    assert feed_forward.intermediate.post_op == "gelu" and feed_forward.output.post_op == "none"
    assert not any(isinstance(module, torch.nn.Linear) for module in model.encoder.modules())
    assert isinstance(model.pooler.dense, torch.nn.Linear)
    # No float copy of a quantized weight stays behind.
    assert not any(name.startswith("encoder") and name.endswith(".weight") and "norm" not in name
                   for name, _ in model.named_parameters())
    batch = {"input_ids": torch.tensor([[2, 50, 7, 99, 3, 0], [2, 8, 9, 3, 0, 0]]),
             "attention_mask": torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 0, 0]])}
    with torch.inference_mode():
        actual, expected = model(**batch).last_hidden_state, reference(**batch).last_hidden_state
    real = batch["attention_mask"].bool()
    assert torch.nn.functional.cosine_similarity(actual[real], expected[real], dim=-1).min() > 0.99


def test_quantize_leaves_other_activations_separate(tiny_checkpoints):
    model = minibert.quantize(minibert.BertModel.from_pretrained(tiny_checkpoints["one-layer-relu"]))
    feed_forward = model.encoder.layers[0].feed_forward
    assert feed_forward.intermediate.post_op == "none" and feed_forward.activation is torch.nn.functional.relu


def test_quantize_works_on_a_task_head(tiny_checkpoints):
    model = minibert.BertForSequenceClassification.from_pretrained(tiny_checkpoints["tiny"], num_labels=3)
    minibert.quantize(model)
    assert isinstance(model.bert.encoder.layers[0].attention.query_key_value, DynamicInt8Linear)
    with torch.inference_mode():
        assert model(input_ids=torch.tensor([[2, 5, 3]])).logits.shape == (1, 3)


def test_quantize_refuses_what_it_cannot_do(tiny_model, tiny_checkpoints):
    with pytest.raises(ValueError, match="unknown quantization scheme 'int4'"):
        minibert.quantize(tiny_model, "int4")
    with pytest.raises(TypeError, match="quantize int8 needs a minibert model with an encoder"):
        minibert.quantize(torch.nn.Linear(2, 2))
    bf16 = minibert.BertModel.from_pretrained(tiny_checkpoints["tiny"], dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="float32 model on CPU"):
        minibert.quantize(bf16)
    with pytest.raises(TypeError, match="float32 inputs on the CPU, got torch.bfloat16"):
        minibert.quantize(tiny_model).encoder.layers[0].attention.output(torch.ones(2, 32, dtype=torch.bfloat16))
    with pytest.raises(ValueError, match=r"already converted for inference \(quantize int8\); load it again before prepack"):
        minibert.prepack(tiny_model)
    with pytest.raises(ValueError, match=r"already converted for inference \(quantize int8\); load it again before quantize"):
        minibert.quantize(tiny_model)


def test_save_pretrained_of_a_quantized_model_is_refused(tiny_model, tmp_path):
    minibert.quantize(tiny_model)
    target = tmp_path / "saved"
    with pytest.raises(ValueError, match="converted for inference .quantize int8. and cannot be saved"):
        tiny_model.save_pretrained(target)
    assert not target.exists()  # nothing written that transformers could misread


def test_minilm_int8_sentence_embeddings():
    """The issue's goal on real weights: cosine >= 0.99 against float32, every paraphrase still first."""
    directory = minilm_dir()
    if not (directory / "model.safetensors").is_file():
        pytest.skip(f"all-MiniLM-L6-v2 is not at {directory}; run `python tests/fetch_minilm.py`")
    sys.path.insert(0, str(REPO / "benchmarks"))
    import bench_precision

    result = bench_precision.minilm_accuracy(directory)["int8"]
    assert result["min_cosine"] >= 0.99, result
    assert result["top1_changes"] == 0 and result["paraphrase_found"] == 16, result


def test_rounding_error_that_is_not_the_compilers_propagates(monkeypatch, caplog):
    """An input the eager rounding fails on too (here: booleans) is the caller's error: it propagates,
    and the compiled rounding stays in use for every other int8 model."""
    needs_a_compiler()
    monkeypatch.setattr(quantize_module.CompiledRounding, "failed", None)
    rounding = quantize_module.CompiledRounding()
    with caplog.at_level("WARNING", logger="minibert"), pytest.raises(RuntimeError, match="can't be cast"):
        rounding(torch.ones(4, 32, dtype=torch.bool))
    assert quantize_module.CompiledRounding.failed is None and not caplog.records
    codes, _, _ = rounding(torch.randn(4, 32))
    assert quantize_module.CompiledRounding.failed is None and codes.dtype == torch.uint8


def test_int8_in_grad_mode_keeps_the_compiled_rounding(tiny_checkpoints, caplog):
    """quantize(model)(ids) without torch.no_grad(): the inference result, no warning, the compiler kept."""
    needs_a_compiler()
    model = minibert.quantize(minibert.BertForSequenceClassification.from_pretrained(tiny_checkpoints["tiny"]))
    batch = {"input_ids": torch.tensor([[2, 5, 7, 9, 3]]), "labels": torch.tensor([1])}
    with caplog.at_level("WARNING", logger="minibert"):
        actual = model(**batch)
        with torch.inference_mode():
            expected = model(**batch)
    assert quantize_module.CompiledRounding.failed is None
    assert not [record for record in caplog.records if "torch.compile" in record.getMessage()]
    assert torch.equal(actual.logits.detach(), expected.logits) and torch.equal(actual.loss.detach(), expected.loss)


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_int8_sentence_does_not_depend_on_its_batch(tiny_checkpoints, implementation):
    """Every scale and zero point is a token's own, so a sentence gives the same int8 output alone and
    beside others. Bit for bit on the default (sdpa, unpadded) path; on the padded eager path the
    float attention over a longer padded row reorders float32 sums (float32 itself differs there by
    ~4e-6 on MiniLM), hence 1e-5."""
    model = minibert.quantize(minibert.BertModel.from_pretrained(
        tiny_checkpoints["tiny"], attn_implementation=implementation), compile=False)
    generator = torch.Generator().manual_seed(7)
    lengths = [3, 9, 5, 2]
    input_ids = torch.randint(1, TINY_CONFIGS["tiny"]["vocab_size"], (4, 9), generator=generator)
    mask = (torch.arange(9)[None] < torch.tensor(lengths)[:, None]).long()  # (batch, seq), right padding
    with torch.inference_mode():
        together = model(input_ids=input_ids * mask, attention_mask=mask).last_hidden_state  # (batch, seq, hidden)
        for row, length in enumerate(lengths):
            alone = model(input_ids=input_ids[row:row + 1, :length]).last_hidden_state[0]  # (length, hidden)
            if implementation == "sdpa":
                assert torch.equal(alone, together[row, :length]), row
            else:
                assert_close(alone, together[row, :length], rtol=0, atol=1e-5, what=f"row {row} alone vs in the batch")


# Short texts, where a few tokens ([CLS], [SEP]) carry the whole mean: the hardest case for int8.
SHORT_TEXTS = ["thanks!", "?", "no", "ok", "yes", "hi", "hello there", "why?", "lol", "good morning", "wow!", "see you",
               "yes please", "sure.", "nope", "great!", "hmm"]


def test_minilm_int8_short_texts():
    """Each short text alone: mean-pooled cosine to float32 at or above 0.99, the issue's goal (lowest
    measured 0.9914, "thanks!", AVX-512 VNNI; 0.9886 without the outlier features in float32, 0.961
    with the shared zero point of before), and the same embedding alone as inside the batch."""
    directory = minilm_dir()
    if not (directory / "model.safetensors").is_file():
        pytest.skip(f"all-MiniLM-L6-v2 is not at {directory}; run `python tests/fetch_minilm.py`")
    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_precision import sentence_embeddings

    tokenizer = minibert.BertTokenizer.from_pretrained(directory)
    reference = minibert.BertModel.from_pretrained(directory)
    model = minibert.quantize(minibert.BertModel.from_pretrained(directory), compile=False)
    alone = torch.cat([sentence_embeddings(model, dict(tokenizer([text], return_tensors="pt"))) for text in SHORT_TEXTS])
    expected = torch.cat([sentence_embeddings(reference, dict(tokenizer([text], return_tensors="pt")))
                          for text in SHORT_TEXTS])
    cosine = torch.nn.functional.cosine_similarity(alone, expected, dim=-1)  # (texts,)
    # 0.99 holds with 8-bit weights (VNNI, AMX); a CPU with AVX2 only rounds weights to 7 bits
    # (int8_weight_levels): 0.9813 there, emulated with 63 levels on this CPU (0.9786 without outliers).
    threshold = 0.99 if quantize_module.int8_weight_levels() == 127 else 0.975
    assert cosine.min() >= threshold, dict(zip(SHORT_TEXTS, cosine.tolist()))
    together = sentence_embeddings(model, dict(tokenizer(SHORT_TEXTS, padding=True, return_tensors="pt")))
    assert torch.equal(alone, together)
