"""The GPU unpadded path (minibert/fast/varlen.py), as far as a CPU can hold it.

The flash kernels run only on CUDA, so here they are replaced by a reference that honours the same
contract (packed (total_tokens, heads, head_dim) tensors, int32 cumulative lengths, the longest
length as a Python int) and attends per sequence with SDPA. That checks everything minibert does
around the kernel: the cumulative lengths, the packed order, the kernel choice and its fallbacks,
gradients and dropout, and the host syncs per forward. tests/test_gpu.py runs the real kernels.
"""

from __future__ import annotations

import inspect
import logging

import pytest
import torch
import torch.nn.functional as F

from conftest import TINY_CONFIGS, assert_close
from minibert import BertModel
from minibert.fast import varlen
from minibert.fast.unpadded import PackedSequences
from test_unpadded import ATOL, RTOL, batch_for, masks

CUDA = torch.device("cuda")  # a device object needs no GPU: choose_kernel only looks at its type


@pytest.fixture(autouse=True)
def fresh_kernel_state(monkeypatch):
    """Each test starts with no kernel marked broken and no fallback said."""
    monkeypatch.setattr(varlen, "_broken", set())
    monkeypatch.setattr(varlen, "_said", set())


def reference_kernel(calls: list):
    """A CPU stand-in for the flash kernels: per-sequence SDPA steered by cu_seqlens, as flash reads it."""
    def kernel(query, key, value, cu_seqlens, max_length, dropout):
        assert query.dim() == 3 and query.shape == key.shape == value.shape  # (total_tokens, heads, head_dim)
        assert cu_seqlens.dtype == torch.int32 and cu_seqlens.device == query.device
        assert isinstance(max_length, int)
        starts = cu_seqlens.tolist()
        calls.append((starts, max_length, dropout))
        assert int(cu_seqlens[-1]) == query.shape[0] and max_length == max(b - a for a, b in zip(starts, starts[1:]))
        contexts = [F.scaled_dot_product_attention(*(block[start:end].transpose(0, 1)[None]  # (1, heads, length, head_dim)
                                                     for block in (query, key, value)), dropout_p=dropout)[0].transpose(0, 1)
                    for start, end in zip(starts, starts[1:])]
        return torch.cat(contexts)  # (total_tokens, heads, head_dim)
    return kernel


def force_kernel(monkeypatch, name: str, calls: list) -> None:
    monkeypatch.setitem(varlen.KERNELS, name, reference_kernel(calls))
    monkeypatch.setattr(varlen, "choose_kernel", lambda *args: name)


@pytest.mark.parametrize("name", ["right", "holes", "empty-row"])
def test_varlen_contract_matches_groups(name):
    """One kernel call over the packed order and cu_seqlens equals the per-group loop, with gradients."""
    packing = PackedSequences.from_mask(masks()[name])
    generator = torch.Generator().manual_seed(17)
    query, key, value = (torch.randn(packing.total_tokens, 3, 8, generator=generator, requires_grad=True)
                         for _ in range(3))
    calls = []
    grouped = packing.grouped_attention(query, key, value, dropout=0.0)
    packed = reference_kernel(calls)(query, key, value, packing.cu_seqlens, packing.max_length, 0.0)
    assert_close(packed, grouped, rtol=RTOL, atol=ATOL, what="varlen contract vs grouped")
    for which, (actual, expected) in enumerate(zip(torch.autograd.grad(packed.square().sum(), (query, key, value)),
                                                   torch.autograd.grad(grouped.square().sum(), (query, key, value)))):
        assert_close(actual, expected, rtol=RTOL, atol=ATOL, what=f"gradient {which}")


@pytest.mark.parametrize("kernel", ["varlen_attn", "flash"])
def test_varlen_path_in_the_model(tiny_checkpoints, monkeypatch, kernel):
    """BertModel with a varlen kernel: one call per layer, the same hidden states as the per-group path,
    gradients through it (plain and with gradient checkpointing), and dropout handed to the kernel."""
    config = TINY_CONFIGS["odd-heads"]
    model = BertModel.from_pretrained(tiny_checkpoints["odd-heads"])
    inputs = batch_for(masks()["right"], config["vocab_size"], seed=19)
    real = inputs["attention_mask"].bool()
    with torch.no_grad():
        grouped = model(**inputs).last_hidden_state
    calls = []
    force_kernel(monkeypatch, kernel, calls)
    with torch.inference_mode():
        packed = model(**inputs).last_hidden_state
    assert_close(packed[real], grouped[real], rtol=RTOL, atol=ATOL, what=f"{kernel} path")
    assert len(calls) == config["num_hidden_layers"], "one kernel call per layer"
    assert {tuple(starts) for starts, _, _ in calls} == {(0, 1, 4, 7, 12, 19)}
    model.train()
    for checkpointing in (False, True):
        model.gradient_checkpointing_enable() if checkpointing else model.gradient_checkpointing_disable()
        calls.clear()
        model.zero_grad()
        model(**inputs).last_hidden_state[real].square().sum().backward()
        assert all(parameter.grad is not None and parameter.grad.abs().sum() > 0
                   for parameter in model.encoder.parameters())
        assert {dropout for _, _, dropout in calls} == {model.config.attention_probs_dropout_prob} != {0.0}


