"""config.json in and out: what ``BertConfig`` inherits for reading and writing transformers' files.

A ``config.json`` written by transformers loads here and one written here loads in transformers.
Keys that minibert does not use are kept in ``extra``, so that a load/save round trip loses nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from .atomic import SaveInProgressError, check_not_interrupted, save_files
from .hub import HUB_ARGUMENTS, resolve_file

CONFIG_NAME = "config.json"
# Checkpoints of these model types share BERT's architecture and tensor names.
BERT_MODEL_TYPES = ("bert",)


class ConfigFile:
    """config.json reading and writing for a dataclass config (BertConfig): fields by name, the rest in
    ``extra``. The config class supplies ``field_names()`` and ``attention_implementations``."""

    @classmethod
    def from_dict(cls, values: dict[str, Any], **overrides: Any) -> Any:
        """Build from a config.json dict; ``overrides`` win. Unknown keys go to ``extra``."""
        if not isinstance(values, dict):
            raise TypeError(f"a config must be a dict, got {type(values).__name__}")
        model_type = values.get("model_type", "bert")
        if model_type not in BERT_MODEL_TYPES:
            raise ValueError(
                f"this config.json describes a {model_type!r} model, not a BERT (model_type 'bert'); "
                "minibert only builds BERT encoders"
            )
        merged = {**values, **overrides}
        if "num_labels" in overrides and "id2label" not in overrides:
            # A new label count (a fresh classifier) replaces the stored label names, as in transformers.
            merged.pop("id2label", None)
            merged.pop("label2id", None)
        known = cls.field_names()
        kwargs = {key: value for key, value in merged.items() if key in known}
        extra = dict(values.get("extra", {}))
        extra.update({key: value for key, value in merged.items() if key not in known and key != "extra"})
        extra.pop("model_type", None)
        # transformers spells the attention choice with a leading underscore in memory.
        if "_attn_implementation" in extra and "attn_implementation" not in kwargs:
            implementation = extra.pop("_attn_implementation")
            if implementation in cls.attention_implementations:
                kwargs["attn_implementation"] = implementation
        return cls(**kwargs, extra=extra)

    @classmethod
    def from_json_file(cls, path: str | os.PathLike, **overrides: Any) -> Any:
        """Read a config.json file."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise OSError(f"no config file at {path}") from None
        return cls.from_json_bytes(data, path, **overrides)

    @classmethod
    def from_json_bytes(cls, data: bytes, source: str | os.PathLike, **overrides: Any) -> Any:
        """Parse config.json's bytes (read from ``source``, which error messages name)."""
        try:
            values = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise OSError(f"{source} is not valid JSON ({error}); is it a config.json?") from None
        if not isinstance(values, dict):
            raise OSError(f"{source} holds a JSON {type(values).__name__}, not an object of config fields")
        return cls.from_dict(values, **overrides)

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **kwargs: Any) -> Any:
        """Read ``config.json`` from a local directory or a Hugging Face hub id.

        Hub keyword arguments (cache_dir, revision, token, local_files_only) go to huggingface_hub;
        the rest override config fields.
        """
        hub = {key: kwargs.pop(key) for key in list(kwargs) if key in HUB_ARGUMENTS}
        data, path = read_config_bytes(name_or_path, **hub)
        return cls.from_json_bytes(data, path, **kwargs)

    def with_overrides(self, **overrides: Any) -> Any:
        """A copy with ``overrides`` applied as ``from_dict`` applies them: a new num_labels replaces
        the label names, as in transformers (``dataclasses.replace`` would keep the old id2label)."""
        return type(self).from_dict({**self.to_dict(), "attn_implementation": self.attn_implementation}, **overrides)

    def to_dict(self) -> dict[str, Any]:
        """The config.json contents: transformers' keys, plus the kept unknown ones."""
        values = {"model_type": "bert", **self.extra}
        for name in sorted(self.field_names() - {"attn_implementation"}):
            values[name] = getattr(self, name)
        values["id2label"] = {str(key): value for key, value in self.id2label.items()}
        if values["architectures"] is None:
            del values["architectures"]
        return values

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``directory/config.json`` atomically; returns its path."""
        return save_files(directory, {CONFIG_NAME: self.write_json}) / CONFIG_NAME

    def write_json(self, path: Path) -> None:
        """Write this config as JSON to ``path`` (no staging: atomic.save_files decides where and when)."""
        path.write_bytes(self.to_json_string().encode("utf-8"))


def read_config_bytes(name_or_path: str | os.PathLike, **hub: Any) -> tuple[bytes, Path]:
    """config.json's bytes and path, from a local directory or a hub id.

    Raises OSError when a killed save removed it, SaveInProgressError while a running save has.
    """
    try:
        path = resolve_file(name_or_path, CONFIG_NAME, **hub)
        return path.read_bytes(), path
    except OSError as error:
        check_not_interrupted(name_or_path, CONFIG_NAME)  # a save removed it: say so
        if Path(name_or_path, CONFIG_NAME).is_file():  # gone for a moment: a save renamed a new one in
            raise SaveInProgressError(f"{name_or_path}/{CONFIG_NAME} was being replaced by a save") from None
        if isinstance(error, FileNotFoundError):
            raise OSError(f"no config file at {error.filename}") from None
        raise


def config_digest(data: bytes) -> str:
    """The sha256 of config.json's bytes: what a save records in its weights file to pair the two."""
    return hashlib.sha256(data).hexdigest()
