"""Bad inputs get a clear error in the caller's words, before anything is computed."""

from __future__ import annotations

import pytest
import torch

from minibert import BertConfig, BertModel

CONFIG = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                    intermediate_size=32, max_position_embeddings=10, type_vocab_size=2)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return BertModel(CONFIG).eval()


GOOD = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])

BAD_CALLS = [
    (dict(), ValueError, "exactly one of input_ids and inputs_embeds"),
    (dict(input_ids=GOOD, inputs_embeds=torch.zeros(2, 4, 16)), ValueError, "exactly one"),
    (dict(input_ids=[[1, 2, 3]]), TypeError, "input_ids must be a torch.Tensor"),
    (dict(input_ids=GOOD.float()), TypeError, "input_ids must hold integers"),
    (dict(input_ids=torch.tensor([1, 2, 3])), ValueError, r"2-D \(batch, seq\).*input_ids\[None\]"),
    (dict(input_ids=GOOD[None]), ValueError, "2-D"),
    (dict(input_ids=torch.tensor([[1, 50]])), ValueError, r"\[1, 50\] but must lie in \[0, 50\).*vocab_size"),
    (dict(input_ids=torch.tensor([[-1, 2]])), ValueError, "vocab_size"),
    (dict(input_ids=torch.ones(1, 11, dtype=torch.long)), ValueError,
     "input has 11 tokens but max_position_embeddings is 10"),
    (dict(input_ids=torch.ones(1, 0, dtype=torch.long)), ValueError, "the input is empty"),
    (dict(input_ids=GOOD, attention_mask=torch.ones(2, 5)), ValueError,
     r"attention_mask has shape \(2, 5\) but the input is \(batch, seq\) = \(2, 4\)"),
    (dict(input_ids=GOOD, attention_mask=torch.full((2, 4), 2)), ValueError, "only 1 .token. and 0"),
    (dict(input_ids=GOOD, token_type_ids=torch.zeros(2, 3, dtype=torch.long)), ValueError, "token_type_ids has shape"),
    (dict(input_ids=GOOD, token_type_ids=torch.full((2, 4), 2)), ValueError, "type_vocab_size"),
    (dict(input_ids=GOOD, token_type_ids=torch.zeros(2, 4)), TypeError, "token_type_ids must hold integers"),
    (dict(input_ids=GOOD, position_ids=torch.full((2, 4), 10)), ValueError, "max_position_embeddings"),
    (dict(input_ids=GOOD, position_ids=torch.arange(3)[None]), ValueError, "position_ids has shape"),
    (dict(inputs_embeds=torch.zeros(2, 4, 8)), ValueError, r"inputs_embeds must be \(batch, seq, hidden=16\)"),
    (dict(inputs_embeds=torch.zeros(2, 4, 16, dtype=torch.long)), TypeError, "floating-point"),
]


@pytest.mark.parametrize("kwargs, error, message", BAD_CALLS)
def test_bad_input_is_named(model, kwargs, error, message):
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    with pytest.raises(error, match=message):
        model(**kwargs)
    after = model.state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before)


def test_good_variants_are_accepted(model):
    with torch.no_grad():
        model(GOOD, attention_mask=torch.tensor([[True] * 4, [True, True, False, False]]))
        model(GOOD, position_ids=torch.arange(4)[None], token_type_ids=torch.ones(2, 4, dtype=torch.int32))
        model(torch.ones(1, 10, dtype=torch.long))  # exactly max_position_embeddings


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_a_sequence_longer_than_the_positions_with_explicit_position_ids_is_accepted(tiny_checkpoints, implementation):
    """transformers checks the positions, not the length: 80 tokens on a 64-position model run when
    position_ids (here 0..63, then 0..15) all lie below 64. Only without position_ids is the length refused."""
    from conftest import reference_model

    directory = tiny_checkpoints["tiny"]  # max_position_embeddings=64
    ours = BertModel.from_pretrained(directory, attn_implementation=implementation)
    theirs = reference_model(directory, implementation)
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(1, 120, (2, 80), generator=generator)  # (batch, seq)
    inputs = dict(input_ids=input_ids, position_ids=(torch.arange(80) % 64)[None].expand(2, 80),
                  token_type_ids=torch.zeros_like(input_ids), attention_mask=torch.ones_like(input_ids))
    with torch.no_grad():
        expected = theirs(**inputs).last_hidden_state
        actual = ours(**inputs).last_hidden_state
    if implementation == "eager":
        assert torch.equal(actual, expected)
    else:
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        ours(input_ids=input_ids)
