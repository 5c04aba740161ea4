"""Opt-in int8 inference on CPU: dynamic quantization of the encoder's linear layers.

``quantize(model, "int8")`` replaces every nn.Linear in the encoder by a DynamicInt8Linear
(each attention's query, key and value by one, which quantizes their shared input once):
  - its weight is rounded once to int8, one scale per output channel (symmetric), and prepacked
    into oneDNN's blocked layout; the float weight is dropped, so the encoder's weights take a quarter
    of the memory;
  - each call quantizes its input to uint8 with one scale and one zero point per token, computed
    from that token's own min and max ("dynamic": no calibration data), multiplies in integers, and
    rescales the sums back to float32 (bias added in float). Per token, not per tensor: BERT's
    hidden states have a few outlier features, and one scale for the whole batch would spend the 256
    levels of every token on the largest outlier anywhere in it. And nothing shared between tokens:
    a sentence's result does not depend on what else is in the batch (bit for bit on the default
    unpadded path). The kernel subtracts one zero point for the whole tensor, so it gets 0, and each
    token's zero point is taken off its output through the weights' row sums (rescale_products),
    in the same pass that applies its scale, the bias, and GELU where the config says "gelu".
  - the few input features that a LayerNorm makes 10 to 25 times larger than the rest (outliers.py)
    are left out of the rounding in each feed-forward's first layer, which reads a LayerNorm's
    output: four per layer, multiplied in float32 and added in the same pass. MiniLM's mean-pooled
    sentence embeddings against float32 (AVX-512 VNNI, 8-bit weights), each text alone: lowest
    cosine 0.9914 on 17 short texts ("thanks!"; the rounded weights alone give 0.9946 there);
    without the float32 outliers 0.9886; with one zero point and one GELU input scale shared by the
    whole call, 0.972.
  - the input rounding (a min and max per token, then one multiply-add and a conversion to uint8)
    and the output rescaling are compiled by torch.compile into fused loops, once per process at
    the first call (a few seconds): eager PyTorch spends four passes over each input and two or
    three over each output on them. ``quantize(..., compile=False)`` keeps them eager; where
    inductor cannot compile (no C++ compiler, say), one warning says so and the eager code runs.
The embeddings, LayerNorms, attention (softmax over float scores), the pooler and task heads stay in
float32. The kernel is oneDNN's quantized linear as PyTorch ships it (``torch.ops.onednn``, the op
that torch.compile's x86 int8 lowering targets). Why not torchao or torch.ao: see the README.

A quantized model is for inference only (see conversion.py): its forward runs as inference whatever
the grad mode, ``train()`` and ``backward()`` raise, and ``save_pretrained`` refuses it (a Hugging Face
checkpoint has no place for int8 weights, and writing dequantized floats would pass rounding off as
the original model).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .conversion import ConvertedLinear, convert_encoder_linears, fuse_gelu
from .outliers import mark_outlier_features

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


def quantize_tokens(hidden: torch.Tensor, inliers: torch.Tensor | None = None,
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Round each token (last dimension) of float32 ``hidden`` to uint8 codes with a scale and a zero
    point of its own: value = scale * (code - zero_point).

    Returns codes (..., in) uint8, scale (..., 1) float32 and zero_point (..., 1) float32 (a whole
    number in 0..255). Each token's range [min, max], widened to include 0, maps onto the 256 codes,
    0 onto a code exactly. Nothing is shared between tokens, so a sentence's codes do not depend on
    what else is in the batch (the kernel's single zero point is 0; see DynamicInt8Linear).
    Codes round half up: a positive value plus 0.5, truncated by the conversion; the clamp catches
    the top code's tie, where the sum reaches 256.
    inliers (in,) float32, 1 or 0: where given, the features marked 0 (outliers, multiplied in
    float32 apart) are rounded as 0 and left out of the range.
    """
    if inliers is not None:
        hidden = hidden * inliers  # (..., in); fused into the same loops when compiled
    high = hidden.amax(dim=-1, keepdim=True).clamp_(min=0)  # (..., 1)
    low = hidden.amin(dim=-1, keepdim=True).clamp_(max=0)  # (..., 1)
    scale = ((high - low) / 255).clamp_(min=1e-30)  # (..., 1)
    # Times the reciprocal: a multiply is a third of a divide's time, and the codes differ by one at
    # most, at a tie. One pass to float, one to uint8.
    inverse = scale.reciprocal()  # (..., 1)
    zero_point = torch.round(low.neg() * inverse)  # (..., 1)
    codes = torch.addcmul(zero_point + 0.5, hidden, inverse).clamp_(max=255).to(torch.uint8)  # (..., in)
    return codes, scale, zero_point


