"""Multi-head self-attention: the paper's equations (eager) and PyTorch's fused kernel (SDPA).

Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k) + mask) V, computed for every head in parallel;
the heads' outputs are concatenated and projected by W^O ("Attention Is All You Need", 3.2).

Read in order: the padding mask, ``eager_attention`` (the equation step by step), ``sdpa_attention``
(the same equation in one kernel), then ``SelfAttention``. The last section of the class serves the
fast paths (packed tokens, fused projections): skip it on a first read.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .config import BertConfig


def additive_padding_mask(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(batch, seq) of 1 = token, 0 = padding -> (batch, 1, 1, seq) to add to the scores.

    Padding gets the most negative finite value of ``dtype``, not -inf: a row whose keys were all
    padding would softmax -inf - (-inf) = NaN, while finfo.min gives a harmless uniform row. Not the
    original BERT code's -10000 either: transformers adds finfo.min, and adding another number rounds
    the scores differently, so only finfo.min keeps the outputs bit-identical to transformers'.
    """
    keep = attention_mask[:, None, None, :].to(torch.bool)  # (batch, 1, 1, seq)
    return torch.zeros(keep.shape, dtype=dtype, device=keep.device).masked_fill(~keep, torch.finfo(dtype).min)


def eager_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    additive_mask: torch.Tensor | None,
    dropout: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The teaching path, step by step. query/key/value: (batch, heads, seq, head_dim).

    Returns the context (batch, heads, seq, head_dim) and the probabilities (batch, heads, seq, seq).
    """
    scaling = query.size(-1) ** -0.5  # 1 / sqrt(d_k)
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling  # (batch, heads, seq, seq)
    if additive_mask is not None:
        scores = scores + additive_mask  # padding keys get finfo.min, so ~0 probability
    probs = F.softmax(scores, dim=-1)  # each query's weights over the keys sum to 1
    probs = F.dropout(probs, p=dropout, training=dropout > 0)
    context = torch.matmul(probs, value)  # (batch, heads, seq, head_dim)
    return context, probs


def sdpa_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    additive_mask: torch.Tensor | None,
    dropout: float,
) -> torch.Tensor:
    """SDPA (PyTorch's scaled_dot_product_attention): the same equation in one fused kernel, which
    never keeps the (seq, seq) matrix. Shapes as eager_attention; returns the context only."""
    return F.scaled_dot_product_attention(query, key, value, attn_mask=additive_mask, dropout_p=dropout)


class SelfAttention(nn.Module):
    """Projects hidden states to queries, keys and values per head, attends, and projects back (W^O)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_size = config.head_size
        self.query = nn.Linear(config.hidden_size, config.hidden_size)  # W^Q
        self.key = nn.Linear(config.hidden_size, config.hidden_size)  # W^K
        self.value = nn.Linear(config.hidden_size, config.hidden_size)  # W^V
        self.output = nn.Linear(config.hidden_size, config.hidden_size)  # W^O
        # A module, as in transformers, so that code which walks model.modules() and sets every
        # nn.Dropout's p (to 0 for deterministic training, say) reaches it; p is read at each call.
        # The kernels apply it themselves (fused into SDPA, or after softmax in eager).
        self.probs_dropout = nn.Dropout(config.attention_probs_dropout_prob)
        self.implementation = config.attn_implementation
        # None here; set by minibert.quantize and minibert.prepack (see project(), at the end).
        self.query_key_value: nn.Module | None = None

    def split_heads(self, projected: torch.Tensor) -> torch.Tensor:
        batch, seq, _ = projected.shape
        return projected.view(batch, seq, self.num_heads, self.head_size).transpose(1, 2)  # (batch, heads, seq, head_dim)

    def forward(
        self, hidden: torch.Tensor, additive_mask: torch.Tensor | None, return_probs: bool = False,
        packing: Any = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """hidden (batch, seq, hidden) -> (batch, seq, hidden), and probs (batch, heads, seq, seq) if asked.

        ``packing`` (a fast.unpadded.PackedSequences) means hidden is (total_tokens, hidden): a batch's
        real tokens only; see forward_packed.
        """
        if packing is not None:
            return self.forward_packed(hidden, packing), None
        batch, seq, hidden_size = hidden.shape
        queries, keys, values = self.project(hidden)  # W^Q x, W^K x, W^V x: (batch, seq, hidden) each
        query = self.split_heads(queries)  # (batch, heads, seq, head_dim)
        key = self.split_heads(keys)  # (batch, heads, seq, head_dim)
        value = self.split_heads(values)  # (batch, heads, seq, head_dim)
        dropout = self.probs_dropout.p if self.probs_dropout.training else 0.0
        probs = None
        if self.implementation == "eager" or return_probs:
            context, probs = eager_attention(query, key, value, additive_mask, dropout)
        else:
            context = sdpa_attention(query, key, value, additive_mask, dropout)
        # Concatenate the heads: contiguous first, as transformers does, so W^O sees the same memory layout.
        context = context.transpose(1, 2).contiguous()  # (batch, seq, heads, head_dim)
        context = context.reshape(batch, seq, hidden_size)  # (batch, seq, hidden)
        return self.output(context), probs

    # ---- For the fast paths: skip on a first read --------------------------------------------

    def project(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """hidden (..., hidden) -> queries, keys and values, each (..., hidden): W^Q x, W^K x, W^V x.

        A model converted for inference (minibert.quantize, minibert.prepack) has one fused layer
        instead, whose (3 * hidden, hidden) weight computes all three in one multiply.
        """
        if self.query_key_value is not None:
            return self.query_key_value(hidden).chunk(3, dim=-1)  # 3 x (..., hidden), views
        return self.query(hidden), self.key(hidden), self.value(hidden)

    def forward_packed(self, hidden: torch.Tensor, packing: Any) -> torch.Tensor:
        """hidden (total_tokens, hidden), the real tokens in packed order -> (total_tokens, hidden).

        The same projections; the attention itself runs within each sequence, by the function the
        packing carries (fast/unpadded.py), so no padding mask is needed.
        """
        total_tokens, hidden_size = hidden.shape
        queries, keys, values = self.project(hidden)  # (total, hidden) each
        query = queries.view(total_tokens, self.num_heads, self.head_size)  # (total, heads, head_dim)
        key = keys.view(total_tokens, self.num_heads, self.head_size)  # (total, heads, head_dim)
        value = values.view(total_tokens, self.num_heads, self.head_size)  # (total, heads, head_dim)
        dropout = self.probs_dropout.p if self.probs_dropout.training else 0.0
        context = packing.attention(query, key, value, dropout)  # (total, heads, head_dim)
        return self.output(context.reshape(total_tokens, hidden_size))  # (total, hidden)
