"""The feed-forward activations, by the names config.json uses (transformers' ACT2FN names).

Each formula is written as transformers writes it, operation for operation, so that outputs
agree bit for bit. Two names transformers knows are left out: ``prelu`` and ``xielu`` carry learned
parameters of their own, which no BERT checkpoint we know of uses.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

Activation = Callable[[torch.Tensor], torch.Tensor]
SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def gelu_tanh_formula(x: torch.Tensor) -> torch.Tensor:
    """GELU's tanh approximation, spelled out (the original BERT/GPT-2 code)."""
    return 0.5 * x * (1.0 + torch.tanh(SQRT_2_OVER_PI * (x + 0.044715 * torch.pow(x, 3.0))))


ACTIVATIONS: dict[str, Activation] = {
    "gelu": F.gelu,  # exact: x * Phi(x), the paper's choice
    "gelu_python": lambda x: x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0))),
    "gelu_new": gelu_tanh_formula,
    "gelu_accurate": gelu_tanh_formula,
    "gelu_python_tanh": lambda x: x * 0.5 * (1.0 + torch.tanh(SQRT_2_OVER_PI * (x + 0.044715 * torch.pow(x, 3.0)))),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_fast": lambda x: 0.5 * x * (1.0 + torch.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x))),
    "gelu_10": lambda x: torch.clip(F.gelu(x), -10, 10),
    "quick_gelu": lambda x: x * torch.sigmoid(1.702 * x),
    "laplace": lambda x: 0.5 * (1.0 + torch.erf((x - 0.707107).div(0.282095 * math.sqrt(2.0)))),
    "relu": F.relu,
    "relu2": lambda x: torch.square(F.relu(x)),
    "relu6": F.relu6,
    "leaky_relu": F.leaky_relu,
    "hardswish": F.hardswish,
    "mish": F.mish,
    "silu": F.silu,
    "swish": F.silu,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "sqrtsoftplus": lambda x: F.softplus(x).sqrt(),
    "linear": lambda x: x,
}
