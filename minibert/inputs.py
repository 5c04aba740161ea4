"""Checks on what a caller passes to a model, made before any computation.

Each error names the argument and the problem in the caller's terms, instead of an IndexError
from inside an embedding lookup three layers down.

Shapes and types are checked on the host. The checks on values (ids in range, a mask of 0 and 1)
need the tensors' contents, which on a GPU means waiting for it: so they are gathered, together
with the mask's row lengths that unpadding needs, into one small tensor read back in one go.
One host sync per forward instead of one per check.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .config import BertConfig
from .fast.unpadded import PackedSequences


@dataclass
class CheckedInputs:
    """What check_inputs learned: the batch's shape and device and, given a mask, each row's number
    of real tokens (``lengths`` on the host, ``row_lengths`` the same on the device) and whether every
    row's first position is a real token."""

    batch: int
    seq: int
    device: torch.device
    lengths: list[int] | None = None
    row_lengths: torch.Tensor | None = None
    first_positions_real: bool = True

    @property
    def has_padding(self) -> bool:
        return self.lengths is not None and any(length < self.seq for length in self.lengths)


def plan_packing(config: BertConfig, checked: CheckedInputs, attention_mask: torch.Tensor | None,
                 has_pooler: bool, output_attentions: bool) -> PackedSequences | None:
    """Where a padded batch runs on its real tokens only (fast/unpadded.py), the packing; else None.

    Only with SDPA and without output_attentions (the eager path and the attention maps compute every
    position, as transformers does), and only when every row's first position is a real token or no
    pooler reads it (the pooler reads position 0, and transformers computes it even when it is padding).
    """
    if not checked.has_padding or config.attn_implementation != "sdpa" or output_attentions:
        return None
    if has_pooler and not checked.first_positions_real:
        return None
    return PackedSequences.from_lengths(attention_mask, checked.lengths, checked.row_lengths)


def needs_eager_attention(checked: CheckedInputs, dtype: torch.dtype) -> bool:
    """Whether a padded batch must compute its attention eagerly to give transformers' eager result:
    in float16, where a row is all padding. Eager adds finfo(float16).min = -65504 to that row's
    scores in float16, which rounds them to steps of 32; an SDPA kernel adds it in float32 and keeps
    them, so once the scores spread over more than 16 the softmaxes differ (bfloat16's and float32's
    finfo.min swamp the scores either way)."""
    return dtype == torch.float16 and checked.lengths is not None and 0 in checked.lengths


def _check_ids_shape(name: str, ids: torch.Tensor, shape: tuple[int, int]) -> None:
    """An integer tensor of ``shape`` (its values are checked later, with the others)."""
    if not isinstance(ids, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(ids).__name__}")
    if ids.dtype == torch.bool or ids.is_floating_point() or ids.is_complex():
        raise TypeError(f"{name} must hold integers (torch.long), got {ids.dtype}")
    if tuple(ids.shape) != shape:
        raise ValueError(f"{name} has shape {tuple(ids.shape)} but the input is (batch, seq) = {shape}")


