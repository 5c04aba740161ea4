"""Parity on the device the model runs on: the GPU when there is one (each check also runs on the CPU).

On CUDA the default path of a padded half-precision batch is the variable-length flash kernel
(varlen.py); these tests hold it to transformers:
- eager float32 is bit-identical to transformers' eager on the same device;
- in float32, bfloat16 and float16, the default path's error against a float64 reference is no worse
  than 1.1x transformers' sdpa error, on the real tokens of a padded batch (the fair test when both
  round differently: the distance to the exact answer): the mean error; the largest is held to
  transformers' largest plus two units in the last place (ulp), since it is that of a few elements;
- a sentence alone and inside a padded batch agree within a few ulps of the largest value;
- no NaN or inf appears, float16 included, with rows of a single token;
- on CUDA, each kernel called as minibert calls it matches SDPA run on each sequence alone, in forward and
  backward, and the flash op's dropout replays under the same seed, so that gradient checkpointing gives
  the gradients of a plain backward.
A kernel that raised would fall back silently to the per-length-group path and still pass the parity
checks, so they also assert that no kernel fell back.
The model is mid-sized (4 layers, 8 heads of 32): flash kernels need head_dim a multiple of 8.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from conftest import assert_close, assert_equal, reference_model, write_legacy_checkpoint
from minibert import BertModel
from minibert.fast import varlen
from minibert.loading.dtypes import DTYPE_NAMES

CUDA_ONLY = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")
DEVICES = ["cpu", pytest.param("cuda", marks=CUDA_ONLY)]
DTYPES = {name: DTYPE_NAMES[name] for name in ("fp32", "bf16", "fp16")}  # the GPU's precisions
MID = dict(vocab_size=500, hidden_size=256, num_hidden_layers=4, num_attention_heads=8, intermediate_size=1024,
           max_position_embeddings=128)
# The bounds below are counted in units in the last place (ulp) of the largest value, because on a GPU
# the same math split otherwise (other matmul kernels for other shapes, other attention kernels) rounds a
# few elements otherwise. Measured on the CPU by summing minibert's matmuls in another order (float64, then
# rounded once): a sentence alone moved by 2 ulps from the same sentence in a batch in bfloat16 and float16
# (6 in float32), and the largest error against float64 went from 0.89x to 1.13x of transformers' (bfloat16,
# the batch below) while the mean stayed within 1%.
ALONE_ULPS = {torch.float32: 32, torch.bfloat16: 4, torch.float16: 4}
LARGEST_ERROR_ULPS = 2


def ulp(value: float, dtype: torch.dtype) -> float:
    """The gap between neighbouring numbers of ``dtype`` near ``value`` (a unit in the last place)."""
    return 2.0 ** math.floor(math.log2(max(abs(value), torch.finfo(dtype).tiny))) * torch.finfo(dtype).eps


@pytest.fixture(scope="module")
def mid_checkpoint(tmp_path_factory):
    return write_legacy_checkpoint(tmp_path_factory.mktemp("mid"), MID, seed=77)


def padded_batch(lengths: list[int], device: str, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    seq = max(lengths)
    mask = (torch.arange(seq)[None] < torch.tensor(lengths)[:, None]).long()  # (batch, seq)
    input_ids = torch.randint(1, MID["vocab_size"], mask.shape, generator=generator) * mask
    return {"input_ids": input_ids.to(device), "attention_mask": mask.to(device)}


LENGTHS = [97, 1, 12, 40, 3, 64, 1, 25]


@pytest.mark.parametrize("device", DEVICES)
def test_eager_float32_bit_identical_on_device(mid_checkpoint, device):
    inputs = padded_batch(LENGTHS, device)
    ours = BertModel.from_pretrained(mid_checkpoint, attn_implementation="eager", device=device)
    theirs = reference_model(mid_checkpoint, "eager").to(device)
    with torch.no_grad():
        mine, reference = ours(**inputs, output_hidden_states=True), theirs(**inputs, output_hidden_states=True)
    for index, (actual, expected) in enumerate(zip(mine.hidden_states, reference.hidden_states)):
        assert_equal(actual, expected, f"hidden_states[{index}] on {device}")
    assert_equal(mine.pooler_output, reference.pooler_output, f"pooler_output on {device}")


@pytest.mark.parametrize("dtype", list(DTYPES), ids=list(DTYPES))
@pytest.mark.parametrize("device", DEVICES)
def test_default_path_no_less_accurate_than_transformers(mid_checkpoint, device, dtype):
    dtype = DTYPES[dtype]
    inputs = padded_batch(LENGTHS, device)
    real = inputs["attention_mask"].bool()
    ours = BertModel.from_pretrained(mid_checkpoint, dtype=dtype, device=device)
    theirs = reference_model(mid_checkpoint, "sdpa").to(device=device, dtype=dtype)
    exact = reference_model(mid_checkpoint, "eager").to(device=device, dtype=torch.float64)
    with torch.no_grad():
        truth = exact(**inputs).last_hidden_state[real]
        ours_error = (ours(**inputs).last_hidden_state[real].double() - truth).abs()
        theirs_error = (theirs(**inputs).last_hidden_state[real].double() - truth).abs()
    kernel = varlen.choose_kernel(torch.device(device), dtype, MID["hidden_size"] // MID["num_attention_heads"], 0.0)
    what = f"{device} {dtype} ({kernel}): minibert max {ours_error.max():.2e} mean {ours_error.mean():.2e}, " \
           f"transformers max {theirs_error.max():.2e} mean {theirs_error.mean():.2e}"
    assert torch.isfinite(ours_error).all(), what
    assert not varlen._broken, f"{what}: a kernel failed and fell back to {varlen.GROUPS}"
    assert ours_error.mean() <= 1.1 * theirs_error.mean(), what
    assert ours_error.max() <= theirs_error.max() + LARGEST_ERROR_ULPS * ulp(float(truth.abs().max()), dtype), what


@pytest.mark.parametrize("dtype", list(DTYPES), ids=list(DTYPES))
@pytest.mark.parametrize("device", DEVICES)
def test_sentence_alone_and_in_a_padded_batch(mid_checkpoint, device, dtype):
    dtype = DTYPES[dtype]
    model = BertModel.from_pretrained(mid_checkpoint, dtype=dtype, device=device)
    batch = padded_batch(LENGTHS, device, seed=3)
    with torch.no_grad():
        together = model(**batch).last_hidden_state
        for row in (0, 3, 1):
            length = LENGTHS[row]
            alone = model(input_ids=batch["input_ids"][row:row + 1, :length]).last_hidden_state[0]  # (length, hidden)
            difference = float((together[row, :length].float() - alone.float()).abs().max())
            bound = ALONE_ULPS[dtype] * ulp(float(alone.float().abs().max()), dtype)
            assert difference <= bound, f"row {row} ({length} tokens): {difference:.2e} > {bound:.2e}"


@pytest.mark.parametrize("dtype", list(DTYPES), ids=list(DTYPES))
@pytest.mark.parametrize("device", DEVICES)
def test_no_nan_or_inf_with_single_token_rows(mid_checkpoint, device, dtype):
    dtype = DTYPES[dtype]
    model = BertModel.from_pretrained(mid_checkpoint, dtype=dtype, device=device)
    for lengths in ([1, 1, 1], [1, 50, 1], [128, 1]):
        with torch.no_grad():
            output = model(**padded_batch(lengths, device, seed=4))
        assert torch.isfinite(output.last_hidden_state).all() and torch.isfinite(output.pooler_output).all(), lengths
    model.train()
    with torch.autocast(device, dtype=torch.bfloat16 if dtype == torch.float32 else dtype):
        loss = model(**padded_batch([1, 30, 1, 7], device, seed=5)).last_hidden_state.float().square().mean()
    loss.backward()
    assert all(torch.isfinite(parameter.grad).all() for parameter in model.parameters() if parameter.grad is not None)
    assert not varlen._broken, f"a kernel failed and fell back to {varlen.GROUPS}"


# Packed kernels against float32 SDPA per sequence: both see the same rounded inputs, so what is left is
# the kernel's own rounding (probabilities and output in the half type); attending across sequences would
# be off by the size of the values themselves.
KERNEL_TOLERANCE = {torch.bfloat16: 3e-2, torch.float16: 5e-3}
KERNEL_LENGTHS = [1, 5, 17, 3, 64, 1, 40]


def packed_qkv(dtype: torch.dtype, seed: int) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator(device="cuda").manual_seed(seed)
    return tuple(torch.randn(sum(KERNEL_LENGTHS), 4, 64, device="cuda", dtype=dtype, generator=generator)
                 .requires_grad_() for _ in range(3))  # (total_tokens, heads, head_dim)


def cumulative_lengths() -> torch.Tensor:
    starts = [0, *itertools.accumulate(KERNEL_LENGTHS)]
    return torch.tensor(starts, dtype=torch.int32, device="cuda")  # (sequences + 1,)


@CUDA_ONLY
@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
@pytest.mark.parametrize("kernel", ["varlen_attn", "flash"])
def test_kernel_matches_attention_per_sequence(kernel, dtype):
    dtype = DTYPES[dtype]
    query, key, value = packed_qkv(dtype, seed=8)
    context = varlen.KERNELS[kernel](query, key, value, cumulative_lengths(), max(KERNEL_LENGTHS), 0.0)
    starts = [0, *itertools.accumulate(KERNEL_LENGTHS)]
    reference = torch.cat([  # (total_tokens, heads, head_dim)
        F.scaled_dot_product_attention(*(block[start:end].float().transpose(0, 1)  # (heads, length, head_dim)
                                         for block in (query, key, value))).transpose(0, 1)
        for start, end in zip(starts, starts[1:])])
    assert context.dtype == dtype and context.shape == query.shape
    tolerance = KERNEL_TOLERANCE[dtype]
    assert_close(context.float(), reference, rtol=0, atol=tolerance * float(reference.abs().max()),
                 what=f"{kernel} {dtype} output")
    for name, actual, expected in zip(("query", "key", "value"),
                                      torch.autograd.grad(context.float().square().sum(), (query, key, value)),
                                      torch.autograd.grad(reference.square().sum(), (query, key, value))):
        assert_close(actual.float(), expected.float(), rtol=0, atol=tolerance * float(expected.abs().max()),
                     what=f"{kernel} {dtype} gradient of {name}")


@CUDA_ONLY
def test_flash_dropout_acts_and_replays_under_the_same_seed():
    query, key, value = packed_qkv(torch.bfloat16, seed=9)
    cu_seqlens, longest = cumulative_lengths(), max(KERNEL_LENGTHS)
    torch.manual_seed(5)
    first = varlen.KERNELS["flash"](query, key, value, cu_seqlens, longest, 0.3)
    second = varlen.KERNELS["flash"](query, key, value, cu_seqlens, longest, 0.3)
    torch.manual_seed(5)
    replayed = varlen.KERNELS["flash"](query, key, value, cu_seqlens, longest, 0.3)
    assert not torch.equal(first, second), "dropout 0.3 should draw a new mask on each call"
    assert_equal(replayed, first, "flash output under the same seed")
    gradients = torch.autograd.grad(first.float().square().sum(), (query, key, value))
    assert all(torch.isfinite(gradient).all() and gradient.abs().sum() > 0 for gradient in gradients)


@CUDA_ONLY
def test_gradient_checkpointing_replays_the_flash_dropout(mid_checkpoint):
    """Training on the flash op (bf16 autocast, attention dropout on): recomputing each layer in backward
    draws the same dropout masks, so checkpointed gradients equal plain ones, up to the order in which the
    kernel's backward adds (not fixed on a GPU); other masks would move them by tens of percent."""
    model = BertModel.from_pretrained(mid_checkpoint, device="cuda").train()
    batch = padded_batch([1, 30, 1, 7, 64], "cuda", seed=6)
    assert varlen.choose_kernel(torch.device("cuda"), torch.bfloat16, 32, model.config.attention_probs_dropout_prob) \
        == "flash"
    gradients = []
    for checkpointing in (False, True):
        model.gradient_checkpointing_enable() if checkpointing else model.gradient_checkpointing_disable()
        model.zero_grad(set_to_none=True)
        torch.manual_seed(7)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(**batch).last_hidden_state.float().square().mean()
        loss.backward()
        gradients.append({name: parameter.grad.clone() for name, parameter in model.named_parameters()
                          if parameter.grad is not None})
    plain, checkpointed = gradients
    assert plain.keys() == checkpointed.keys() and not varlen._broken
    for name, gradient in plain.items():
        assert_close(checkpointed[name], gradient, rtol=0, atol=1e-2 * float(gradient.abs().max()),
                     what=f"checkpointed grad of {name}")
