"""BertModel: embeddings -> encoder -> pooler, plus loading and saving Hugging Face checkpoints."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from .atomic import save_files
from .attention import additive_padding_mask
from .config import CONFIG_NAME, BertConfig
from .embeddings import BertEmbeddings
from .encoder import Encoder
from .inputs import check_inputs
from .conversion import refuse_if_converted
from .unpadded import PackedSequences
from .hub import HUB_ARGUMENTS, SAFE_WEIGHTS, resolve_weight_files
from .weights import LoadReport, check_config_fits, load_into, weights_writer


class ModelOutput:
    """Base of the output dataclasses: ``out.name``, ``out["name"]`` and ``out[0]`` all work.

    As in transformers, integer indexing and iteration skip the fields that are None.
    """

    def to_tuple(self) -> tuple[Any, ...]:
        return tuple(value for value in (getattr(self, f.name) for f in dataclasses.fields(self)) if value is not None)

    def keys(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self) if getattr(self, f.name) is not None]

    def __getitem__(self, key: int | slice | str) -> Any:
        if isinstance(key, str):
            if key not in self.keys():
                raise KeyError(key)
            return getattr(self, key)
        return self.to_tuple()[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.to_tuple())

    def __len__(self) -> int:
        return len(self.to_tuple())


@dataclass
class BertModelOutput(ModelOutput):
    """last_hidden_state (batch, seq, hidden); pooler_output (batch, hidden);
    hidden_states: num_layers + 1 tensors (batch, seq, hidden), the embeddings first;
    attentions: num_layers tensors (batch, heads, seq, seq)."""

    last_hidden_state: torch.Tensor
    pooler_output: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


def init_tensor_(module: nn.Module, name: str, tensor: torch.Tensor, config: BertConfig) -> None:
    """BERT's initialisation of one parameter: normal(0, initializer_range) weights and embeddings
    (padding row zero), zero biases, LayerNorm scale one (as transformers initialises)."""
    with torch.no_grad():
        if name == "bias":
            tensor.zero_()
        elif isinstance(module, nn.LayerNorm):
            tensor.fill_(1.0)
        else:
            tensor.normal_(mean=0.0, std=config.initializer_range)
            if isinstance(module, nn.Embedding) and module.padding_idx is not None:
                tensor[module.padding_idx].zero_()


class SkipNormalInitOnMeta(torch.overrides.TorchFunctionMode):
    """Within this context, normal_ on a meta tensor does nothing (there is nothing to fill).

    nn.Embedding initialises itself with normal_, and on the meta device torch runs that through a
    Python decomposition that imports torch._dynamo: 2 s and 80 MiB for numbers nobody keeps.
    A TorchFunctionMode is per thread, so other threads' initialisation is untouched.
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (nn.init.normal_, torch.Tensor.normal_):
            tensor = args[0] if args else kwargs["tensor"]
            if tensor.is_meta:
                return tensor
        return func(*args, **kwargs)