def rescale_products(products: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor,
                     weight_sums: torch.Tensor, bias: torch.Tensor, gelu: bool,
                     outliers: torch.Tensor | None = None, outlier_weight: torch.Tensor | None = None,
                     ) -> torch.Tensor:
    """The layer's float output from the kernel's integer sums, per token t and output j:
        y[t, j] = scale[t] * (products[t, j] - zero_point[t] * weight_sums[j]) + bias[j]
    (then exact GELU where ``gelu``), since sum_k (q[t, k] - z[t]) W[j, k] = sum_k q[t, k] W[j, k] - z[t] sum_k W[j, k].
    products (..., out) is overwritten; the result takes its place.
    outliers (..., k) and outlier_weight (k, out): the few input features kept in float32 and their
    weight columns, added as k multiply-adds per output (a loop, so that the compiled pass fuses them
    instead of writing a matmul's output and reading it again)."""
    products = torch.addcmul(products, zero_point, weight_sums, value=-1, out=products)  # (..., out)
    products = torch.addcmul(bias, products, scale, out=products)  # (..., out)
    if outliers is not None:
        for feature in range(outlier_weight.shape[0]):
            products = products.addcmul_(outliers[..., feature:feature + 1], outlier_weight[feature])  # (..., out)
    # GELU written back into the products' own buffer: as the compiled pass's only store, and no new
    # output buffer (a fresh one is, per call, megabytes of new pages for the kernel to fault in).
    return products.copy_(F.gelu(products)) if gelu else products  # (..., out)


class CompiledRounding:
    """quantize_tokens and rescale_products compiled by torch.compile (inductor) into fused loops,
    built at the first call and shared by every layer; dynamic shapes, so new batch sizes and lengths
    reuse them. Where compiling fails, it warns once and runs the eager functions from then on: same
    codes but for ties (see the test), same scales. Where the eager function fails on the same input
    too, the fault is the input's, not the compiler's: that error propagates and the compiled
    functions stay in use."""

    compiled: dict = {}
    failed: str | None = None

    def run(self, function: Callable, *args: object) -> object:
        if CompiledRounding.failed is None:
            try:
                if function not in CompiledRounding.compiled:
                    CompiledRounding.compiled[function] = torch.compile(function, dynamic=True)
                return CompiledRounding.compiled[function](*args)
            # inductor's failures (no compiler, an unsupported Python, a backend error) have no
            # common type, so the eager function is the judge: it raises too where the input is at fault.
            except Exception as error:  # noqa: BLE001
                eager = function(*args)  # raises the caller's error, if it is one
                CompiledRounding.failed = f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0][:200]}"
                logger.warning("minibert int8: torch.compile could not build the input rounding (%s); running "
                               "it eagerly, which makes the int8 forward slower", CompiledRounding.failed)
                return eager
        return function(*args)

    def __call__(self, *args: object) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.run(quantize_tokens, *args)

    def rescale(self, *args: object) -> torch.Tensor:
        """rescale_products, compiled: one pass over the output (two or three eagerly)."""
        return self.run(rescale_products, *args)


