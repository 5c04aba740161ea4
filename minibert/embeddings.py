"""BERT's input representation: token + segment + position embeddings, summed, then normalized.

Paper, section 3: "For a given token, its input representation is constructed by summing the
corresponding token, segment, and position embeddings."
"""

from __future__ import annotations

import torch
from torch import nn

from .config import BertConfig


class BertEmbeddings(nn.Module):
    """Turns token ids (or ready-made token vectors) into the encoder's first hidden states."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        # padding_idx keeps the [PAD] row's gradient at zero, as in transformers.
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(
        self,
        input_ids: torch.Tensor | None,
        token_type_ids: torch.Tensor,
        position_ids: torch.Tensor,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """ids (batch, seq) or inputs_embeds (batch, seq, hidden) -> (batch, seq, hidden).

        token_type_ids is (batch, seq); position_ids is (batch, seq) or (1, seq).
        """
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)  # (batch, seq, hidden)
        # Summed in transformers' order (token + segment, then + position): float addition is not
        # associative, and this order keeps the two implementations bit-identical.
        embeddings = inputs_embeds + self.token_type_embeddings(token_type_ids)
        embeddings = embeddings + self.position_embeddings(position_ids)  # (batch, seq, hidden)
        return self.dropout(self.layer_norm(embeddings))
