"""Opt-in faster small batches on CPU: the encoder's linear layers with weights prepacked for oneDNN.

At one sentence, each of the encoder's linear layers multiplies a few rows by a large weight, and
the time goes into streaming that weight through the matrix-multiply kernel. ``prepack(model)``
reorders every encoder weight once into oneDNN's blocked layout, the one its kernel reads
straight through (ONNX Runtime prepacks its weights the same way, at load time), and runs the
layers with oneDNN's linear (``torch.ops.mkldnn._linear_pointwise``, what torch.compile's
weight freezing uses on x86). Still float32; the sums are ordered differently, so the outputs match
the eager path to about 1e-6 relative, not bit for bit.

Each attention's query, key and value become one layer, and where the config says "gelu" the
feed-forward's first kernel applies it as it writes (see conversion.py).

Measured on bert-base's shape, 2-core AMD EPYC (AVX2), 2 threads: 1x16 58.6 -> 37.8 ms (ONNX
Runtime optimized: 25.9 ms), 1x64 123 -> 115 ms, but 1x128 183.9 -> 194.8 ms and 1x512 646 -> 771 ms:
it pays at few tokens, where the weights dominate, up to about 64, and costs from about 96. The
packed weight replaces the float one, so the weights still exist once; the model is for inference
only, and save_pretrained refuses it.
"""

from __future__ import annotations

import torch
from torch import nn

from .conversion import ConvertedLinear, check_input, convert_encoder_linears, fuse_gelu

# oneDNN picks the blocked layout for an expected number of rows; at 16 and at 128 it is the same
# speed on the shapes measured (1 row is 25% slower at 16 tokens).
TOKENS_HINT = 128


class PrepackedLinear(ConvertedLinear):
    """An nn.Linear's inference with its weight in oneDNN's layout, optionally followed by exact GELU
    in the same kernel. (..., in) -> (..., out), float32."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        # oneDNN applies erf GELU to each output as it is written: one pass over the (tokens,
        # intermediate) activations fewer, as ONNX Runtime's fused BiasGelu saves.
        self.post_op = "none"  # or "gelu", set by prepack()
        # Not a buffer: an opaque oneDNN tensor that state_dict, .to() and save cannot handle.
        self.packed_weight = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), TOKENS_HINT)
        bias = None if linear.bias is None else linear.bias.detach()
        self.register_buffer("bias", bias, persistent=False)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        check_input(hidden, "a prepacked layer")
        # For GELU, algorithm "none" is the exact (erf) form, not the tanh approximation.
        return torch.ops.mkldnn._linear_pointwise(hidden, self.packed_weight, self.bias, self.post_op, [], "none")

    def extra_repr(self) -> str:
        fused = ", then GELU" if self.post_op == "gelu" else ""
        return f"in_features={self.in_features}, out_features={self.out_features}, oneDNN layout{fused}"


def prepack(model: nn.Module) -> nn.Module:
    """Prepack ``model``'s encoder linear layers in place for CPU inference (float32), and return it.

    Faster at small batches (see the module docstring); the model is put in eval mode and can no
    longer be trained or saved.
    """
    convert_encoder_linears(model, PrepackedLinear, "prepack")
    return fuse_gelu(model)
