"""BertModel: embeddings -> encoder -> pooler (BERT, section 3).

The token ids become vectors (embeddings.py), twelve identical layers of self-attention and
feed-forward refine them (encoder.py, attention.py), and the pooler turns the [CLS] token's final
vector into one vector for the sentence. Loading and saving checkpoints come from the base class
(loading/pretrained.py); skipping padding is decided in inputs.py and done in fast/unpadded.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .attention import additive_padding_mask
from .config import BertConfig
from .embeddings import BertEmbeddings
from .encoder import Encoder
from .inputs import check_inputs, needs_eager_attention, plan_packing
from .loading.pretrained import ModelOutput, PreTrainedBert


class BertModel(PreTrainedBert):
    """The BERT encoder. ``BertModel(config)`` is randomly initialised; see ``from_pretrained``."""

    # A masked-LM checkpoint has no pooler; as transformers does, it is then initialised (and said so).
    fresh_head_prefixes = ("pooler.",)

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True) -> None:
        super().__init__()
        if not isinstance(config, BertConfig):
            raise TypeError(f"BertModel needs a BertConfig, got {type(config).__name__}")
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = Encoder(config)
        self.pooler = Pooler(config) if add_pooling_layer else None
        if not any(parameter.is_meta for parameter in self.parameters()):
            self.init_weights()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> BertModelOutput:
        """Encode a batch. input_ids (batch, seq) int, or inputs_embeds (batch, seq, hidden).

        attention_mask (batch, seq): 1 for tokens, 0 for padding. token_type_ids (batch, seq):
        segment A = 0, B = 1. position_ids (batch, seq) or (1, seq): defaults to 0..seq-1.

        With SDPA (the default) a padded batch runs unpadded: only the real tokens are computed
        (fast/unpadded.py), and the padding positions of last_hidden_state and hidden_states are zeros.
        A batch with a row whose first position is padding (left padding, an all-padding row) runs
        padded instead, because the pooler reads position 0 and transformers computes it there. The
        eager path, and any call with output_attentions, computes every position as transformers does;
        so does a float16 batch with an all-padding row, whose attention then runs eagerly (inputs.py).
        """
        checked = check_inputs(self.config, input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds)
        batch, seq, device = checked.batch, checked.seq, checked.device
        if token_type_ids is None:
            token_type_ids = torch.zeros((batch, seq), dtype=torch.long, device=device)
        if position_ids is None:
            position_ids = torch.arange(seq, device=device)[None]  # (1, seq)
        # Skip the padding instead of computing it (None: run padded; see plan_packing's rules).
        packing = plan_packing(self.config, checked, attention_mask, self.pooler is not None, output_attentions)
        if packing is not None:  # from here on, the real tokens only
            input_ids, token_type_ids, position_ids, inputs_embeds = (
                None if tensor is None else packing.pack(tensor)  # (total_tokens, ...)
                for tensor in (input_ids, token_type_ids, position_ids, inputs_embeds)
            )
        hidden = self.embeddings(input_ids, token_type_ids, position_ids, inputs_embeds)  # (batch, seq, hidden)
        # ... or (total_tokens, hidden) when packed: the embeddings, too, are computed per token.
        additive_mask = None
        # No padding, no mask: the kernels run faster without one and the numbers are the same.
        if checked.has_padding and packing is None:
            additive_mask = additive_padding_mask(attention_mask, hidden.dtype)  # (batch, 1, 1, seq)
        # Attention maps come from the eager path; so does a float16 batch with an empty row (see inputs.py).
        eager = output_attentions or (additive_mask is not None and needs_eager_attention(checked, hidden.dtype))
        last, all_hidden, all_probs = self.encoder(hidden, additive_mask, eager, output_hidden_states, packing)
        all_probs = all_probs if output_attentions else None
        if packing is not None:
            last = packing.unpack(last)  # (batch, seq, hidden), zeros at the padding
            all_hidden = None if all_hidden is None else tuple(packing.unpack(state) for state in all_hidden)
        pooled = self.pooler(last) if self.pooler is not None else None
        return BertModelOutput(last, pooled, all_hidden, all_probs)


class Pooler(nn.Module):
    """The [CLS] token's final state through a dense layer and tanh: a sentence-level vector."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """(batch, seq, hidden) -> (batch, hidden)."""
        return torch.tanh(self.dense(hidden[:, 0]))  # (batch, hidden)


@dataclass
class BertModelOutput(ModelOutput):
    """last_hidden_state (batch, seq, hidden); pooler_output (batch, hidden);
    hidden_states: num_layers + 1 tensors (batch, seq, hidden), the embeddings first;
    attentions: num_layers tensors (batch, heads, seq, seq)."""

    last_hidden_state: torch.Tensor
    pooler_output: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None
