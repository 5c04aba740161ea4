"""Opt-in int8 inference on CPU: dynamic quantization of the encoder's linear layers.

``quantize(model, "int8")`` replaces every nn.Linear in the encoder by a DynamicInt8Linear
(each attention's query, key and value by one, which quantizes their shared input once):
  - its weight is rounded once to int8, one scale per output channel (symmetric), and prepacked
    into oneDNN's blocked layout; the float weight is dropped, so the encoder's weights take a quarter
    of the memory;
  - each call quantizes its input to uint8 with one scale per token, computed from that token's own
    min and max ("dynamic": no calibration data), multiplies in integers, and rescales the sums back
    to float32 (bias added in float). Per token, not per tensor: BERT's hidden states have a few
    outlier features, and one scale for the whole batch would spend the 256 levels of every token
    on the largest outlier anywhere in it (MiniLM's sentence embeddings: lowest cosine 0.990 per
    tensor, 0.994 per token). The zero point is one per call (see quantize_tokens).
  - one exception: where the config says "gelu", the feed-forward's first layer takes one input
    scale per call, so that the kernel itself can add the bias, rescale and apply GELU as it writes
    (the per-token scales are applied after the kernel, which GELU would have to wait for). That
    saves two passes over the widest activations; MiniLM's lowest cosine goes from 0.9935 to 0.992.
  - the input rounding (a min and max per token, then one multiply-add and a conversion to uint8)
    is compiled by torch.compile into fused loops, once per process at the first call (a few
    seconds): eager PyTorch spends four passes over each input on it, about a tenth of the int8
    forward at 8x128; compiled, the step is 1.6x to 4x faster (16 to 1024 tokens), and the whole
    forward about 4% faster (bert-base, AVX2). ``quantize(..., compile=False)`` keeps it
    eager; where inductor cannot compile (no C++ compiler, say), one warning says so and the
    eager code runs.
The embeddings, LayerNorms, attention (softmax over float scores), the pooler and task heads stay in
float32. The kernel is oneDNN's quantized linear as PyTorch ships it (``torch.ops.onednn``, the op
that torch.compile's x86 int8 lowering targets). Why not torchao or torch.ao: see the README.

A quantized model is for inference only: it cannot be trained, and ``save_pretrained`` refuses it
(a Hugging Face checkpoint has no place for int8 weights, and writing dequantized floats would pass
rounding off as the original model).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from .conversion import ConvertedLinear, check_input, convert_encoder_linears, fuse_gelu

SCHEMES = ("int8",)
logger = logging.getLogger("minibert")


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none): amx_int8, avx512_vnni, ..."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def int8_weight_levels(flags: set[str] | None = None) -> int:
    """The largest weight magnitude to round to: 127, or 63 on CPUs without VNNI or AMX.

    Without VNNI (AVX2 only), the kernel multiplies uint8 activations by int8 weights with an
    instruction (vpmaddubsw) that adds pairs of products into int16 and saturates: 2 x 255 x 127
    overflows, 2 x 255 x 63 does not. Seven-bit weights give exact integer sums at the cost of half
    the weight resolution; the CPUs with VNNI or AMX add in int32 and keep all eight bits.
    """
    flags = cpu_flags() if flags is None else flags
    return 127 if flags & {"avx512_vnni", "avx_vnni", "amx_int8"} else 63


def quantize_tokens(hidden: torch.Tensor, per_token: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Round each token (last dimension) of float32 ``hidden`` to uint8 codes with a scale of its own
    (or, with ``per_token=False``, the whole tensor with one scale).

    Returns codes (..., in) uint8, scale (..., 1) (or ()) float32 and the zero point, a () int64
    tensor shared by all tokens: value = scale * (code - zero_point), and 0 is a code exactly.
    Why one zero point: the kernel subtracts a single zero point itself, where a zero point per
    token would cost a pass over the output to undo. It sits where the tokens' ranges [min, max]
    (widened to include 0) put zero on average: mid-range for LayerNorm's outputs, near the bottom
    for GELU's (>= -0.17). Each token's scale then stretches its range over the codes on either
    side of it, so every token keeps most of the 256 levels.
    Codes round half up: a positive value plus 0.5, truncated by the conversion. By construction
    the values land in [-0.5, 255.5) before truncation, so no clamp is needed.
    """
    reduced = {"dim": -1, "keepdim": True} if per_token else {}
    high = hidden.amax(**reduced).clamp_(min=0)  # (..., 1)
    low = hidden.amin(**reduced).clamp_(max=0).neg_()  # (..., 1), the depth below zero
    share_below = (low / (high + low).clamp_(min=1e-30)).mean()  # (), 0..1
    zero_point = share_below.mul_(255).round_().clamp_(1, 254)  # ()
    scale = torch.maximum(low / zero_point, high / (255 - zero_point)).clamp_(min=1e-30)  # (..., 1)
    # Times the reciprocal: a multiply is a third of a divide's time, and the codes differ by one at
    # most, at a tie. One pass to float, one to uint8.
    codes = torch.addcmul(zero_point + 0.5, hidden, scale.reciprocal()).to(torch.uint8)  # (..., in)
    return codes, scale, zero_point.long()


