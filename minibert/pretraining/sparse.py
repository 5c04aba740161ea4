"""Sparse prediction: the masked-LM head runs at the masked positions only (Cramming, MosaicBERT).

A masked LM predicts about 15% of the tokens, yet the head of BertForMaskedLM scores the whole
vocabulary at every position: with 8,000 tokens and a width of 256 that one matrix product costs
more than a whole encoder layer. The loss only reads the masked positions, so gathering their
hidden states first gives the same loss for a seventh of the work, and the same gradients.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..heads import BertForMaskedLM
from .collator import IGNORE_INDEX


def masked_positions_logits(model: BertForMaskedLM, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                            labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, targets): the head's scores at the masked positions only, (masked, vocab), and the
    tokens to predict there, (masked,). input_ids, attention_mask, labels: (batch, seq); labels is
    -100 where nothing is to be predicted."""
    hidden = model.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (batch, seq, hidden)
    masked = labels != IGNORE_INDEX  # (batch, seq)
    word_embeddings = model.bert.embeddings.word_embeddings.weight  # (vocab, hidden): the tied output layer
    logits = model.mlm_head(hidden[masked], word_embeddings)  # (masked, vocab)
    return logits, labels[masked]


def sparse_masked_lm_loss(model: BertForMaskedLM, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                          labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """The masked-LM loss of BertForMaskedLM(input_ids, attention_mask, labels=labels), computed at
    the masked positions only. reduction "sum" gives the summed loss, for averaging over more than one
    batch (gradient accumulation, several processes). Cross-entropy runs in float32 under autocast."""
    logits, targets = masked_positions_logits(model, input_ids, attention_mask, labels)
    return F.cross_entropy(logits.float(), targets, reduction=reduction)
