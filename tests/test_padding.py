"""Padding at its edges: all-padding rows and batches, left padding and the pooler, the padding mask in
reduced precision, and the attention dropout that a user can switch off like any other.

Where transformers' own paths disagree, the reference is transformers' eager path: for a row with no
real token at all, its eager softmax over finfo.min scores attends uniformly to every position, while
its sdpa path returns zeros from the attention (a kernel convention for fully masked rows). minibert
follows eager on both its paths. Tolerances: eager is bit-identical (the same operations), sdpa as in
test_unpadded.py (1e-5 relative, 1e-6 absolute: a fused kernel sums in another order).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import TINY_CONFIGS, assert_close, assert_equal, reference_model
from minibert import BertModel
from test_heads import load_pair
from test_training import checkpoints  # noqa: F401 (a fixture: dropout-heavy head checkpoints)
from test_unpadded import ATOL, RTOL, batch_for

TOLERANCE = {"eager": dict(rtol=0, atol=0), "sdpa": dict(rtol=RTOL, atol=ATOL)}


def compare(actual: torch.Tensor, expected: torch.Tensor, implementation: str, what: str) -> None:
    if implementation == "eager":
        assert_equal(actual, expected, what)
    else:
        assert_close(actual, expected, **TOLERANCE[implementation], what=what)


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_all_padding_batch(tiny_checkpoints, implementation, train):
    """Every row all padding (issue: the default path crashed in torch.cat): outputs of the input's shape,
    as transformers' eager path gives them, on every position."""
    directory = tiny_checkpoints["tiny"]
    ours = BertModel.from_pretrained(directory, attn_implementation=implementation,
                                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    theirs = reference_model(directory, "eager")
    input_ids = torch.tensor([[101 % 120, 17, 102 % 120], [101 % 120, 88, 102 % 120]])
    mask = torch.zeros(2, 3, dtype=torch.long)
    ours.train(train)
    with torch.set_grad_enabled(train):
        mine = ours(input_ids, attention_mask=mask)
    with torch.no_grad():
        reference = theirs(input_ids, attention_mask=mask)
    assert mine.last_hidden_state.shape == (2, 3, TINY_CONFIGS["tiny"]["hidden_size"])
    compare(mine.last_hidden_state.detach(), reference.last_hidden_state, implementation, "last_hidden_state")
    compare(mine.pooler_output.detach(), reference.pooler_output, implementation, "pooler_output")
    if train:
        mine.pooler_output.sum().backward()
        assert all(torch.isfinite(parameter.grad).all() for parameter in ours.parameters() if parameter.grad is not None)


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_empty_rows_among_real_ones(tiny_checkpoints, implementation):
    """Rows with no token next to normal rows: the normal rows as transformers (eager and sdpa) gives
    them, the empty rows as its eager path does, the pooler of every row included."""
    directory = tiny_checkpoints["odd-heads"]
    mask = torch.tensor([[1, 1, 1, 1, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]])
    inputs = batch_for(mask, TINY_CONFIGS["odd-heads"]["vocab_size"], seed=31)
    ours = BertModel.from_pretrained(directory, attn_implementation=implementation)
    real = mask.bool()
    with torch.no_grad():
        mine = ours(**inputs)
        for reference_implementation in ("eager", "sdpa"):
            reference = reference_model(directory, reference_implementation)(**inputs)
            assert_close(mine.last_hidden_state[real], reference.last_hidden_state[real], rtol=RTOL, atol=ATOL,
                         what=f"real tokens vs transformers {reference_implementation}")
        compare(mine.last_hidden_state, reference_model(directory, "eager")(**inputs).last_hidden_state,
                "sdpa", "every position vs transformers eager")
        compare(mine.pooler_output, reference_model(directory, "eager")(**inputs).pooler_output, "sdpa", "pooler")


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_left_padding_pooler(tiny_checkpoints, implementation):
    """Left padding: the pooler reads position 0, which is padding, and transformers computes it there.
    sdpa must agree with transformers' sdpa on every position (the batch runs padded, through
    sdpa_attention's additive mask: dropping the mask fails this test)."""
    directory = tiny_checkpoints["tiny"]
    mask = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 1, 1]])
    inputs = batch_for(mask, TINY_CONFIGS["tiny"]["vocab_size"], seed=32)
    ours = BertModel.from_pretrained(directory, attn_implementation=implementation)
    theirs = reference_model(directory, implementation)
    with torch.no_grad():
        mine, reference = ours(**inputs, output_hidden_states=True), theirs(**inputs, output_hidden_states=True)
    compare(mine.pooler_output, reference.pooler_output, implementation, "pooler_output")
    for index, (actual, expected) in enumerate(zip(mine.hidden_states, reference.hidden_states)):
        compare(actual, expected, implementation, f"hidden_states[{index}], every position")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_eager_padded_reduced_precision(tiny_checkpoints, dtype):
    """Eager in bfloat16 and float16 with padding, an all-padding row and output_attentions: bit-identical
    to transformers on full tensors. The mask's fill must be finfo(dtype).min: float32's overflows
    bfloat16 and float16, and -10000 leaves weight on padding in float32 and differs here."""
    directory = tiny_checkpoints["odd-heads"]
    mask = torch.tensor([[1, 1, 1, 0, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1], [0, 1, 1, 1, 1]])
    inputs = batch_for(mask, TINY_CONFIGS["odd-heads"]["vocab_size"], seed=33)
    ours = BertModel.from_pretrained(directory, attn_implementation="eager", dtype=dtype)
    theirs = reference_model(directory, "eager").to(dtype)
    with torch.no_grad():
        mine = ours(**inputs, output_attentions=True, output_hidden_states=True)
        reference = theirs(**inputs, output_attentions=True, output_hidden_states=True)
    for index, (actual, expected) in enumerate(zip(mine.attentions, reference.attentions)):
        assert_equal(actual, expected, f"attentions[{index}]")
    for index, (actual, expected) in enumerate(zip(mine.hidden_states, reference.hidden_states)):
        assert_equal(actual, expected, f"hidden_states[{index}]")
    assert_equal(mine.pooler_output, reference.pooler_output, "pooler_output")


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_dropout_off_through_modules(checkpoints, implementation):  # noqa: F811
    """The idiom `for m in model.modules(): if isinstance(m, nn.Dropout): m.p = 0.0` turns off every
    dropout, attention probabilities included: train-mode losses then equal eval-mode ones and match
    transformers' after the same idiom (bit for bit on eager)."""
    class_name = "BertForSequenceClassification"
    ours, theirs = load_pair(checkpoints[class_name], class_name, implementation)
    inputs = batch_for(torch.ones(4, 9, dtype=torch.long), TINY_CONFIGS["tiny"]["vocab_size"], seed=34)
    inputs["labels"] = torch.tensor([0, 2, 1, 1])
    dropouts = [module for module in ours.modules() if isinstance(module, nn.Dropout)]
    assert any(module.p == 0.3 for module in dropouts), "the attention-probability dropout is an nn.Dropout"
    for model in (ours, theirs):
        for module in model.modules():
            if isinstance(module, nn.Dropout):
                module.p = 0.0
    with torch.no_grad():
        evaluated = ours.eval()(**inputs).loss
        trained, reference = ours.train()(**inputs).loss, theirs.train()(**inputs).loss
    compare(trained, evaluated, implementation, "train-mode loss with every dropout at 0 vs eval-mode loss")
    compare(trained, reference, implementation, "vs transformers after the same idiom")


