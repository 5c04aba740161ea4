"""The encoder: a stack of identical layers, each self-attention then a feed-forward network,
both wrapped in "Add & Norm" (residual connection, then LayerNorm: post-norm, as in BERT).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .activations import ACTIVATIONS
from .attention import SelfAttention
from .config import BertConfig


class FeedForward(nn.Module):
    """Position-wise: hidden -> intermediate (4x wider) -> activation -> hidden."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.intermediate = nn.Linear(config.hidden_size, config.intermediate_size)
        self.activation = ACTIVATIONS[config.hidden_act]
        self.output = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., hidden) -> (..., hidden)."""
        return self.output(self.activation(self.intermediate(hidden)))  # (..., intermediate) inside


class EncoderLayer(nn.Module):
    """x = LayerNorm(x + Dropout(SelfAttention(x))); x = LayerNorm(x + Dropout(FeedForward(x)))."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.attention = SelfAttention(config)
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.feed_forward = FeedForward(config)
        self.feed_forward_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(
        self, hidden: torch.Tensor, additive_mask: torch.Tensor | None, return_probs: bool = False,
        packing: Any = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """hidden (batch, seq, hidden) -> (batch, seq, hidden), probs (batch, heads, seq, seq) or None.

        With ``packing``, hidden is (total_tokens, hidden) throughout: everything but attention is per token.
        """
        attended, probs = self.attention(hidden, additive_mask, return_probs, packing)
        hidden = self.attention_norm(self.dropout(attended) + hidden)
        transformed = self.feed_forward(hidden)
        hidden = self.feed_forward_norm(self.dropout(transformed) + hidden)
        return hidden, probs


class Encoder(nn.Module):
    """num_hidden_layers EncoderLayers in sequence."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.num_hidden_layers))
        # Recompute each layer's activations in the backward pass instead of storing them:
        # less memory for one more forward pass (see BertModel.gradient_checkpointing_enable).
        self.gradient_checkpointing = False

    def forward(
        self,
        hidden: torch.Tensor,
        additive_mask: torch.Tensor | None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        packing: Any = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None, tuple[torch.Tensor, ...] | None]:
        """(batch, seq, hidden) -> last hidden state, every layer's input and output, every layer's probs.

        With ``packing`` every hidden state is (total_tokens, hidden) instead (see fast/unpadded.py).
        """
        all_hidden = [hidden] if output_hidden_states else None
        all_probs = [] if output_attentions else None
        for layer in self.layers:
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
                hidden, probs = checkpoint(layer, hidden, additive_mask, output_attentions, packing,
                                           use_reentrant=False)
            else:
                hidden, probs = layer(hidden, additive_mask, output_attentions, packing)
            if all_hidden is not None:
                all_hidden.append(hidden)
            if all_probs is not None:
                all_probs.append(probs)
        return (
            hidden,
            tuple(all_hidden) if all_hidden is not None else None,
            tuple(all_probs) if all_probs is not None else None,
        )
