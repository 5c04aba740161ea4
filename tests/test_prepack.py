"""minibert.prepack(model): oneDNN-prepacked float32 linear layers, held against the eager path."""

from __future__ import annotations

import pytest
import torch

import minibert
from conftest import TINY_CONFIGS, assert_close
from minibert.fast.prepack import PrepackedLinear


def test_prepacked_linear_matches_nn_linear():
    torch.manual_seed(0)
    linear = torch.nn.Linear(96, 40)
    layer = PrepackedLinear(linear)
    with torch.inference_mode():
        for shape in [(1, 7, 96), (3, 96), (2, 200, 96)]:  # token counts below, at and above the packing hint
            hidden = torch.randn(*shape)
            # Another kernel sums in another order: float32 rounding, nothing more.
            assert_close(layer(hidden), linear(hidden), rtol=1e-5, atol=1e-5, what=f"prepacked linear {shape}")


def test_prepacked_linear_with_gelu_matches_linear_then_gelu():
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 256)
    layer = PrepackedLinear(linear)
    layer.post_op = "gelu"
    hidden = torch.randn(5, 64) * 3  # (tokens, in): well into GELU's curved part on both sides
    with torch.inference_mode():
        expected = torch.nn.functional.gelu(linear(hidden))  # exact (erf) GELU, as config "gelu" means
        assert_close(layer(hidden), expected, rtol=1e-5, atol=1e-5, what="prepacked linear + GELU")
        # and not the tanh approximation, which differs by more than that here
        assert (torch.nn.functional.gelu(linear(hidden), approximate="tanh") - expected).abs().max() > 1e-4


def test_prepack_fuses_gelu_only_where_the_config_says_gelu(tiny_checkpoints):
    model = minibert.prepack(minibert.BertModel.from_pretrained(tiny_checkpoints["tiny"]))
    feed_forward = model.encoder.layers[0].feed_forward
    assert feed_forward.intermediate.post_op == "gelu" and feed_forward.output.post_op == "none"
    other = minibert.BertModel.from_pretrained(tiny_checkpoints["tiny"], hidden_act="relu")
    minibert.prepack(other)
    assert other.encoder.layers[0].feed_forward.intermediate.post_op == "none"
    assert other.encoder.layers[0].feed_forward.activation is torch.nn.functional.relu


@pytest.mark.parametrize("name", ["odd-heads", "tiny"], ids=["gelu_new", "gelu-fused"])
@pytest.mark.parametrize("padded", [False, True], ids=["full", "padded"])
def test_prepacked_model_matches_eager(tiny_checkpoints, padded, name):
    """The whole model, dense (batch, seq, hidden) and unpadded (tokens, hidden) inputs alike."""
    reference = minibert.BertModel.from_pretrained(tiny_checkpoints[name])
    model = minibert.prepack(minibert.BertModel.from_pretrained(tiny_checkpoints[name]))
    assert model.inference_conversion == "prepack" and not model.training
    layers = TINY_CONFIGS[name]["num_hidden_layers"]
    assert sum(isinstance(module, PrepackedLinear) for module in model.modules()) == 4 * layers  # q/k/v fused
    assert not any(isinstance(module, torch.nn.Linear) for module in model.encoder.modules())
    generator = torch.Generator().manual_seed(1)
    batch = {"input_ids": torch.randint(1, TINY_CONFIGS[name]["vocab_size"], (3, 11), generator=generator)}
    if padded:
        batch["attention_mask"] = (torch.arange(11)[None] < torch.tensor([11, 6, 2])[:, None]).long()
    with torch.inference_mode():
        actual, expected = model(**batch), reference(**batch)
    # Three layers of float32 rounding in another summation order.
    assert_close(actual.last_hidden_state, expected.last_hidden_state, rtol=1e-5, atol=1e-5, what="last_hidden_state")
    assert_close(actual.pooler_output, expected.pooler_output, rtol=1e-5, atol=1e-5, what="pooler_output")


