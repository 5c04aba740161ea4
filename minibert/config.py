"""BertConfig: the numbers that fix a BERT's shape, with transformers' field names and defaults.

Read it in three parts: the fields (bert-base's defaults), the values derived from them, then the
checks that refuse a bad value where it enters. Reading and writing config.json comes from the
base class (loading/config_file.py).
"""

from __future__ import annotations

import dataclasses
import numbers
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar

# Every activation name transformers' BertModel accepts (its ACT2FN table), minus the two
# that carry learned parameters of their own (prelu, xielu); see activations.py for each formula.
from .activations import ACTIVATIONS
from .loading.config_file import ConfigFile

_TYPE_WORDS = {int: "an int", float: "a float (or an int)", bool: "True or False", str: "a string",
               dict: "a dict", list: "a list"}


@dataclass
class BertConfig(ConfigFile):
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

    attention_implementations: ClassVar[tuple[str, ...]] = ("sdpa", "eager")

    @property
    def head_size(self) -> int:
        """Features per attention head."""
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)} - {"extra"}

    # ---- Validation: each value checked where it enters ----------------------------------------

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
        if self.attn_implementation not in self.attention_implementations:
            raise ValueError(
                f"attn_implementation must be one of {self.attention_implementations}, got {self.attn_implementation!r}"
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

    def __repr__(self) -> str:
        return f"BertConfig {self.to_json_string()}"
