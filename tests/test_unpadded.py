"""Unpadded execution (minibert/fast/unpadded.py): the default for padded batches under SDPA.

Held three ways: against minibert's own padded path (the same layers on (batch, seq, hidden)),
against transformers' sdpa on the real tokens (forward and gradients), and, at full size, against a
float64 reference, where it must be no less accurate than transformers itself. Tolerances: packing
changes which keys share a vectorised reduction in attention, a reordering of float32 sums, so
1e-5 relative, 1e-6 absolute on tiny models.
"""

from __future__ import annotations

import pytest
import torch

from conftest import TINY_CONFIGS, assert_close, reference_model
from minibert import BertModel
from minibert.fast.unpadded import PackedSequences
from minibert.loading.weights import minibert_to_checkpoint

RTOL, ATOL = 1e-5, 1e-6


def masks() -> dict[str, torch.Tensor]:
    """Right padding (the usual), left padding, holes, an all-padding row, equal lengths; and lengths
    [5, 7, 3], whose sort order (2, 0, 1) is not its own inverse (1, 2, 0), unlike the others'."""
    return {
        "right-cycle": (torch.arange(7)[None] < torch.tensor([5, 7, 3])[:, None]).long(),
        "right": torch.tensor([[1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 0, 0],
                               [1, 1, 1, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0, 0]]),
        "left": torch.tensor([[0, 0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 1, 1, 1]]),
        "holes": torch.tensor([[1, 0, 1, 1, 0, 1, 1], [1, 1, 1, 1, 1, 1, 0]]),
        "empty-row": torch.tensor([[1, 1, 1, 1, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1, 1]]),
    }


def batch_for(mask: torch.Tensor, vocab_size: int, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1, vocab_size, mask.shape, generator=generator).masked_fill(mask == 0, 0)
    return {"input_ids": input_ids, "attention_mask": mask}


@pytest.mark.parametrize("name", list(masks()))
def test_pack_unpack_round_trip(name):
    mask = masks()[name]
    packing = PackedSequences.from_mask(mask)
    padded = torch.randn(*mask.shape, 3)  # (batch, seq, 3)
    packed = packing.pack(padded)  # (total_tokens, 3)
    assert packed.shape == (int(mask.sum()), 3)
    torch.testing.assert_close(packing.unpack(packed), padded * mask[..., None], rtol=0, atol=0)
    # Groups cover every real token, shortest sequences first, and leave out empty rows.
    assert sum(length * count for length, count in packing.groups) == int(mask.sum())
    assert [length for length, _ in packing.groups] == sorted({int(n) for n in mask.sum(1) if n > 0})
    # The GPU kernel's view of the same order: where each non-empty sequence starts, and the longest.
    lengths = sorted(int(n) for n in mask.sum(1) if n > 0)
    assert packing.cu_seqlens.dtype == torch.int32
    assert packing.cu_seqlens.tolist() == [sum(lengths[:index]) for index in range(len(lengths) + 1)]
    assert packing.max_length == max(lengths) and isinstance(packing.max_length, int)


def test_packed_order_is_by_length_then_batch_order():
    """The packed order itself: the shortest row (2) first, then row 0, then row 1, each in position
    order. Placing rows by the sort order where its inverse belongs would interleave them."""
    packing = PackedSequences.from_mask(masks()["right-cycle"])  # lengths [5, 7, 3], seq 7
    rows = [[2 * 7 + position for position in range(3)], [position for position in range(5)],
            [7 + position for position in range(7)]]
    assert packing.token_indices.tolist() == rows[0] + rows[1] + rows[2]
    assert packing.groups == [(3, 1), (5, 1), (7, 1)] and packing.cu_seqlens.tolist() == [0, 3, 8, 15]