class DynamicInt8Linear(ConvertedLinear):
    """An nn.Linear's inference with an int8 weight and per-token uint8 inputs. (..., in) -> (..., out)."""

    def __init__(self, linear: nn.Linear, weight_levels: int | None = None) -> None:
        super().__init__()
        if linear.weight.device.type != "cpu":
            raise ValueError(f"int8 quantization runs on CPU only; this layer's weight is on {linear.weight.device}")
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight_levels = weight_levels or int8_weight_levels()
        weight = linear.weight.detach().float()  # (out, in)
        # The input features to multiply in float32 (see outlier_features): their columns leave the int8 weight.
        outliers = getattr(linear, "outlier_features", None)
        self.register_buffer("outliers", outliers, persistent=False)  # (k,) feature indices, or None
        self.register_buffer("inliers", None if outliers is None else torch.ones(self.in_features).index_fill_(
            0, outliers, 0.0), persistent=False)  # (in,) 1, or 0 at an outlier feature
        self.register_buffer("outlier_weight", None if outliers is None else weight[:, outliers].T.contiguous(),
                             persistent=False)  # (k, out)
        if outliers is not None:
            weight = weight.index_fill(1, outliers, 0.0)  # (out, in)
        # One scale per output channel: a row's largest |weight| maps to weight_levels.
        weight_scale = weight.abs().amax(dim=1).clamp(min=1e-12) / self.weight_levels  # (out,)
        weight_int8 = torch.round(weight / weight_scale[:, None]).clamp(-self.weight_levels, self.weight_levels)
        # Prepacked once, here: per call the kernel only reads it. Not a buffer: its layout is
        # oneDNN's, meaningful to nothing else (and save_pretrained refuses quantized models anyway).
        self.packed_weight = torch.ops.onednn.qlinear_prepack(weight_int8.to(torch.int8), None)
        self.register_buffer("one", torch.tensor(1.0), persistent=False)
        self.register_buffer("zero", torch.tensor(0), persistent=False)
        self.register_buffer("weight_scale", weight_scale, persistent=False)
        self.register_buffer("weight_zero_point", torch.zeros(self.out_features, dtype=torch.long), persistent=False)
        # Each output's sum over its rounded weights, for the per-token zero points (rescale_products).
        self.register_buffer("weight_sums", weight_int8.sum(dim=1) * weight_scale, persistent=False)  # (out,)
        bias = torch.zeros(self.out_features) if linear.bias is None else linear.bias.detach().float()
        self.register_buffer("bias", bias, persistent=False)  # (out,)
        # "none", or "gelu" (set by quantize()): exact GELU applied to each output as it is rescaled.
        self.post_op = "none"
        # The input rounding and the output rescaling: eager, or compiled (set by quantize(compile=True)).
        self.round_input = quantize_tokens
        self.rescale_output = rescale_products

    layer_name = "an int8 layer"

    def infer(self, hidden: torch.Tensor) -> torch.Tensor:
        if hidden.numel() == 0:  # no tokens: nothing to scale by (a max over nothing), nothing to multiply
            return hidden.new_zeros((*hidden.shape[:-1], self.out_features))
        codes, scale, zero_point = self.round_input(hidden, self.inliers)
        # The kernel takes one input scale and one zero point for the whole tensor, so it gets 1 and 0,
        # and each token's own scale and zero point are applied to its output (rescale_products). With W
        # the rounded weight times its channel scale (which the kernel applies itself):
        products = torch.ops.onednn.qlinear_pointwise.tensor(
            codes, self.one, self.zero, self.packed_weight, self.weight_scale, self.weight_zero_point,
            None, 1.0, 0, torch.float32, "none", [], "",
        )  # (..., out): sum_k q[i, k] W[j, k]
        outliers = None if self.outliers is None else hidden.index_select(-1, self.outliers)  # (..., k)
        return self.rescale_output(products, scale, zero_point, self.weight_sums, self.bias, self.post_op == "gelu",
                                   outliers, self.outlier_weight)

    def extra_repr(self) -> str:
        fused = ", then GELU" if self.post_op == "gelu" else ""
        compiled = ", compiled rounding" if isinstance(self.round_input, CompiledRounding) else ""
        outliers = "" if self.outliers is None else f", {len(self.outliers)} outlier features in float32"
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"weight levels ±{self.weight_levels}{outliers}{fused}{compiled}")


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
        if compile:
            layer.round_input, layer.rescale_output = rounding, rounding.rescale
        return layer

    mark_outlier_features(model)
    convert_encoder_linears(model, make_layer, f"quantize {scheme}")
    return fuse_gelu(model)
