"""A converted model (quantize, prepack) holds oneDNN's opaque packed weights, which torch cannot copy:
copy.deepcopy, pickle and torch.save refuse it with what to do instead, and that advice works."""

from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch

import minibert
from conftest import TINY_CONFIGS

CONVERSIONS = {"quantize": lambda model: minibert.quantize(model, compile=False), "prepack": minibert.prepack}
COPIES = {"deepcopy": copy.deepcopy, "pickle": pickle.dumps, "torch.save": lambda model: torch.save(model, io.BytesIO())}


@pytest.mark.parametrize("conversion", list(CONVERSIONS))
@pytest.mark.parametrize("copy_with", list(COPIES))
def test_copying_a_converted_model_says_to_convert_a_copy(conversion, copy_with):
    torch.manual_seed(0)
    converted = CONVERSIONS[conversion](minibert.BertModel(minibert.BertConfig(**TINY_CONFIGS["tiny"])))
    with pytest.raises(TypeError, match=r"cannot copy a model converted for inference.*Convert a copy"):
        COPIES[copy_with](converted)


@pytest.mark.parametrize("conversion", list(CONVERSIONS))
def test_converting_a_copy_leaves_the_float_model_as_it_was(conversion):
    torch.manual_seed(0)
    model = minibert.BertModel(minibert.BertConfig(**TINY_CONFIGS["tiny"])).eval()
    input_ids = torch.randint(0, 120, (2, 9))  # (batch, seq)
    with torch.no_grad():
        before = model(input_ids).last_hidden_state
        converted = CONVERSIONS[conversion](copy.deepcopy(model))
        assert torch.equal(model(input_ids).last_hidden_state, before)
        assert torch.allclose(converted(input_ids).last_hidden_state, before, atol=0.1)
    assert getattr(model, "inference_conversion", None) is None