def check_inputs(
    config: BertConfig,
    input_ids: torch.Tensor | None,
    attention_mask: torch.Tensor | None,
    token_type_ids: torch.Tensor | None,
    position_ids: torch.Tensor | None,
    inputs_embeds: torch.Tensor | None,
) -> CheckedInputs:
    """Validate a forward call's arguments; returns the batch's shape, device and mask lengths."""
    if (input_ids is None) == (inputs_embeds is None):
        raise ValueError("pass exactly one of input_ids and inputs_embeds")
    if input_ids is not None:
        if not isinstance(input_ids, torch.Tensor):
            raise TypeError(f"input_ids must be a torch.Tensor of token ids, got {type(input_ids).__name__}")
        if input_ids.dim() != 2:
            raise ValueError(
                f"input_ids must be 2-D (batch, seq), got shape {tuple(input_ids.shape)}"
                + ("; add a batch dimension with input_ids[None]" if input_ids.dim() == 1 else "")
            )
        batch, seq = input_ids.shape
        _check_ids_shape("input_ids", input_ids, (batch, seq))
        device = input_ids.device
    else:
        if not isinstance(inputs_embeds, torch.Tensor) or not inputs_embeds.is_floating_point():
            raise TypeError("inputs_embeds must be a floating-point torch.Tensor (batch, seq, hidden)")
        if inputs_embeds.dim() != 3 or inputs_embeds.shape[-1] != config.hidden_size:
            raise ValueError(
                f"inputs_embeds must be (batch, seq, hidden={config.hidden_size}), got {tuple(inputs_embeds.shape)}"
            )
        batch, seq = inputs_embeds.shape[:2]
        device = inputs_embeds.device
    if seq == 0 or batch == 0:
        raise ValueError(f"the input is empty: (batch, seq) = ({batch}, {seq})")
    if position_ids is None and seq > config.max_position_embeddings:
        raise ValueError(
            f"input has {seq} tokens but max_position_embeddings is {config.max_position_embeddings}; "
            "truncate the input"
        )
    if attention_mask is not None:
        if not isinstance(attention_mask, torch.Tensor):
            raise TypeError(f"attention_mask must be a torch.Tensor, got {type(attention_mask).__name__}")
        if tuple(attention_mask.shape) != (batch, seq):
            raise ValueError(
                f"attention_mask has shape {tuple(attention_mask.shape)} but the input is (batch, seq) = {(batch, seq)}"
            )
    if token_type_ids is not None:
        _check_ids_shape("token_type_ids", token_type_ids, (batch, seq))
    if position_ids is not None:
        if isinstance(position_ids, torch.Tensor) and position_ids.dim() == 2 and position_ids.shape[0] == 1:
            shape = (1, seq)  # one row of positions shared by the whole batch
        else:
            shape = (batch, seq)
        _check_ids_shape("position_ids", position_ids, shape)
    return _check_values(config, input_ids, attention_mask, token_type_ids, position_ids, batch, seq, device)


def _check_values(config: BertConfig, input_ids: torch.Tensor | None, attention_mask: torch.Tensor | None,
                  token_type_ids: torch.Tensor | None, position_ids: torch.Tensor | None,
                  batch: int, seq: int, device: torch.device) -> CheckedInputs:
    """Every check on values, and the mask's row lengths, from one device-to-host read."""
    ranges = [(name, ids, upper, upper_name) for name, ids, upper, upper_name in (
        ("input_ids", input_ids, config.vocab_size, "vocab_size"),
        ("token_type_ids", token_type_ids, config.type_vocab_size, "type_vocab_size"),
        ("position_ids", position_ids, config.max_position_embeddings, "max_position_embeddings"),
    ) if ids is not None]
    parts = [torch.stack([ids.min(), ids.max()]).to(device=device, dtype=torch.long)  # (2,)
             for _, ids, _, _ in ranges]
    if attention_mask is not None:
        valid = ((attention_mask == 0) | (attention_mask == 1)).all()
        parts.append(torch.stack([valid, attention_mask[:, 0].bool().all()]).to(device=device, dtype=torch.long))
        row_lengths = attention_mask.to(device=device, dtype=torch.long).sum(dim=1)  # (batch,)
        parts.append(row_lengths)
    if not parts:
        return CheckedInputs(batch, seq, device)
    values = torch.cat(parts).tolist()  # the one host sync
    for index, (name, _, upper, upper_name) in enumerate(ranges):
        low, high = values[2 * index: 2 * index + 2]
        if low < 0 or high >= upper:
            raise ValueError(f"{name} holds values in [{low}, {high}] but must lie in [0, {upper}) "
                             f"({upper_name} is {upper})")
    if attention_mask is None:
        return CheckedInputs(batch, seq, device)
    valid, first_real, *lengths = values[2 * len(ranges):]
    if not valid:
        raise ValueError("attention_mask must hold only 1 (token) and 0 (padding)")
    return CheckedInputs(batch, seq, device, lengths, row_lengths, bool(first_real))
