"""Converting a model for CPU inference, shared by quantize.py (int8) and prepack.py (oneDNN float32).

Each conversion swaps the encoder's nn.Linear layers for layers of its own (ConvertedLinear), fuses
what the swapped layers can do together (query, key and value into one layer; exact GELU into the
feed-forward's first kernel), and marks the model. A converted model is for inference only:
  - save_pretrained refuses it (and its encoder alone): its weights are no longer floats that a
    Hugging Face checkpoint could hold;
  - train() refuses it, and so does a backward through a converted layer: oneDNN's kernels have no
    autograd formula, and PyTorch would otherwise return wrong gradients with only a warning;
  - its forward runs as inference whatever the grad mode: the kernels run without autograd, so a
    call without torch.no_grad() (a task head with labels=, say) returns the same values, and its
    loss refuses backward() with the same message. Under torch.inference_mode() nothing is recorded.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..activations import ACTIVATIONS
from ..attention import SelfAttention
from ..encoder import FeedForward


def check_input(hidden: torch.Tensor, layer: str) -> None:
    """A converted layer runs float32 on the CPU only; say so in the caller's terms otherwise."""
    if hidden.dtype != torch.float32 or hidden.device.type != "cpu":
        raise TypeError(f"{layer} takes float32 inputs on the CPU, got {hidden.dtype} on {hidden.device}")


def converted_message(conversion: str, action: str) -> str:
    return (f"this model was converted for inference ({conversion}) and cannot be {action}: its linear layers "
            "run oneDNN kernels that have no gradient. Load the float model again to train or save it.")


