"""BertConfig: the numbers that fix a BERT's shape, with transformers' field names and defaults.

A ``config.json`` written by transformers loads here and one written here loads in transformers.
Keys we do not use are kept in ``extra`` so that a load/save round trip loses nothing.
"""

from __future__ import annotations

import dataclasses
import json
import numbers
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Every activation name transformers' BertModel accepts (its ACT2FN table), minus the two
# that carry learned parameters of their own (prelu, xielu); see activations.py for each formula.
from .activations import ACTIVATIONS

ATTENTION_IMPLEMENTATIONS = ("sdpa", "eager")
_TYPE_WORDS = {int: "an int", float: "a float (or an int)", bool: "True or False", str: "a string",
               dict: "a dict", list: "a list"}
CONFIG_NAME = "config.json"
# Checkpoints of these model types share BERT's architecture and tensor names.
BERT_MODEL_TYPES = ("bert",)


@dataclass
class BertConfig:
    """The hyper-parameters of a BERT encoder. Defaults are bert-base's (as in transformers).

    Sizes are counts (tokens, features, layers); probabilities are in [0, 1].
    """

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int | None = 0
    position_embedding_type: str = "absolute"
    use_cache: bool = True
    classifier_dropout: float | None = None
    # Task heads (transformers keeps these on every config): labels and how to score them.
    num_labels: int = 2
    id2label: dict[int, str] | None = None
    label2id: dict[str, int] | None = None
    problem_type: str | None = None
    architectures: list[str] | None = None
    # Which attention to run: "sdpa" (fast, fused) or "eager" (the paper's equations, step by step).
    # A runtime choice, not part of the checkpoint, so it is not written to config.json.
    attn_implementation: str = "sdpa"
    # Keys of a config.json that minibert does not use, kept for the round trip.
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._check_types()
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "max_position_embeddings", "type_vocab_size", "num_labels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                f"({self.num_attention_heads}): each head gets hidden_size / num_attention_heads features"
            )
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(f"unknown hidden_act {self.hidden_act!r}; choose one of {sorted(ACTIVATIONS)}")
        if self.position_embedding_type != "absolute":
            # transformers 5's BertModel has only learned absolute positions (it dropped relative_key*).
            raise ValueError(
                f"position_embedding_type {self.position_embedding_type!r} is not supported; "
                "BERT here (as in transformers 5) uses learned absolute positions: 'absolute'"
            )
        if self.attn_implementation not in ATTENTION_IMPLEMENTATIONS:
            raise ValueError(
                f"attn_implementation must be one of {ATTENTION_IMPLEMENTATIONS}, got {self.attn_implementation!r}"
            )
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout"):
            value = getattr(self, name)
            if value is not None and not (0.0 <= value <= 1.0):
                raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
        if not self.layer_norm_eps > 0:
            raise ValueError(f"layer_norm_eps must be positive, got {self.layer_norm_eps!r}")
        if self.pad_token_id is not None and not (0 <= self.pad_token_id < self.vocab_size):
            raise ValueError(f"pad_token_id {self.pad_token_id} is outside the vocabulary [0, {self.vocab_size})")
        # Labels: as transformers does, id2label decides num_labels when given, else it is made from num_labels.
        if self.id2label is not None:
            self.id2label = {int(key): str(value) for key, value in self.id2label.items()}
            self.num_labels = len(self.id2label)
        else:
            self.id2label = {index: f"LABEL_{index}" for index in range(self.num_labels)}
        if self.label2id is None or len(self.label2id) != self.num_labels:
            self.label2id = {label: index for index, label in self.id2label.items()}
        else:
            self.label2id = {str(key): int(value) for key, value in self.label2id.items()}
        problem_types = (None, "regression", "single_label_classification", "multi_label_classification")
        if self.problem_type not in problem_types:
            raise ValueError(f"problem_type must be one of {problem_types}, got {self.problem_type!r}")

    def _check_types(self) -> None:
        """Each field against its annotation, so that a config.json value of the wrong type ("1e-12")
        fails here, naming the field, not later inside a comparison or a layer.

        As transformers accepts an int where a float is expected (a dropout of 0), so do we; it is
        stored as a float (transformers 5 refuses an int layer_norm_eps in a config.json).
        """
        hints = typing.get_type_hints(type(self))
        for name in self.field_names():
            value = getattr(self, name)
            allowed = typing.get_args(hints[name]) if isinstance(hints[name], types.UnionType) else (hints[name],)
            if value is None and type(None) in allowed:
                continue
            kind = next(typing.get_origin(kind) or kind for kind in allowed if kind is not type(None))
            if kind is float and isinstance(value, numbers.Real) and not isinstance(value, bool):
                setattr(self, name, float(value))
            elif kind is int and isinstance(value, numbers.Integral) and not isinstance(value, bool):
                setattr(self, name, int(value))  # numpy's ints too, which JSON could not write
            elif kind not in (float, int) and isinstance(value, kind):
                pass
            else:
                optional = " or None" if type(None) in allowed else ""
                raise TypeError(f"{name} must be {_TYPE_WORDS.get(kind, kind.__name__)}{optional}, "
                                f"got {type(value).__name__} {value!r}")

    @property
    def head_size(self) -> int:
        """Features per attention head."""
        return self.hidden_size // self.num_attention_heads

    # ---- dict / JSON in and out -------------------------------------------------------------

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)} - {"extra"}

    @classmethod
    def from_dict(cls, values: dict[str, Any], **overrides: Any) -> "BertConfig":
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
            if implementation in ATTENTION_IMPLEMENTATIONS:
                kwargs["attn_implementation"] = implementation
        return cls(**kwargs, extra=extra)

    @classmethod
    def from_json_file(cls, path: str | os.PathLike, **overrides: Any) -> "BertConfig":
        """Read a config.json file."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise OSError(f"no config file at {path}") from None
        try:
            values = json.loads(text)
        except json.JSONDecodeError as error:
            raise OSError(f"{path} is not valid JSON ({error}); is it a config.json?") from None
        if not isinstance(values, dict):
            raise OSError(f"{path} holds a JSON {type(values).__name__}, not an object of config fields")
        return cls.from_dict(values, **overrides)

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **kwargs: Any) -> "BertConfig":
        """Read ``config.json`` from a local directory or a Hugging Face hub id.

        Hub keyword arguments (cache_dir, revision, token, local_files_only) go to huggingface_hub;
        the rest override config fields.
        """
        from .atomic import check_not_interrupted
        from .hub import HUB_ARGUMENTS, resolve_file

        hub = {key: kwargs.pop(key) for key in list(kwargs) if key in HUB_ARGUMENTS}
        check_not_interrupted(name_or_path, CONFIG_NAME)  # a killed save removed it: say so
        return cls.from_json_file(resolve_file(name_or_path, CONFIG_NAME, **hub), **kwargs)

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
        from .atomic import save_files

        return save_files(directory, {CONFIG_NAME: self.write_json}) / CONFIG_NAME

    def write_json(self, path: Path) -> None:
        """Write this config as JSON to ``path`` (no staging: atomic.save_files decides where and when)."""
        path.write_bytes(self.to_json_string().encode("utf-8"))

    def __repr__(self) -> str:
        return f"BertConfig {self.to_json_string()}"
