"""Sparse prediction (the head at the masked positions only) against BertForMaskedLM's dense loss: the
same loss within 1e-6 in float32 (the same numbers, summed in another order) and gradients within
1e-5 relative (the head's weight gradient sums over fewer, but the same nonzero, terms)."""

from __future__ import annotations

import torch

from conftest import TINY_CONFIGS
from minibert import BertConfig, BertForMaskedLM
from minibert.pretraining.sparse import masked_positions_logits, sparse_masked_lm_loss


def batch_and_model():
    torch.manual_seed(0)
    config = BertConfig(**dict(TINY_CONFIGS["tiny"], hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
    model = BertForMaskedLM(config).train()
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(5, config.vocab_size, (4, 16), generator=generator)
    attention_mask = (torch.arange(16)[None] < torch.tensor([16, 9, 12, 3])[:, None]).long()
    chosen = (torch.rand(4, 16, generator=generator) < 0.3) & attention_mask.bool()
    labels = input_ids.masked_fill(~chosen, -100)
    return model, dict(input_ids=input_ids, attention_mask=attention_mask, labels=labels)


def gradients(model):
    return {name: parameter.grad.clone() for name, parameter in model.named_parameters() if parameter.grad is not None}


def test_sparse_loss_and_gradients_equal_the_dense_ones():
    model, batch = batch_and_model()
    dense = model(**batch).loss
    dense.backward()
    dense_gradients = gradients(model)
    model.zero_grad()
    sparse = sparse_masked_lm_loss(model, **batch)
    sparse.backward()
    torch.testing.assert_close(sparse, dense, rtol=0, atol=1e-6)
    sparse_gradients = gradients(model)
    assert sparse_gradients.keys() == dense_gradients.keys()
    for name, gradient in dense_gradients.items():
        torch.testing.assert_close(sparse_gradients[name], gradient, rtol=1e-5, atol=1e-7, msg=name)


def test_logits_are_the_dense_logits_at_the_masked_positions():
    model, batch = batch_and_model()
    with torch.no_grad():
        dense = model(batch["input_ids"], batch["attention_mask"]).logits  # (batch, seq, vocab)
        logits, targets = masked_positions_logits(model, **batch)
    masked = batch["labels"] != -100
    torch.testing.assert_close(logits, dense[masked], rtol=0, atol=1e-6)
    assert torch.equal(targets, batch["labels"][masked])
    summed = sparse_masked_lm_loss(model, **batch, reduction="sum")
    torch.testing.assert_close(summed / masked.sum(), model(**batch).loss, rtol=0, atol=1e-6)