class PreTrainedBert(nn.Module):
    """What every minibert model shares: initialisation, from_pretrained and save_pretrained."""

    # Where transformers' checkpoints of this class put the encoder's tensors ("bert." for task heads).
    checkpoint_base_prefix = ""
    # Parameters that may be absent from a checkpoint and are then initialised (a task head loaded
    # from a plain encoder checkpoint). Prefixes of minibert names.
    fresh_head_prefixes: tuple[str, ...] = ()
    # Parameters that are another parameter (a tied MLM decoder): never loaded or saved on their own.
    tied_parameter_names: tuple[str, ...] = ()

    config: BertConfig
    load_report: LoadReport | None = None

    def init_weights(self) -> None:
        """Initialise every parameter as BERT does (see init_tensor_)."""
        for module in self.modules():
            for name, parameter in module.named_parameters(recurse=False):
                init_tensor_(module, name, parameter, self.config)
        self.tie_weights()

    def tie_weights(self) -> None:
        """Point tied parameters at their source; heads with a tied decoder override this."""

    def gradient_checkpointing_enable(self) -> None:
        """Recompute activations layer by layer in backward: less memory, about one more forward."""
        for module in self.modules():
            if hasattr(module, "gradient_checkpointing"):
                module.gradient_checkpointing = True

    def gradient_checkpointing_disable(self) -> None:
        for module in self.modules():
            if hasattr(module, "gradient_checkpointing"):
                module.gradient_checkpointing = False

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike,
        *,
        config: BertConfig | None = None,
        torch_dtype: torch.dtype | str | None = None,
        dtype: torch.dtype | str | None = None,
        device: torch.device | str | None = None,
        strict: bool = True,
        use_safetensors: bool = True,
        **kwargs: Any,
    ):
        """Load a Hugging Face BERT checkpoint: a hub id (e.g. "bert-base-cased") or a local directory.

        Keyword arguments that name config fields (attn_implementation="eager", num_labels=3, ...)
        override config.json; cache_dir, revision, token, local_files_only and force_download go to
        huggingface_hub. ``torch_dtype``/``dtype`` converts floating tensors ("auto" keeps the file's).
        """
        hub = {key: kwargs.pop(key) for key in list(kwargs) if key in HUB_ARGUMENTS}
        unknown = set(kwargs) - BertConfig.field_names()
        if unknown:
            raise TypeError(f"from_pretrained got unexpected keyword arguments {sorted(unknown)}")
        if config is None:
            config = BertConfig.from_pretrained(name_or_path, **hub, **kwargs)
        elif kwargs:
            config = dataclasses.replace(config, **kwargs)
        files = resolve_weight_files(name_or_path, use_safetensors=use_safetensors, **hub)
        dtype = _resolve_dtype(dtype if dtype is not None else torch_dtype)
        check_config_fits(config, files, strict=strict)  # from the file headers, before building anything
        # Built on the meta device: no memory, no random init; the checkpoint's tensors are then
        # assigned in place of the empty ones, so the weights exist exactly once.
        with torch.device("meta"), SkipNormalInitOnMeta():
            model = cls(config)
        report = load_into(model, files, strict=strict, dtype=dtype, device=device,
                           fresh_prefixes=cls.fresh_head_prefixes)
        model._materialize_fresh(report.missing, device=device, dtype=dtype)
        model.tie_weights()
        model.load_report = report
        return model.eval()  # as transformers: a loaded model starts in inference mode

    def _materialize_fresh(self, names: list[str], device: torch.device | str | None,
                           dtype: torch.dtype | str | None) -> None:
        """Give the parameters a checkpoint lacked real storage and BERT's initial values."""
        if dtype == "auto":  # as the loaded ones
            dtype = next((p.dtype for p in self.parameters() if not p.is_meta and p.is_floating_point()), None)
        for full_name in names:
            owner_name, _, name = full_name.rpartition(".")
            owner = self.get_submodule(owner_name)
            old = getattr(owner, name)
            fresh = torch.empty(old.shape, dtype=dtype or torch.get_default_dtype(), device=device or "cpu")
            init_tensor_(owner, name, fresh, self.config)
            if isinstance(old, nn.Parameter):
                setattr(owner, name, nn.Parameter(fresh, requires_grad=old.requires_grad))
            else:
                setattr(owner, name, fresh)

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write config.json and model.safetensors under transformers' names, all or nothing.

        transformers' ``from_pretrained`` of the matching class loads the result with nothing missing.
        A save that fails leaves the old files; one killed midway may leave a folder without config.json,
        which then refuses to load (saying so), never new weights under the old config (see atomic.py).
        A model converted for inference (minibert.quantize, minibert.prepack) is refused before anything is written.
        """
        refuse_if_converted(self)
        config = dataclasses.replace(self.config, architectures=[type(self).__name__])
        # config.json goes in last: the weights never meet a config they were not saved with.
        writers = {SAFE_WEIGHTS: weights_writer(self, self.checkpoint_base_prefix), CONFIG_NAME: config.write_json}
        return save_files(directory, writers, completing=CONFIG_NAME)


# Short names as the command line and benchmarks write them; torch's own names work too.
DTYPE_NAMES = {"fp64": torch.float64, "fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def parse_dtype(name: str) -> torch.dtype:
    """'fp32', 'bf16', 'fp16', 'fp64', or a torch name of a floating dtype ('float32', 'torch.bfloat16')."""
    key = str(name).strip().lower().removeprefix("torch.")
    resolved = DTYPE_NAMES.get(key, getattr(torch, key, None))
    if not isinstance(resolved, torch.dtype) or not resolved.is_floating_point:
        raise ValueError(f"unknown dtype {name!r}; use fp32, bf16, fp16, fp64 or a torch dtype such as torch.float32")
    return resolved


def _resolve_dtype(dtype: torch.dtype | str | None) -> torch.dtype | str | None:
    """A torch.dtype, "auto" (the checkpoint's own) or None (float32)."""
    if dtype is None or dtype == "auto" or isinstance(dtype, torch.dtype):
        return dtype
    return parse_dtype(dtype)


class Pooler(nn.Module):
    """The [CLS] token's final state through a dense layer and tanh: a sentence-level vector."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """(batch, seq, hidden) -> (batch, hidden)."""
        return torch.tanh(self.dense(hidden[:, 0]))  # (batch, hidden)


class BertModel(PreTrainedBert):
    """The BERT encoder. ``BertModel(config)`` is randomly initialised; see ``from_pretrained``."""

    # A masked-LM checkpoint has no pooler; as transformers does, it is then initialised (and said so).
    fresh_head_prefixes = ("pooler.",)

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True) -> None:
        super().__init__()
        if not isinstance(config, BertConfig):
            raise TypeError(f"BertModel needs a BertConfig, got {type(config).__name__}")
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = Encoder(config)
        self.pooler = Pooler(config) if add_pooling_layer else None
        if not any(parameter.is_meta for parameter in self.parameters()):
            self.init_weights()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> BertModelOutput:
        """Encode a batch. input_ids (batch, seq) int, or inputs_embeds (batch, seq, hidden).

        attention_mask (batch, seq): 1 for tokens, 0 for padding. token_type_ids (batch, seq):
        segment A = 0, B = 1. position_ids (batch, seq) or (1, seq): defaults to 0..seq-1.

        With SDPA (the default) a padded batch runs unpadded: only the real tokens are computed
        (unpadded.py), and the padding positions of last_hidden_state and hidden_states are zeros.
        A batch with a row whose first position is padding (left padding, an all-padding row) runs
        padded instead, because the pooler reads position 0 and transformers computes it there. The
        eager path, and any call with output_attentions, computes every position as transformers does.
        """
        checked = check_inputs(self.config, input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds)
        batch, seq, device = checked.batch, checked.seq, checked.device
        if token_type_ids is None:
            token_type_ids = torch.zeros((batch, seq), dtype=torch.long, device=device)
        if position_ids is None:
            position_ids = torch.arange(seq, device=device)[None]  # (1, seq)
        packing = None
        pooler_reads_padding = not checked.first_positions_real and self.pooler is not None
        if (checked.has_padding and not pooler_reads_padding and self.config.attn_implementation == "sdpa"
                and not output_attentions):
            # Skip the padding instead of computing it: from here on, the real tokens only.
            packing = PackedSequences.from_lengths(attention_mask, checked.lengths, checked.row_lengths)
            input_ids, token_type_ids, position_ids, inputs_embeds = (
                None if tensor is None else packing.pack(tensor)  # (total_tokens, ...)
                for tensor in (input_ids, token_type_ids, position_ids, inputs_embeds)
            )
        hidden = self.embeddings(input_ids, token_type_ids, position_ids, inputs_embeds)  # (batch, seq, hidden)
        # ... or (total_tokens, hidden) when packed: the embeddings, too, are computed per token.
        additive_mask = None
        # No padding, no mask: the kernels run faster without one and the numbers are the same.
        if checked.has_padding and packing is None:
            additive_mask = additive_padding_mask(attention_mask, hidden.dtype)  # (batch, 1, 1, seq)
        last, all_hidden, all_probs = self.encoder(hidden, additive_mask, output_attentions, output_hidden_states,
                                                   packing)
        if packing is not None:
            last = packing.unpack(last)  # (batch, seq, hidden), zeros at the padding
            all_hidden = None if all_hidden is None else tuple(packing.unpack(state) for state in all_hidden)
        pooled = self.pooler(last) if self.pooler is not None else None
        return BertModelOutput(last, pooled, all_hidden, all_probs)
