"""PreTrainedBert: what every minibert model shares. BERT's initialisation, and loading and saving
Hugging Face checkpoints (the name table itself is in weights.py)."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from ..config import BertConfig
from ..fast.conversion import refuse_if_converted
from .atomic import SaveInProgressError, save_files
from .config_file import CONFIG_NAME, config_digest, read_config_bytes
from .dtypes import resolve_dtype
from .hub import HUB_ARGUMENTS, SAFE_WEIGHTS, resolve_weight_files
from .weights import LoadReport, check_config_fits, load_into, weights_writer


# A load that finds config.json and the weights from two saves (one running) tries again this many
# times, sleeping RETRY_SLEEP_S, then twice that, ... (about 0.7 s in all).
LOAD_ATTEMPTS = 8
RETRY_SLEEP_S = 0.02


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

        Weights saved by minibert record the sha256 of the config.json saved with them; a config.json
        that is not that one (a save into the folder is running) is read again, with the weights, a few
        times, then refused with an OSError. ``config=`` skips the check: the caller chose the config.
        """
        hub = {key: kwargs.pop(key) for key in list(kwargs) if key in HUB_ARGUMENTS}
        unknown = set(kwargs) - BertConfig.field_names()
        if unknown:
            raise TypeError(f"from_pretrained got unexpected keyword arguments {sorted(unknown)}")
        dtype = resolve_dtype(dtype if dtype is not None else torch_dtype)
        options = dict(dtype=dtype, device=device, strict=strict, use_safetensors=use_safetensors, hub=hub)
        # A save into the folder may be running: its config.json and weights then come from two saves
        # for a moment. The weights record the config they were saved with; wait and read both again.
        started = time.monotonic()
        for attempt in range(LOAD_ATTEMPTS):
            try:
                return cls._load(name_or_path, config, kwargs, **options)
            except SaveInProgressError as error:
                last = error
                time.sleep(RETRY_SLEEP_S * (attempt + 1))
        raise OSError(
            f"{last}; still so after {LOAD_ATTEMPTS} tries in {time.monotonic() - started:.1f} s. Either saves "
            "into the folder keep running (load after they end), or its config.json and weights come from "
            "different saves (save the model again; if config.json was edited by hand, pass "
            "config=BertConfig.from_pretrained(folder) to use it with these weights anyway)"
        )

    @classmethod
    def _load(cls, name_or_path: str | os.PathLike, config: BertConfig | None, overrides: dict[str, Any], *,
              dtype: torch.dtype | str | None, device: torch.device | str | None, strict: bool,
              use_safetensors: bool, hub: dict[str, Any]):
        """One try of from_pretrained; SaveInProgressError when the files are from two saves."""
        digest = None
        if config is None:
            # The config is parsed from the very bytes whose digest the weights are checked against.
            data, path = read_config_bytes(name_or_path, **hub)
            digest = config_digest(data)
            config = BertConfig.from_json_bytes(data, path, **overrides)
        elif overrides:
            config = config.with_overrides(**overrides)
        files = resolve_weight_files(name_or_path, use_safetensors=use_safetensors, **hub)
        # From the file headers, before building anything.
        check_config_fits(config, files, strict=strict, config_digest=digest)
        # Built on the meta device: no memory, no random init; the checkpoint's tensors are then
        # assigned in place of the empty ones, so the weights exist exactly once.
        with torch.device("meta"), SkipNormalInitOnMeta():
            model = cls(config)
        report = load_into(model, files, strict=strict, dtype=dtype, device=device,
                           fresh_prefixes=cls.fresh_head_prefixes, config_digest=digest)
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
        which then refuses to load (saying so), never new weights under the old config (see loading/atomic.py).
        model.safetensors' metadata records the sha256 of the config.json bytes written beside it, so that a
        load running during the save cannot pair one save's config with the other's weights either.
        A model converted for inference (minibert.quantize, minibert.prepack) is refused before anything is written.
        """
        refuse_if_converted(self)
        config = dataclasses.replace(self.config, architectures=[type(self).__name__])
        # The weights record the digest of these exact config.json bytes, so that a load running
        # alongside a later save can tell a pair of files from two saves (see from_pretrained).
        data = config.to_json_string().encode("utf-8")
        writers = {SAFE_WEIGHTS: weights_writer(self, self.checkpoint_base_prefix, config_digest(data)),
                   CONFIG_NAME: lambda path: path.write_bytes(data)}
        # config.json goes in last: a killed save leaves a folder that refuses to load.
        return save_files(directory, writers, completing=CONFIG_NAME)
