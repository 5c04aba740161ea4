"""Property tests: random small BERTs and random padded batches against transformers.

hypothesis draws the config (heads, head size, layers, activation, epsilon, vocabularies) and a batch
whose rows are full, right-padded, left-padded, holed or all padding. Both implementations, every
example. Tolerances: eager is bit-identical on every position (the same operations in the same
order); sdpa within 1e-5 relative / 1e-6 absolute on the real tokens and on the pooler of every row
(a fused kernel sums in another order), and on every position when the batch runs padded.
"""

from __future__ import annotations

import pytest
import torch

from conftest import assert_close, assert_equal

transformers = pytest.importorskip("transformers")
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from minibert import BertConfig, BertModel  # noqa: E402
from minibert.loading.weights import minibert_to_checkpoint  # noqa: E402

RTOL, ATOL = 1e-5, 1e-6


@st.composite
def configs(draw) -> dict:
    heads = draw(st.integers(1, 4))
    return dict(
        num_attention_heads=heads,
        hidden_size=heads * draw(st.sampled_from([2, 4, 8])),
        num_hidden_layers=draw(st.integers(1, 3)),
        intermediate_size=draw(st.integers(4, 40)),
        vocab_size=draw(st.integers(8, 60)),
        max_position_embeddings=draw(st.integers(12, 40)),
        type_vocab_size=draw(st.integers(1, 3)),
        hidden_act=draw(st.sampled_from(["gelu", "relu", "gelu_new", "silu", "tanh"])),
        layer_norm_eps=draw(st.sampled_from([1e-12, 1e-5])),
    )


ROW_KINDS = ["full", "right", "left", "holes", "empty"]


@st.composite
def masks(draw, seq: int) -> torch.Tensor:
    """(batch, seq) with each row one of ROW_KINDS."""
    rows = []
    for kind in draw(st.lists(st.sampled_from(ROW_KINDS), min_size=1, max_size=4)):
        length = draw(st.integers(1, seq))
        if kind == "full":
            row = [1] * seq
        elif kind == "right":
            row = [1] * length + [0] * (seq - length)
        elif kind == "left":
            row = [0] * (seq - length) + [1] * length
        elif kind == "holes":
            row = draw(st.lists(st.integers(0, 1), min_size=seq, max_size=seq))
        else:
            row = [0] * seq
        rows.append(row)
    return torch.tensor(rows)


def model_pair(values: dict, implementation: str, seed: int) -> tuple[BertModel, torch.nn.Module]:
    """A randomly drawn minibert model and transformers' BertModel holding the same tensors."""
    torch.manual_seed(seed)
    ours = BertModel(BertConfig(**values, attn_implementation=implementation)).eval()
    with torch.no_grad():
        for parameter in ours.parameters():  # LayerNorm and biases too, so a misplaced one shows
            parameter.add_(0.1 * torch.randn_like(parameter))
    theirs = transformers.BertModel(transformers.BertConfig(**values, attn_implementation=implementation)).eval()
    theirs.load_state_dict({minibert_to_checkpoint(name): tensor for name, tensor in ours.state_dict().items()},
                           strict=False)
    return ours, theirs


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(values=configs(), data=st.data(), seed=st.integers(0, 2**16))
def test_random_models_and_batches_match_transformers(values, data, seed):
    seq = data.draw(st.integers(1, 10), label="seq")
    mask = data.draw(masks(seq), label="mask")
    generator = torch.Generator().manual_seed(seed)
    inputs = {
        "input_ids": torch.randint(0, values["vocab_size"], mask.shape, generator=generator),
        "token_type_ids": torch.randint(0, values["type_vocab_size"], mask.shape, generator=generator),
        "attention_mask": mask,
    }
    real = mask.bool()
    for implementation in ("eager", "sdpa"):
        ours, theirs = model_pair(values, implementation, seed)
        with torch.no_grad():
            mine, reference = ours(**inputs), theirs(**inputs)
        if implementation == "eager":
            assert_equal(mine.last_hidden_state, reference.last_hidden_state, "eager last_hidden_state")
            assert_equal(mine.pooler_output, reference.pooler_output, "eager pooler_output")
            continue
        assert_close(mine.last_hidden_state[real], reference.last_hidden_state[real], rtol=RTOL, atol=ATOL,
                     what="sdpa last_hidden_state, real tokens")
        empty_rows = ~real.any(dim=1)  # transformers' sdpa and eager disagree there; minibert follows eager
        assert_close(mine.pooler_output[~empty_rows], reference.pooler_output[~empty_rows], rtol=RTOL, atol=ATOL,
                     what="sdpa pooler_output (left-padded rows included)")
