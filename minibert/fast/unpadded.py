"""Unpadded execution: the encoder runs on the real tokens of a padded batch and nothing else.

In a batch padded to its longest sentence most positions can be padding (16 sentences of median
length 40 padded to 270: 78%). Every linear layer, LayerNorm and activation treats each token on
its own, so they run on the real tokens gathered into one (total_tokens, hidden) tensor. Only
attention mixes tokens, and it runs within each sequence, on that sequence's tokens alone, where no
padding mask is needed. The results are scattered back to (batch, seq, hidden) at the end, with
zeros at the padding positions.

Attention over the packed tokens has two forms, chosen once per forward:
- on a GPU in float16/bfloat16, one variable-length flash kernel per layer (varlen.py), steered by
  the cumulative sequence lengths ``cu_seqlens``;
- elsewhere (the CPU, float32), one SDPA call per group of equal-length sequences: the packed order
  puts sequences of equal length next to each other, so each group is one (sequences, length) block
  that needs no mask.
Everything both need is computed here once, from sequence lengths the caller already read on the
host, so no layer waits for the GPU.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from . import varlen


@dataclass
class PackedSequences:
    """Where the real tokens of a padded (batch, seq) batch sit in the packed (total_tokens, ...) order.

    token_indices: (total_tokens,) positions in the flattened (batch * seq) batch, sequence after
    sequence, shortest sequences first (ties in batch order); groups: (length, number of sequences)
    in that order; cu_seqlens: (sequences + 1,) int32 on the batch's device, where each sequence
    starts in the packed order; max_length: the longest sequence. Sequences of length 0 are left out.
    """

    batch: int
    seq: int
    token_indices: torch.Tensor
    groups: list[tuple[int, int]]
    cu_seqlens: torch.Tensor
    max_length: int
    kernel: str | None = field(default=None, compare=False)  # set by the first layer's attention

    @classmethod
    def from_lengths(cls, attention_mask: torch.Tensor, lengths: list[int],
                     row_lengths: torch.Tensor | None = None) -> PackedSequences:
        """attention_mask (batch, seq): 1 for tokens, 0 for padding (anywhere, not only at the end);
        lengths: its row sums, already on the host (inputs.check_inputs reads them with the other checks);
        row_lengths: the same sums on the device, (batch,) long, if the caller has them.

        The device tensors are computed on the device and the Python values from ``lengths``: copying
        a list to a GPU waits for the GPU as surely as reading from it does.
        """
        batch, seq = attention_mask.shape
        device = attention_mask.device
        keep = attention_mask.to(torch.bool)  # (batch, seq)
        if row_lengths is None:
            row_lengths = keep.sum(dim=1)  # (batch,)
        # Sorted by length (stable: equal lengths keep batch order), so each group is contiguous.
        order = torch.sort(row_lengths, stable=True).indices  # (batch,)
        rank = torch.argsort(order)  # (batch,): each row's place in that order
        # Each real token's place in the packed order is (its row's rank, its position); padding sorts last.
        # A sort, not boolean indexing: the output size is known on the host, so nothing syncs.
        place = rank[:, None] * seq + torch.arange(seq, device=device)  # (batch, seq)
        place = place.masked_fill(~keep, batch * seq).flatten()  # (batch * seq,)
        sorted_lengths = sorted(lengths)  # the same order as on the device (a stable sort of the same numbers)
        token_indices = torch.argsort(place, stable=True)[:sum(sorted_lengths)]  # (total_tokens,)
        empty = sorted_lengths.count(0)  # rows with no token come first; the kernels skip them
        cu_seqlens = F.pad(row_lengths[order].cumsum(0), (1, 0))[empty:].to(torch.int32)  # (sequences + 1,)
        groups = [(length, len(list(run))) for length, run in itertools.groupby(sorted_lengths) if length > 0]
        return cls(batch, seq, token_indices, groups, cu_seqlens, max(sorted_lengths, default=0))

    @classmethod
    def from_mask(cls, attention_mask: torch.Tensor) -> PackedSequences:
        """As from_lengths, reading the lengths from the mask (one host sync)."""
        row_lengths = attention_mask.to(torch.long).sum(dim=1)  # (batch,)
        return cls.from_lengths(attention_mask, row_lengths.tolist(), row_lengths)

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
        if not self.groups:  # no real token at all
            return query.new_empty(query.shape)  # (0, heads, head_dim)
        if self.kernel is None:  # the first layer decides for the whole forward
            self.kernel = varlen.choose_kernel(query.device, query.dtype, query.shape[-1], dropout)
        if self.kernel == varlen.GROUPS:
            return self.grouped_attention(query, key, value, dropout)
        return varlen.run_kernel(self.kernel, query, key, value, self.cu_seqlens, self.max_length, dropout,
                                 fallback=lambda: self.grouped_attention(query, key, value, dropout))

    def grouped_attention(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                          dropout: float) -> torch.Tensor:
        """One SDPA call per group of equal-length sequences. Shapes as ``attention``."""
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
