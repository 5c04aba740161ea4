"""The command line's argument checks: argparse types for the options, and the device check that runs
before any model is loaded. Each says what is wrong in the words of the option the user typed."""

from __future__ import annotations

import argparse

import torch

from ..loading.dtypes import parse_dtype


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {value}")
    return value


def device_name(text: str) -> str:
    try:
        return str(torch.device(text))
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"not a torch device: {text!r} (e.g. cpu, cuda, cuda:1, mps)") from None


def check_device(name: str) -> None:
    """Raise ValueError when this torch cannot run on ``--device name``, saying what can."""
    device = torch.device(name)
    if device.type == "meta":
        raise ValueError("--device meta holds shapes but no values, so nothing can be computed; use cpu or cuda")
    if device.type == "cpu":
        return
    backend = getattr(torch, device.type, None)
    is_available = getattr(backend, "is_available", None)
    if device.type == "mps":
        is_available = torch.backends.mps.is_available
    if is_available is None or not is_available():
        raise ValueError(f"--device {name}: this torch ({torch.__version__}) cannot use {device.type} "
                         f"(not built for it, or no such device here); use --device cpu")
    count = getattr(backend, "device_count", lambda: 1)()
    if device.index is not None and device.index >= count:
        raise ValueError(f"--device {name}: there are {count} {device.type} device(s), numbered from 0")


def dtype_name(text: str) -> torch.dtype:
    try:
        return parse_dtype(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def implementation_names(text: str) -> str:
    names = [name.strip() for name in text.split(",")]
    if not names or any(name not in ("eager", "sdpa") for name in names):
        raise argparse.ArgumentTypeError(f"expected eager, sdpa or eager,sdpa, got {text!r}")
    return ",".join(names)
