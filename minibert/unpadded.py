"""Unpadded execution: the encoder runs on the real tokens of a padded batch and nothing else.

In a batch padded to its longest sentence most positions can be padding (16 sentences of median
length 40 padded to 270: 78%). Every linear layer, LayerNorm and activation treats each token on
its own, so they run on the real tokens gathered into one (total_tokens, hidden) tensor. Only
attention mixes tokens, and it runs within each sequence, on that sequence's tokens alone, where no
padding mask is needed. The results are scattered back to (batch, seq, hidden) at the end, with
zeros at the padding positions.

The packed order groups sequences of equal length next to each other, so that each group is one
(sequences, length) block that a single SDPA call attends over without a mask.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class PackedSequences:
    """Where the real tokens of a padded (batch, seq) batch sit in the packed (total_tokens, ...) order.

    token_indices: (total_tokens,) positions in the flattened (batch * seq) batch, sequence after
    sequence, shortest sequences first; groups: (length, number of sequences) in that order.
    """

    batch: int
    seq: int
    token_indices: torch.Tensor
    groups: list[tuple[int, int]]

    @classmethod
    def from_mask(cls, attention_mask: torch.Tensor) -> PackedSequences:
        """attention_mask (batch, seq): 1 for tokens, 0 for padding (anywhere, not only at the end)."""
        batch, seq = attention_mask.shape
        keep = attention_mask.to(torch.bool)  # (batch, seq)
        lengths = keep.sum(dim=1)  # (batch,)
        # A stable sort keeps equal-length sequences in batch order; each group is then contiguous.
        order = torch.sort(lengths, stable=True).indices  # (batch,)
        token_indices = (order[:, None] * seq + torch.arange(seq, device=keep.device))[keep[order]]  # (total_tokens,)
        sorted_lengths = lengths[order].tolist()  # one host sync: the group sizes steer the loop below
        groups = [(length, len(list(run))) for length, run in itertools.groupby(sorted_lengths) if length > 0]
        return cls(batch, seq, token_indices, groups)

    @property
    def total_tokens(self) -> int:
        return self.token_indices.numel()

    def pack(self, padded: torch.Tensor) -> torch.Tensor:
        """(batch, seq, ...) or (1, seq, ...) -> (total_tokens, ...): the real tokens, in packed order."""
        padded = padded.expand(self.batch, self.seq, *padded.shape[2:])  # (batch, seq, ...)
        flat = padded.reshape(self.batch * self.seq, *padded.shape[2:])  # (batch * seq, ...)
        return flat.index_select(0, self.token_indices)  # (total_tokens, ...)

    def unpack(self, packed: torch.Tensor) -> torch.Tensor:
        """(total_tokens, ...) -> (batch, seq, ...), zeros at the padding positions."""
        flat = packed.new_zeros(self.batch * self.seq, *packed.shape[1:])  # (batch * seq, ...)
        flat = flat.index_copy(0, self.token_indices, packed)  # out of place, so autograd sees it
        return flat.view(self.batch, self.seq, *packed.shape[1:])  # (batch, seq, ...)

    def attention(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, dropout: float) -> torch.Tensor:
        """Each sequence's queries attend to that sequence's keys only; no mask, no padding.

        query/key/value: (total_tokens, heads, head_dim) in packed order -> context, the same shape.
        """
        if query.is_cuda:
            return self._jagged_attention(query, key, value, dropout)
        contexts, start = [], 0
        for length, count in self.groups:
            end = start + length * count
            # One group: `count` sequences of `length` tokens, contiguous in the packed order.
            query_block, key_block, value_block = (
                block[start:end].view(count, length, *block.shape[1:]).transpose(1, 2)  # (count, heads, length, head_dim)
                for block in (query, key, value)
            )
            context = F.scaled_dot_product_attention(query_block, key_block, value_block, dropout_p=dropout)
            contexts.append(context.transpose(1, 2).reshape(end - start, *query.shape[1:]))  # (count * length, heads, head_dim)
            start = end
        return torch.cat(contexts)  # (total_tokens, heads, head_dim)

    def _jagged_attention(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                          dropout: float) -> torch.Tensor:
        """On a GPU: one SDPA call over nested (jagged) tensors, which PyTorch runs as a variable-length
        flash/memory-efficient kernel. Shapes as ``attention``. (On a CPU this dispatches to a slow path.)"""
        lengths = torch.tensor([length for length, count in self.groups for _ in range(count)], device=query.device)
        offsets = F.pad(lengths.cumsum(0), (1, 0))  # (sequences + 1,): where each sequence starts
        query_jagged, key_jagged, value_jagged = (
            torch.nested.nested_tensor_from_jagged(block, offsets).transpose(1, 2)  # (sequences, heads, j, head_dim)
            for block in (query, key, value)
        )
        context = F.scaled_dot_product_attention(query_jagged, key_jagged, value_jagged, dropout_p=dropout)
        return context.transpose(1, 2).values()  # (total_tokens, heads, head_dim)