def test_prepacked_model_is_not_saved(tiny_checkpoints, tmp_path):
    model = minibert.prepack(minibert.BertModel.from_pretrained(tiny_checkpoints["tiny"]))
    with pytest.raises(ValueError, match="converted for inference .prepack. and cannot be saved"):
        model.save_pretrained(tmp_path / "saved")
    assert not (tmp_path / "saved").exists()
    with pytest.raises(TypeError, match="float32 inputs on the CPU, got torch.float64"):
        model.encoder.layers[0].attention.query_key_value(torch.ones(2, 32, dtype=torch.float64))


CONVERSIONS = {"prepack": lambda model: minibert.prepack(model),
               "quantize": lambda model: minibert.quantize(model, compile=False)}
MESSAGE_TRAINED = r"converted for inference \((prepack|quantize int8)\) and cannot be trained"


def classifier_batch() -> dict[str, torch.Tensor]:
    return {"input_ids": torch.tensor([[2, 50, 7, 99, 3], [2, 8, 9, 3, 0]]),
            "attention_mask": torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]]), "labels": torch.tensor([1, 0])}


@pytest.mark.parametrize("conversion", list(CONVERSIONS))
def test_converted_model_refuses_training(tiny_checkpoints, conversion):
    """A converted model's gradients would be wrong (oneDNN's kernels have no autograd formula), so
    train() and backward() raise instead; eval() still works. Converting a model in train mode
    converts it and puts it in eval mode."""
    model = minibert.BertForSequenceClassification.from_pretrained(tiny_checkpoints["tiny"], num_labels=2).train()
    CONVERSIONS[conversion](model)
    assert not any(module.training for module in model.modules())
    with pytest.raises(RuntimeError, match=MESSAGE_TRAINED):
        model.train()
    assert not any(module.training for module in model.modules())  # refused before any module switched (dropout)
    with pytest.raises(RuntimeError, match=MESSAGE_TRAINED):
        model.bert.encoder.train()  # a part of it alone: refused by the converted layers themselves
    assert model.eval() is model and model.train(False) is model
    output = model(**classifier_batch())  # grad mode on: the forward runs as inference
    with pytest.raises(RuntimeError, match=MESSAGE_TRAINED):
        output.loss.backward()
    # No gradient went through a converted layer: the embeddings (wrong by 9.3e-6 before) have none.
    # (The pooler's and the last LayerNorm's, computed before the refusal, are exact.)
    assert all(parameter.grad is None for parameter in model.bert.embeddings.parameters())


@pytest.mark.parametrize("conversion", list(CONVERSIONS))
def test_converted_model_forward_in_grad_mode_is_inference(tiny_checkpoints, conversion):
    """No torch.no_grad() needed: the same logits and loss as under inference_mode."""
    model = CONVERSIONS[conversion](
        minibert.BertForSequenceClassification.from_pretrained(tiny_checkpoints["tiny"], num_labels=2))
    with torch.inference_mode():
        expected = model(**classifier_batch())
    actual = model(**classifier_batch())
    assert torch.equal(actual.logits.detach(), expected.logits) and torch.equal(actual.loss.detach(), expected.loss)


@pytest.mark.parametrize("conversion", list(CONVERSIONS))
def test_converted_task_head_is_not_saved(tiny_checkpoints, tmp_path, conversion):
    """The refusal covers a task head and the encoder inside it: neither writes a checkpoint whose
    encoder has no linear layers."""
    model = CONVERSIONS[conversion](
        minibert.BertForSequenceClassification.from_pretrained(tiny_checkpoints["tiny"], num_labels=3))
    for part, target in ((model, tmp_path / "head"), (model.bert, tmp_path / "encoder")):
        with pytest.raises(ValueError, match=r"converted for inference \((prepack|quantize int8)\) and cannot be saved"):
            part.save_pretrained(target)
        assert not target.exists()