def test_choose_kernel(monkeypatch, caplog):
    """CPU: the groups. CUDA half precision: varlen_attn, or the flash op when dropout is on; float32 or a
    torch without either kernel: the groups, said in one log line, once."""
    monkeypatch.setattr(varlen, "_varlen_attn", object())
    monkeypatch.setattr(varlen, "_FLASH_OP", object())
    assert varlen.choose_kernel(torch.device("cpu"), torch.bfloat16, 64, 0.0) == varlen.GROUPS
    assert varlen.choose_kernel(CUDA, torch.bfloat16, 64, 0.0) == "varlen_attn"
    assert varlen.choose_kernel(CUDA, torch.float16, 64, 0.1) == "flash", "varlen_attn takes no dropout"
    with caplog.at_level(logging.WARNING, logger="minibert"):
        assert varlen.choose_kernel(CUDA, torch.float32, 64, 0.0) == varlen.GROUPS
        assert varlen.choose_kernel(CUDA, torch.float32, 64, 0.0) == varlen.GROUPS
        assert varlen.choose_kernel(CUDA, torch.bfloat16, 12, 0.0) == varlen.GROUPS  # head_dim not a multiple of 8
    assert len(caplog.records) == 2 and "float32" in caplog.records[0].getMessage()
    monkeypatch.setattr(varlen, "_varlen_attn", None)  # an older torch: the flash op serves inference too
    assert varlen.choose_kernel(CUDA, torch.bfloat16, 64, 0.0) == "flash"
    monkeypatch.setattr(varlen, "_FLASH_OP", None)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="minibert"):
        assert varlen.choose_kernel(CUDA, torch.bfloat16, 64, 0.1) == varlen.GROUPS
    assert "has no variable-length flash kernel" in caplog.text


def test_installed_torch_kernels_are_found():
    """The feature checks see what this torch has (torch >= 2.10 has both), so a rename is noticed; and
    both kernels take, positionally, exactly what minibert passes them, in that order (torch 2.11 to 2.13
    agree; later arguments are keyword-only with defaults, which minibert leaves alone)."""
    from torch.nn.attention import varlen as torch_varlen
    assert varlen._get_varlen_attn() is torch_varlen.varlen_attn
    parameters = list(inspect.signature(torch_varlen.varlen_attn).parameters.values())
    assert [parameter.name for parameter in parameters if parameter.kind == parameter.POSITIONAL_OR_KEYWORD] == [
        "query", "key", "value", "cu_seq_q", "cu_seq_k", "max_q", "max_k"]
    assert all(parameter.default is not parameter.empty for parameter in parameters[7:])
    arguments = varlen._FLASH_OP.default._schema.arguments
    assert [(argument.name, str(argument.type)) for argument in arguments if not argument.kwarg_only] == [
        ("query", "Tensor"), ("key", "Tensor"), ("value", "Tensor"), ("cum_seq_q", "Optional[Tensor]"),
        ("cum_seq_k", "Optional[Tensor]"), ("max_q", "int"), ("max_k", "int"), ("dropout_p", "float"),
        ("is_causal", "bool"), ("return_debug_mask", "bool")]
    assert all(argument.has_default_value() for argument in arguments if argument.kwarg_only)


@pytest.mark.parametrize("name", ["varlen_attn", "flash"])
def test_kernel_calls_on_meta_tensors(monkeypatch, name):
    """minibert's own call of each kernel, run by the installed torch on the meta device (shapes only, no
    GPU needed). Each argument lands on the parameter meant for it (read by binding the call to the
    installed signature); one (total_tokens, heads, head_dim) tensor comes back in the input dtype, not a
    tuple; and its backward reaches query, key and value. So a moved argument, a new return type or a lost
    derivative shows here and not on the GPU."""
    bound = []
    if name == "varlen_attn":
        kernel = varlen._get_varlen_attn()
        signature = inspect.signature(kernel)

        def spy(*args, **kwargs):
            bound.append(signature.bind(*args, **kwargs).arguments)
            return kernel(*args, **kwargs)
        monkeypatch.setattr(varlen, "_varlen_attn", spy)
    else:
        kernel = varlen._FLASH_OP
        names = [argument.name for argument in kernel.default._schema.arguments]

        def spy(*args, **kwargs):
            bound.append({**dict(zip(names, args)), **kwargs})
            return kernel(*args, **kwargs)
        monkeypatch.setattr(varlen, "_FLASH_OP", spy)
    query, key, value = (torch.empty(19, 4, 64, dtype=torch.bfloat16, device="meta", requires_grad=True)
                         for _ in range(3))  # (total_tokens, heads, head_dim)
    cu_seqlens = torch.tensor([0, 1, 4, 7, 12, 19], dtype=torch.int32).to("meta")  # (sequences + 1,)
    dropout = 0.1 if name == "flash" else 0.0
    context = varlen.KERNELS[name](query, key, value, cu_seqlens, 7, dropout)
    (arguments,) = bound
    lengths = "cum_seq" if name == "flash" else "cu_seq"
    assert all(arguments[which] is tensor for which, tensor in zip(("query", "key", "value"), (query, key, value)))
    assert arguments[f"{lengths}_q"] is cu_seqlens and arguments[f"{lengths}_k"] is cu_seqlens
    assert arguments["max_q"] == arguments["max_k"] == 7
    if name == "flash":
        assert (arguments["dropout_p"], arguments["is_causal"], arguments["return_debug_mask"]) == (0.1, False, False)
    assert type(context) is torch.Tensor and context.shape == query.shape and context.dtype == torch.bfloat16
    gradients = torch.autograd.grad(context.float().sum(), (query, key, value))
    assert [gradient.shape for gradient in gradients] == [query.shape] * 3