def test_fp16_all_padding_row_sdpa_gives_the_eager_result(tiny_checkpoints):
    """float16 with an all-padding row: the sdpa path gives transformers' eager result, bit for bit.
    There eager adds finfo(float16).min = -65504 to the scores in float16, which rounds them to steps
    of 32, while an SDPA kernel adds it in float32 and keeps them: once the scores spread over more
    than 16 (trained models; here the query weights are scaled up), the two softmaxes differ (0.14 on
    the pooler before), so such a batch computes its attention eagerly."""
    directory = tiny_checkpoints["odd-heads"]
    mask = torch.tensor([[1, 1, 1, 0, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]])
    inputs = batch_for(mask, TINY_CONFIGS["odd-heads"]["vocab_size"], seed=33)
    ours = BertModel.from_pretrained(directory, attn_implementation="sdpa", dtype=torch.float16)
    theirs = reference_model(directory, "eager").to(torch.float16)
    with torch.no_grad():
        for layer in ours.encoder.layers:
            layer.attention.query.weight.mul_(30)
        for layer in theirs.encoder.layer:
            layer.attention.self.query.weight.mul_(30)
        mine, reference = ours(**inputs), theirs(**inputs)
    assert_equal(mine.pooler_output, reference.pooler_output, "pooler_output")
    assert_equal(mine.last_hidden_state, reference.last_hidden_state, "last_hidden_state")
    assert mine.attentions is None  # computed eagerly, not returned unasked
