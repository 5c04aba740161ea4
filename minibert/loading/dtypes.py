"""Floating dtypes by the names users write: "fp32", "bf16", "torch.float16"."""

from __future__ import annotations

import torch

# Short names as the command line and benchmarks write them; torch's own names work too.
DTYPE_NAMES = {"fp64": torch.float64, "fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def parse_dtype(name: str) -> torch.dtype:
    """'fp32', 'bf16', 'fp16', 'fp64', or a torch name of a floating dtype ('float32', 'torch.bfloat16')."""
    key = str(name).strip().lower().removeprefix("torch.")
    resolved = DTYPE_NAMES.get(key, getattr(torch, key, None))
    if not isinstance(resolved, torch.dtype) or not resolved.is_floating_point:
        raise ValueError(f"unknown dtype {name!r}; use fp32, bf16, fp16, fp64 or a torch dtype such as torch.float32")
    return resolved


def resolve_dtype(dtype: torch.dtype | str | None) -> torch.dtype | str | None:
    """A torch.dtype, "auto" (the checkpoint's own) or None (float32)."""
    if dtype is None or dtype == "auto" or isinstance(dtype, torch.dtype):
        return dtype
    return parse_dtype(dtype)
