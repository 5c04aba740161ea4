"""bfloat16 on CPU: minibert's errors against float64 are no worse than transformers' bfloat16 errors."""

from __future__ import annotations

import pytest
import torch

import minibert
from conftest import minilm_dir, transformers

# bf16 keeps 8 bits of mantissa: both libraries' errors are about 1e-2 of the activations, and
# which of two equally good implementations lands closer on a given input is luck. 10% slack over
# transformers' error separates "the same arithmetic, rounded differently" from a real loss (a
# float32 step done in bf16, an accumulation in bf16), which costs a multiple.
SLACK = 1.10


def bf16_errors(directory, batch: dict) -> dict[str, float]:
    """Mean and max |bf16 - float64| of last_hidden_state on the real tokens, for both libraries."""
    truth_model = transformers.BertModel.from_pretrained(str(directory), dtype=torch.float64,
                                                         attn_implementation="eager").eval()
    ours = minibert.BertModel.from_pretrained(directory, dtype=torch.bfloat16)
    theirs = transformers.BertModel.from_pretrained(str(directory), dtype=torch.bfloat16,
                                                    attn_implementation="sdpa").eval()
    real = batch["attention_mask"].bool()
    with torch.inference_mode():
        truth = truth_model(**batch).last_hidden_state[real]  # (real tokens, hidden)
        errors = {}
        for name, model in (("minibert", ours), ("transformers", theirs)):
            difference = (model(**batch).last_hidden_state[real].double() - truth).abs()
            errors[f"{name}_mean"], errors[f"{name}_max"] = difference.mean().item(), difference.max().item()
    return errors


def check(errors: dict[str, float]) -> None:
    assert errors["minibert_mean"] <= SLACK * errors["transformers_mean"], errors
    assert errors["minibert_max"] <= SLACK * errors["transformers_max"], errors


def test_bf16_error_no_worse_than_transformers_tiny(tiny_checkpoints):
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(1, 120, (4, 24), generator=generator)
    attention_mask = (torch.arange(24)[None] < torch.tensor([24, 17, 9, 3])[:, None]).long()
    check(bf16_errors(tiny_checkpoints["tiny"], {"input_ids": input_ids, "attention_mask": attention_mask}))


def test_bf16_error_no_worse_than_transformers_minilm():
    directory = minilm_dir()
    if not (directory / "model.safetensors").is_file():
        pytest.skip(f"all-MiniLM-L6-v2 is not at {directory}; run `python tests/fetch_minilm.py`")
    from test_minilm import SENTENCES

    tokenizer = minibert.BertTokenizer.from_pretrained(directory)
    check(bf16_errors(directory, dict(tokenizer(SENTENCES, padding=True, return_tensors="pt"))))
