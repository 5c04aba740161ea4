"""torch.compile(model) on the dense path: a tiny model compiled by inductor gives the eager numbers.

Inductor fuses the element-wise steps (bias, GELU, residual adds) into generated C++ loops, which
may round differently from the separate ATen kernels: 1e-5 relative, 1e-6 absolute.
"""

from __future__ import annotations

import os
import shutil

import pytest
import torch

from conftest import assert_close
from minibert import BertConfig, BertModel

TINY = BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                  max_position_embeddings=40)


def tiny_model() -> BertModel:
    torch.manual_seed(0)
    return BertModel(TINY).eval()


@pytest.mark.slow
def test_inductor_dense_path_matches_eager():
    compiler = os.environ.get("CXX", "g++")
    if shutil.which(compiler) is None:
        pytest.skip(f"torch.compile's CPU backend (inductor) needs a C++ compiler; {compiler} is not on PATH")
    torch._dynamo.reset()
    model = tiny_model()
    compiled = torch.compile(model)
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(0, TINY.vocab_size, (3, 17), generator=generator)
    token_type_ids = (torch.arange(17)[None] >= 9).long().expand(3, 17)
    with torch.no_grad():
        for inputs in ({"input_ids": input_ids},
                       {"input_ids": input_ids, "token_type_ids": token_type_ids,
                        "attention_mask": torch.ones_like(input_ids)}):  # all ones: still the dense path
            expected, actual = model(**inputs), compiled(**inputs)
            assert_close(actual.last_hidden_state, expected.last_hidden_state, rtol=1e-5, atol=1e-6,
                         what="compiled last_hidden_state")
            assert_close(actual.pooler_output, expected.pooler_output, rtol=1e-5, atol=1e-6,
                         what="compiled pooler_output")


def test_unpadded_path_traces():
    """A padded batch under dynamo (the "eager" backend: capture only): graph breaks, same numbers."""
    torch._dynamo.reset()
    model = tiny_model()
    compiled = torch.compile(model, backend="eager")
    input_ids = torch.randint(1, TINY.vocab_size, (3, 11), generator=torch.Generator().manual_seed(2))
    attention_mask = (torch.arange(11)[None] < torch.tensor([[11], [4], [7]])).long()
    with torch.no_grad():
        expected = model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        actual = compiled(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    torch.testing.assert_close(actual, expected, rtol=0, atol=0)
