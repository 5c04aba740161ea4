"""Checks on what a caller passes to a model, made before any computation.

Each error names the argument and the problem in the caller's terms, instead of an IndexError
from inside an embedding lookup three layers down.
"""

from __future__ import annotations

import torch

from .config import BertConfig


def _check_ids(name: str, ids: torch.Tensor, shape: tuple[int, int], upper: int, upper_name: str) -> None:
    """Integer tensor of ``shape`` with values in [0, upper)."""
    if not isinstance(ids, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(ids).__name__}")
    if ids.dtype == torch.bool or ids.is_floating_point() or ids.is_complex():
        raise TypeError(f"{name} must hold integers (torch.long), got {ids.dtype}")
    if tuple(ids.shape) != shape:
        raise ValueError(f"{name} has shape {tuple(ids.shape)} but the input is (batch, seq) = {shape}")
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= upper):
        raise ValueError(
            f"{name} holds values in [{int(ids.min())}, {int(ids.max())}] but must lie in [0, {upper}) "
            f"({upper_name} is {upper})"
        )


def check_inputs(
    config: BertConfig,
    input_ids: torch.Tensor | None,
    attention_mask: torch.Tensor | None,
    token_type_ids: torch.Tensor | None,
    position_ids: torch.Tensor | None,
    inputs_embeds: torch.Tensor | None,
) -> tuple[int, int, torch.device]:
    """Validate a forward call's arguments; returns (batch, seq, device)."""
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
        _check_ids("input_ids", input_ids, (batch, seq), config.vocab_size, "vocab_size")
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
        if attention_mask.numel() and not bool(((attention_mask == 0) | (attention_mask == 1)).all()):
            raise ValueError("attention_mask must hold only 1 (token) and 0 (padding)")
    if token_type_ids is not None:
        _check_ids("token_type_ids", token_type_ids, (batch, seq), config.type_vocab_size, "type_vocab_size")
    if position_ids is not None:
        if isinstance(position_ids, torch.Tensor) and position_ids.dim() == 2 and position_ids.shape[0] == 1:
            shape = (1, seq)  # one row of positions shared by the whole batch
        else:
            shape = (batch, seq)
        _check_ids("position_ids", position_ids, shape, config.max_position_embeddings, "max_position_embeddings")
    return batch, seq, device