class CompiledRounding:
    """quantize_tokens compiled by torch.compile (inductor), built at the first call and shared by
    every layer; dynamic shapes, so new batch sizes and lengths reuse it. Where compiling fails, it
    warns once and runs the eager quantize_tokens from then on: same codes but for ties (see the
    test), same scales."""

    compiled = None
    failed: str | None = None

    def __call__(self, hidden: torch.Tensor, per_token: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if CompiledRounding.failed is None:
            try:
                if CompiledRounding.compiled is None:
                    CompiledRounding.compiled = torch.compile(quantize_tokens, dynamic=True)
                return CompiledRounding.compiled(hidden, per_token)
            # inductor's failures (no compiler, an unsupported Python, a backend error) have no
            # common type; the input was checked before this, so what fails here is the compiling.
            except Exception as error:  # noqa: BLE001
                CompiledRounding.failed = f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0][:200]}"
                logger.warning("minibert int8: torch.compile could not build the input rounding (%s); running "
                               "it eagerly, which makes the int8 forward slower", CompiledRounding.failed)
        return quantize_tokens(hidden, per_token)


class DynamicInt8Linear(ConvertedLinear):
    """An nn.Linear's inference with an int8 weight and a per-call uint8 input. (..., in) -> (..., out)."""

    def __init__(self, linear: nn.Linear, weight_levels: int | None = None) -> None:
        super().__init__()
        if linear.weight.device.type != "cpu":
            raise ValueError(f"int8 quantization runs on CPU only; this layer's weight is on {linear.weight.device}")
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight_levels = weight_levels or int8_weight_levels()
        weight = linear.weight.detach().float()  # (out, in)
        # One scale per output channel: a row's largest |weight| maps to weight_levels.
        weight_scale = weight.abs().amax(dim=1).clamp(min=1e-12) / self.weight_levels  # (out,)
        weight_int8 = torch.round(weight / weight_scale[:, None]).clamp(-self.weight_levels, self.weight_levels)
        # Prepacked once, here: per call the kernel only reads it. Not a buffer: its layout is
        # oneDNN's, meaningful to nothing else (and save_pretrained refuses quantized models anyway).
        self.packed_weight = torch.ops.onednn.qlinear_prepack(weight_int8.to(torch.int8), None)
        self.register_buffer("one", torch.tensor(1.0), persistent=False)
        self.register_buffer("weight_scale", weight_scale, persistent=False)
        self.register_buffer("weight_zero_point", torch.zeros(self.out_features, dtype=torch.long), persistent=False)
        bias = torch.zeros(self.out_features) if linear.bias is None else linear.bias.detach().float()
        self.register_buffer("bias", bias, persistent=False)  # (out,)
        # "none", or "gelu" (set by quantize()): exact GELU applied by the kernel as it writes each
        # output. The kernel then needs the whole input scale, so the input gets one scale per call
        # instead of one per token; in exchange the bias, the scale and GELU cost no pass of their own.
        self.post_op = "none"
        # The input rounding: quantize_tokens, or the same compiled (set by quantize(compile=True)).
        self.round_input = quantize_tokens

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        check_input(hidden, "an int8 layer")
        if hidden.numel() == 0:  # no tokens: nothing to scale by (a max over nothing), nothing to multiply
            return hidden.new_zeros((*hidden.shape[:-1], self.out_features))
        if self.post_op != "none":
            codes, scale, zero_point = self.round_input(hidden, per_token=False)
            return torch.ops.onednn.qlinear_pointwise.tensor(
                codes, scale, zero_point, self.packed_weight, self.weight_scale, self.weight_zero_point, self.bias,
                1.0, 0, torch.float32, self.post_op, [], "none",  # "none": GELU's erf form, not tanh
            )  # (..., out)
        codes, scale, zero_point = self.round_input(hidden)
        # The kernel takes one input scale for the whole tensor, so it gets 1, and the per-token scale
        # is applied to its output: for token i and output j, with W the rounded weight times its
        # channel scale (which the kernel applies itself) and z the zero point (subtracted by the kernel),
        #   y[i, j] = scale[i] * sum_k (q[i, k] - z) W[j, k] + bias[j]
        products = torch.ops.onednn.qlinear_pointwise.tensor(
            codes, self.one, zero_point, self.packed_weight, self.weight_scale, self.weight_zero_point,
            None, 1.0, 0, torch.float32, "none", [], "",
        )  # (..., out): sum_k (q[i, k] - z) W[j, k]
        return torch.addcmul(self.bias, products, scale, out=products)  # in place: (..., out)

    def extra_repr(self) -> str:
        fused = ", then GELU (one input scale)" if self.post_op == "gelu" else ""
        compiled = ", compiled rounding" if isinstance(self.round_input, CompiledRounding) else ""
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"weight levels ±{self.weight_levels}{fused}{compiled}")


def quantize(model: nn.Module, scheme: str = "int8", compile: bool = True) -> nn.Module:  # noqa: A002
    """Quantize ``model``'s encoder linear layers in place for CPU inference, and return the model.

    scheme: "int8" (dynamic int8, see the module docstring). The model is put in eval mode; its
    embeddings, LayerNorms, attention, pooler and heads stay float32.
    compile: round each layer's input with torch.compile's fused loops (the first call then takes a
    few seconds more, once per process); False keeps that step in eager PyTorch.
    """
    if not isinstance(compile, bool):
        raise TypeError(f"compile must be True or False, not {compile!r}")
    if scheme not in SCHEMES:
        raise ValueError(f"unknown quantization scheme {scheme!r}; choose from {', '.join(SCHEMES)}")
    if not hasattr(torch.ops.onednn, "qlinear_pointwise"):
        raise RuntimeError(f"int8 needs oneDNN's quantized linear (torch.ops.onednn.qlinear_pointwise), which "
                           f"torch {torch.__version__} does not have")
    levels = int8_weight_levels()
    rounding = CompiledRounding() if compile else quantize_tokens

    def make_layer(linear: nn.Linear) -> DynamicInt8Linear:
        layer = DynamicInt8Linear(linear, levels)
        layer.round_input = rounding
        return layer

    convert_encoder_linears(model, make_layer, f"quantize {scheme}")
    return fuse_gelu(model)
