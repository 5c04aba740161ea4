"""Variable-length attention kernels on a GPU: every sequence of a packed batch in one call.

The packed tokens of all sequences lie end to end in one (total_tokens, heads, head_dim) tensor;
``cu_seqlens`` (int32, on the device) says where each sequence starts, and ``max_length`` (a Python
int) bounds the kernel's tiles. FlashAttention's variable-length kernel then attends within each
sequence in one launch, with no mask and no padding.

These are private or recent torch APIs, so they are wrapped here and nowhere else:
- ``varlen_attn`` (torch.nn.attention.varlen, public since torch 2.10): no dropout, so inference.
- ``aten._flash_attention_forward``: the op varlen_attn itself calls; private, but it takes a
  dropout probability and autograd knows its backward, so it serves training with dropout.
Both need a CUDA device, float16 or bfloat16, and head_dim a multiple of 8 up to 256. Anything
else (float32, an older torch) takes the per-length-group SDPA loop of unpadded.py, and the first
time that happens on a GPU one log line says so. A kernel that fails its first call is never
tried again in this process: the fallback takes over with a warning instead of a crash.
"""

from __future__ import annotations

import logging
from typing import Callable

import torch

logger = logging.getLogger("minibert")

_UNLOADED = object()
_varlen_attn = _UNLOADED  # torch.nn.attention.varlen.varlen_attn, None where torch lacks it


def _get_varlen_attn():
    """varlen_attn, imported on first use on a GPU: importing it registers a custom op, which pulls in
    torch._dynamo and sympy (a second of import time that a CPU user never needs)."""
    global _varlen_attn
    if _varlen_attn is _UNLOADED:
        try:  # public since torch 2.10
            from torch.nn.attention.varlen import varlen_attn
        except ImportError:  # an older torch
            varlen_attn = None
        _varlen_attn = varlen_attn
    return _varlen_attn

_FLASH_OP = getattr(torch.ops.aten, "_flash_attention_forward", None)
FLASH_DTYPES = (torch.float16, torch.bfloat16)
GROUPS = "per-length-group SDPA"  # the fallback's name, as the benchmark prints it
_broken: set[str] = set()  # kernels whose first call failed in this process
_said: set[tuple[str, str]] = set()  # (kernel, reason) pairs already logged


def varlen_attn_call(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, cu_seqlens: torch.Tensor,
                     max_length: int, dropout: float) -> torch.Tensor:
    """torch's public variable-length kernel (no dropout). Shapes: (total_tokens, heads, head_dim)."""
    return _get_varlen_attn()(query, key, value, cu_seqlens, cu_seqlens, max_length, max_length)


def flash_call(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, cu_seqlens: torch.Tensor,
               max_length: int, dropout: float) -> torch.Tensor:
    """The private aten flash op, with dropout on the probabilities. Shapes as varlen_attn_call."""
    output, *_ = _FLASH_OP(query, key, value, cu_seqlens, cu_seqlens, max_length, max_length, dropout,
                           False, False)  # is_causal=False (BERT sees both ways), return_debug_mask=False
    return output  # (total_tokens, heads, head_dim)


KERNELS: dict[str, Callable[..., torch.Tensor]] = {"varlen_attn": varlen_attn_call, "flash": flash_call}


def _available(name: str) -> bool:
    present = _get_varlen_attn() is not None if name == "varlen_attn" else _FLASH_OP is not None
    return present and name not in _broken


def choose_kernel(device: torch.device, dtype: torch.dtype, head_dim: int, dropout: float) -> str:
    """Which kernel runs a packed batch's attention: "varlen_attn", "flash", or GROUPS.

    Made once per forward, where the device, dtype (under autocast: the autocast dtype) and the
    training mode are known. ``dropout`` is the attention-probability dropout that will be applied.
    """
    if device.type != "cuda":
        return GROUPS  # flash kernels are CUDA-only; the CPU's grouped SDPA is its fast path
    if dtype not in FLASH_DTYPES or head_dim % 8 or head_dim > 256:
        return _fallback(f"{dtype}, head_dim {head_dim}: flash kernels need float16/bfloat16 and "
                         "head_dim a multiple of 8 up to 256")
    if dropout == 0.0 and _available("varlen_attn"):
        return "varlen_attn"
    if _available("flash"):
        return "flash"  # training with dropout (varlen_attn takes none), or a torch without varlen_attn
    return _fallback(f"torch {torch.__version__} has no variable-length flash kernel")


def _fallback(reason: str) -> str:
    if (GROUPS, reason) not in _said:
        _said.add((GROUPS, reason))
        logger.warning("minibert: GPU unpadded attention runs %s (%s)", GROUPS, reason)
    return GROUPS


def run_kernel(name: str, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, cu_seqlens: torch.Tensor,
               max_length: int, dropout: float, fallback: Callable[[], torch.Tensor]) -> torch.Tensor:
    """Run kernel ``name``; if it raises (a private op whose signature moved), mark it broken, warn
    once, and return ``fallback()`` instead, then and on every later call."""
    if name in _broken:
        return fallback()
    try:
        return KERNELS[name](query, key, value, cu_seqlens, max_length, dropout)
    except (RuntimeError, TypeError, NotImplementedError) as error:
        _broken.add(name)
        logger.warning("minibert: the %s attention kernel failed (%s); using %s from now on",
                       name, str(error).splitlines()[0], GROUPS)
        return fallback()