class InferenceOnly(torch.autograd.Function):
    """A converted layer's kernel as one autograd node: its forward runs without autograd (where out=
    arguments and oneDNN's ops work), its backward refuses, so a gradient is never silently wrong."""

    @staticmethod
    def forward(ctx, layer: "ConvertedLinear", hidden: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        ctx.conversion = layer.conversion
        return layer.infer(hidden)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> None:  # noqa: ANN001
        raise RuntimeError(converted_message(ctx.conversion, "trained"))


class ConvertedLinear(nn.Module):
    """What a converted linear layer (int8, prepacked) shares: float32 CPU inputs, inference only, no
    copies. Subclasses implement ``infer(hidden)``, (..., in) -> (..., out), which never sees autograd."""

    conversion = "converted"  # set by convert_encoder_linears: "prepack", "quantize int8"
    layer_name = "a converted layer"

    def infer(self, hidden: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        check_input(hidden, self.layer_name)
        if torch.is_grad_enabled() and hidden.requires_grad:
            return InferenceOnly.apply(self, hidden)  # (..., out), whose backward refuses
        return self.infer(hidden)  # (..., out)

    def train(self, mode: bool = True) -> "ConvertedLinear":
        if mode:
            raise RuntimeError(converted_message(self.conversion, "trained"))
        return super().train(mode)

    # Their weights are opaque oneDNN tensors, which torch can neither copy nor pickle ("Cannot access
    # storage of OpaqueTensorImpl"): copy.deepcopy, pickle and torch.save are refused, saying what works.

    def __deepcopy__(self, memo: dict) -> None:
        raise TypeError(self._cannot_copy("copy.deepcopy"))

    def __reduce_ex__(self, protocol: int) -> None:
        raise TypeError(self._cannot_copy("pickle and torch.save"))

    def _cannot_copy(self, what: str) -> str:
        return (f"{what} cannot copy a model converted for inference: its {type(self).__name__} layers hold "
                "oneDNN's opaque packed weights. Convert a copy of the float model instead, e.g. "
                "quantize(copy.deepcopy(model)) or prepack(copy.deepcopy(model)); to keep one, save the float "
                "model (save_pretrained) and convert again after loading.")


def fuse_linears(linears: list[nn.Linear]) -> nn.Linear:
    """One nn.Linear whose outputs are those of ``linears`` side by side (same input size)."""
    fused = nn.Linear(linears[0].in_features, sum(linear.out_features for linear in linears),
                      bias=any(linear.bias is not None for linear in linears), device="meta")
    fused.weight = nn.Parameter(torch.cat([linear.weight.detach() for linear in linears]), requires_grad=False)  # (out, in)
    if fused.bias is not None:  # a layer without a bias contributes zeros
        biases = [linear.weight.new_zeros(linear.out_features) if linear.bias is None else linear.bias.detach()
                  for linear in linears]
        fused.bias = nn.Parameter(torch.cat(biases), requires_grad=False)  # (out,)
    return fused


def convert_encoder_linears(model: nn.Module, make_layer: Callable[[nn.Linear], ConvertedLinear],
                            conversion: str) -> nn.Module:
    """Replace every nn.Linear in ``model``'s encoder by ``make_layer(linear)``, in place, for CPU
    inference; mark the model and each layer with ``conversion`` (which save_pretrained and train()
    refuse) and put it in eval mode, whatever mode it was in.

    Each attention's query, key and value layers become one, ``query_key_value``: they read the same
    input, which a converted layer prepares once (quantizes, say) instead of three times, and one
    wide multiply runs faster than three narrow ones. The three are dropped: weights exist once.
    """
    encoder = getattr(model, "encoder", None) or getattr(getattr(model, "bert", None), "encoder", None)
    if encoder is None:
        raise TypeError(f"{conversion} needs a minibert model with an encoder, got {type(model).__name__}")
    if not torch.backends.mkldnn.is_available():
        raise RuntimeError(f"{conversion} needs a PyTorch built with oneDNN (MKLDNN); this one is not")
    done = conversion_of(model)
    if done is not None:
        raise ValueError(f"this model was already converted for inference ({done}); load it again before {conversion}")
    parameter = next(model.parameters())
    if parameter.device.type != "cpu" or parameter.dtype != torch.float32:
        raise ValueError(f"{conversion} needs a float32 model on CPU, got {parameter.dtype} on {parameter.device}")
    model.eval()  # first: a converted layer refuses to switch modes but to eval

    def convert(linear: nn.Linear) -> ConvertedLinear:
        layer = make_layer(linear).eval()
        layer.conversion = conversion
        return layer

    for attention in encoder.modules():
        if isinstance(attention, SelfAttention) and attention.query_key_value is None:
            fused = fuse_linears([attention.query, attention.key, attention.value])
            attention.query_key_value = convert(fused)
            del attention.query, attention.key, attention.value
    linears = [(name, module) for name, module in encoder.named_modules() if isinstance(module, nn.Linear)]
    for name, linear in linears:
        owner_name, _, attribute = name.rpartition(".")
        setattr(encoder.get_submodule(owner_name), attribute, convert(linear))
    model.inference_conversion = conversion
    return model


def fuse_gelu(model: nn.Module) -> nn.Module:
    """Where the config says "gelu" (exact), let each feed-forward's converted intermediate layer
    (int8 or prepacked, both with a ``post_op``) apply it in its kernel, and drop the separate call."""
    for feed_forward in model.modules():
        if isinstance(feed_forward, FeedForward) and feed_forward.activation is F.gelu:
            feed_forward.intermediate.post_op = "gelu"
            feed_forward.activation = ACTIVATIONS["linear"]  # the identity: the kernel applies GELU now
    return model


def conversion_of(model: nn.Module) -> str | None:
    """The conversion ("prepack", "quantize int8") of any layer inside ``model``, or None. Keyed on
    the layers themselves, so that a part of a converted model (a task head's encoder) is covered."""
    for module in model.modules():
        if isinstance(module, ConvertedLinear):
            return module.conversion
    return getattr(model, "inference_conversion", None)


def refuse_training_if_converted(model: nn.Module) -> None:
    """Raise before ``model.train()`` switches any module, where the model holds converted layers."""
    conversion = conversion_of(model)
    if conversion is not None:
        raise RuntimeError(converted_message(conversion, "trained"))


def refuse_if_converted(model: nn.Module) -> None:
    """Raise where a model converted for inference (quantize, prepack) would be saved: its linear
    layers hold weights in a form that no Hugging Face checkpoint has a place for."""
    conversion = conversion_of(model)
    if conversion is not None:
        raise ValueError(
            f"this model was converted for inference ({conversion}) and cannot be saved as a Hugging Face "
            "checkpoint: its linear layers no longer hold float weights that transformers could read. Save "
            "the float model before converting it, and convert again after loading."
        )