def test_broken_kernel_falls_back_once(tiny_checkpoints, monkeypatch, caplog):
    """A private op whose call fails: one warning, the per-group path, and it is not tried again."""
    attempts = []

    def broken(*args):
        attempts.append(1)
        raise RuntimeError("flash kernel: unexpected argument\nmore detail")

    monkeypatch.setitem(varlen.KERNELS, "flash", broken)
    monkeypatch.setattr(varlen, "choose_kernel", lambda *args: "flash")
    model = BertModel.from_pretrained(tiny_checkpoints["tiny"])
    inputs = batch_for(masks()["right"], TINY_CONFIGS["tiny"]["vocab_size"], seed=20)
    real = inputs["attention_mask"].bool()
    with torch.no_grad(), caplog.at_level(logging.WARNING, logger="minibert"):
        fallen_back = model(**inputs).last_hidden_state
        model(**inputs)
    assert attempts == [1]
    assert caplog.text.count("the flash attention kernel failed (flash kernel: unexpected argument)") == 1
    monkeypatch.undo()
    with torch.no_grad():
        assert_close(fallen_back[real], model(**inputs).last_hidden_state[real], rtol=0, atol=0, what="fallback")


class HostReads(torch.utils._python_dispatch.TorchDispatchMode):
    """Counts the operations that make the host wait for a GPU: reading a value (item, int, bool), an
    output whose size depends on values (nonzero, boolean indexing, masked_select), or a tensor made
    from Python data (lift_fresh: torch.tensor(list), which on a GPU is a copy that waits for it)."""

    SYNCING = {"aten::_local_scalar_dense", "aten::nonzero", "aten::masked_select", "aten::unique_consecutive",
               "aten::_unique2", "aten::equal", "aten::is_nonzero", "aten::lift_fresh"}

    def __init__(self):
        super().__init__()
        self.reads = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._schema.name
        boolean_index = name == "aten::index" and any(
            index is not None and index.dtype == torch.bool for index in args[1])
        if name in self.SYNCING or boolean_index:
            self.reads.append(name)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("kernel", ["groups", "varlen_attn"])
def test_one_host_read_per_forward(tiny_checkpoints, monkeypatch, kernel):
    """A padded batch: the input checks and the packing share one device-to-host read (a tolist of a
    small tensor), and no layer reads anything. On CUDA the benchmark counts the same with
    torch.cuda.set_sync_debug_mode."""
    if kernel != "groups":  # a stand-in that reads nothing itself (the reference kernel reads cu_seqlens)
        monkeypatch.setitem(varlen.KERNELS, kernel, lambda query, *rest: query.clone())
        monkeypatch.setattr(varlen, "choose_kernel", lambda *args: kernel)
    model = BertModel.from_pretrained(tiny_checkpoints["tiny"])
    inputs = batch_for(masks()["right"], TINY_CONFIGS["tiny"]["vocab_size"], seed=21)
    inputs["token_type_ids"] = torch.zeros_like(inputs["input_ids"])
    tolists = []
    original = torch.Tensor.tolist
    monkeypatch.setattr(torch.Tensor, "tolist", lambda self: tolists.append(self.shape) or original(self))
    counter = HostReads()
    with torch.no_grad(), counter:
        model(**inputs)
    assert counter.reads == [] and len(tolists) == 1, (counter.reads, tolists)
    with pytest.raises(ValueError, match=r"input_ids holds values in \[0, 999\]"):
        model(input_ids=inputs["input_ids"].masked_fill(inputs["input_ids"] == inputs["input_ids"].max(), 999),
              attention_mask=inputs["attention_mask"])
    with pytest.raises(ValueError, match="attention_mask must hold only 1"):
        model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"] * 2)