def test_pack_broadcasts_shared_positions():
    packing = PackedSequences.from_mask(masks()["right"])
    positions = torch.arange(7)[None]  # (1, seq), as BertModel makes them
    assert packing.pack(positions).tolist() == [0, 0, 1, 2, 0, 1, 2, 0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("mask_name", list(masks()))
@pytest.mark.parametrize("name", list(TINY_CONFIGS))
def test_unpadded_matches_padded(tiny_checkpoints, name, mask_name):
    """The default path against the padded one, inside minibert: same layers, other shapes.

    Batches whose rows all start with a token run packed; the others (left padding, an empty row)
    run padded, because the pooler reads position 0: the pooler agrees for every row either way."""
    model = BertModel.from_pretrained(tiny_checkpoints[name])
    inputs = batch_for(masks()[mask_name], TINY_CONFIGS[name]["vocab_size"], seed=11)
    real = inputs["attention_mask"].bool()
    with torch.no_grad():
        default = model(**inputs, output_hidden_states=True)
        # output_attentions needs every position, so this call takes the padded path.
        padded = model(**inputs, output_hidden_states=True, output_attentions=True)
    packed = bool(real[:, 0].all())
    for index, (fast, slow) in enumerate(zip(default.hidden_states, padded.hidden_states)):
        assert_close(fast[real], slow[real], rtol=RTOL, atol=ATOL, what=f"hidden_states[{index}]")
        if packed:
            assert torch.all(fast[~real] == 0), "padding positions of the unpadded path are zeros"
    assert_close(default.pooler_output, padded.pooler_output, rtol=RTOL, atol=ATOL, what="pooler_output")


@pytest.mark.parametrize("name", list(TINY_CONFIGS))
def test_unpadded_matches_transformers(tiny_checkpoints, name):
    """Forward parity on the real tokens, with segments, per-row positions and inputs_embeds."""
    values = TINY_CONFIGS[name]
    mask = masks()["right"]
    inputs = batch_for(mask, values["vocab_size"], seed=12)
    generator = torch.Generator().manual_seed(13)
    inputs["token_type_ids"] = torch.randint(0, values.get("type_vocab_size", 2), mask.shape, generator=generator)
    inputs["position_ids"] = torch.randint(0, values["max_position_embeddings"], mask.shape, generator=generator)
    ours = BertModel.from_pretrained(tiny_checkpoints[name])
    theirs = reference_model(tiny_checkpoints[name], "sdpa")
    embeds = torch.randn(*mask.shape, values["hidden_size"], generator=generator)
    real = mask.bool()
    with torch.no_grad():
        for call in (inputs, {**inputs, "input_ids": None, "inputs_embeds": embeds}):
            mine, reference = ours(**call, output_hidden_states=True), theirs(**call, output_hidden_states=True)
            for index, (actual, expected) in enumerate(zip(mine.hidden_states, reference.hidden_states)):
                assert_close(actual[real], expected[real], rtol=RTOL, atol=ATOL, what=f"hidden_states[{index}]")
            assert_close(mine.pooler_output, reference.pooler_output, rtol=RTOL, atol=ATOL, what="pooler_output")


@pytest.mark.parametrize("checkpointing", [False, True], ids=["plain", "gradient-checkpointing"])
def test_unpadded_gradients_match_transformers(tiny_checkpoints, checkpointing):
    """Backward through pack, per-group attention and unpack: every parameter's gradient."""
    directory = tiny_checkpoints["odd-heads"]
    inputs = batch_for(masks()["right"], TINY_CONFIGS["odd-heads"]["vocab_size"], seed=14)
    real = inputs["attention_mask"].bool()
    # Training mode (checkpointing acts only there) with dropout off, so both sides are deterministic.
    ours = BertModel.from_pretrained(directory, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0).train()
    theirs = reference_model(directory, "sdpa")
    if checkpointing:
        ours.gradient_checkpointing_enable()
    generator = torch.Generator().manual_seed(15)
    weights = torch.randn(*real.shape, TINY_CONFIGS["odd-heads"]["hidden_size"], generator=generator)
    for model in (ours, theirs):
        output = model(**inputs)
        loss = (output.last_hidden_state * weights)[real].sum() + output.pooler_output.square().sum()
        loss.backward()
    theirs_grads = dict(theirs.named_parameters())
    for name, parameter in ours.named_parameters():
        expected = theirs_grads[minibert_to_checkpoint(name)].grad
        scale = expected.abs().max().item()  # gradients of unequal size: atol relative to each tensor
        assert_close(parameter.grad, expected, rtol=RTOL, atol=ATOL * max(scale, 1.0), what=f"grad {name}")


def test_paths_taken(tiny_checkpoints, monkeypatch):
    """sdpa without output_attentions packs; eager and output_attentions stay padded; full batches stay
    dense; a row that starts with padding keeps the batch padded unless the model has no pooler."""
    calls = []
    original = PackedSequences.from_lengths.__func__
    monkeypatch.setattr(PackedSequences, "from_lengths",
                        classmethod(lambda cls, mask, lengths, *rest: calls.append(lengths) or original(cls, mask, lengths, *rest)))
    inputs = batch_for(masks()["right"], TINY_CONFIGS["tiny"]["vocab_size"], seed=16)
    sdpa = BertModel.from_pretrained(tiny_checkpoints["tiny"])
    eager = BertModel.from_pretrained(tiny_checkpoints["tiny"], attn_implementation="eager")
    with torch.no_grad():
        sdpa(**inputs)
        assert calls == [[7, 3, 5, 3, 1]], "the lengths come from the input checks' one host read"
        sdpa(**inputs, output_attentions=True)
        eager(**inputs)
        sdpa(input_ids=inputs["input_ids"], attention_mask=torch.ones_like(inputs["attention_mask"]))
        sdpa(input_ids=inputs["input_ids"])
        for name in ("left", "empty-row"):
            sdpa(**batch_for(masks()[name], TINY_CONFIGS["tiny"]["vocab_size"], seed=16))
        assert len(calls) == 1
        sdpa.pooler = None  # nothing reads position 0 now: left padding may pack
        sdpa(**batch_for(masks()["left"], TINY_CONFIGS["tiny"]["vocab_size"], seed=16))
    assert len(calls) == 2


@pytest.mark.slow
def test_full_size_no_less_accurate_than_transformers(base_cased_checkpoint):
    """bert-base-cased's shape, long and short rows: both float32 paths against a float64 reference.

    Over 12 layers, float32 rounding alone moves outputs by a few 1e-6; packing rounds differently
    from transformers' masked kernel, so the fair test is the distance to the exact answer.
    """
    lengths = torch.tensor([301, 17, 64, 5])
    mask = (torch.arange(301)[None] < lengths[:, None]).long()  # (4, 301)
    inputs = batch_for(mask, 28996, seed=18)
    real = mask.bool()
    ours = BertModel.from_pretrained(base_cased_checkpoint)
    theirs = reference_model(base_cased_checkpoint, "sdpa")
    exact = reference_model(base_cased_checkpoint, "eager").double()
    with torch.no_grad():
        truth = exact(**inputs).last_hidden_state[real]
        ours_error = (ours(**inputs).last_hidden_state[real].double() - truth).abs()
        theirs_error = (theirs(**inputs).last_hidden_state[real].double() - truth).abs()
    assert ours_error.max() <= 1.5 * theirs_error.max(), (ours_error.max(), theirs_error.max())
    assert ours_error.mean() <= 1.5 * theirs_error.mean(), (ours_error.mean(), theirs_error.mean())
    assert ours_error.max() < 1e-5 * truth.abs().max()
