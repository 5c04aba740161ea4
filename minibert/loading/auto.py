"""AutoModel, done small: read a checkpoint's config.json, check that it is a BERT, build the class.

As in transformers, the Auto class names the task (AutoModelForMaskedLM -> BertForMaskedLM) and the
checkpoint names the architecture family (``model_type``; old configs without one are recognised by
their ``architectures``). minibert has one family, so a checkpoint of any other gets a clear error
instead of a pile of missing tensors.
"""

from __future__ import annotations

import json
import os
from typing import Any

from ..config import BertConfig
from .config_file import CONFIG_NAME
from ..heads import (
    BertForMaskedLM,
    BertForMultipleChoice,
    BertForNextSentencePrediction,
    BertForPreTraining,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
)
from ..model import BertModel
from .pretrained import PreTrainedBert
from .hub import HUB_ARGUMENTS, resolve_file


def check_is_bert(values: dict[str, Any], name_or_path: str | os.PathLike) -> None:
    """Configs older than the model_type field name their family only in ``architectures``; BertConfig
    has already refused a model_type other than BERT's."""
    architectures = values.get("architectures") or []
    if "model_type" not in values and not all(name.startswith("Bert") for name in architectures):
        raise ValueError(
            f"{name_or_path} is not a BERT checkpoint: its config.json has no model_type and names the "
            f"architectures {architectures}. minibert builds BERT encoders only; transformers.AutoModel loads others"
        )


class AutoModel:
    """``AutoModel.from_pretrained(name)`` -> the BERT class for this Auto class's task."""

    model_class: type[PreTrainedBert] = BertModel

    def __init__(self) -> None:
        raise TypeError(f"{type(self).__name__} is not built directly: use {type(self).__name__}.from_pretrained"
                        f"(name_or_path) or .from_config(config)")

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **kwargs: Any) -> PreTrainedBert:
        """Check config.json, then ``model_class.from_pretrained(name_or_path, **kwargs)``."""
        hub = {key: kwargs[key] for key in HUB_ARGUMENTS if key in kwargs}
        path = resolve_file(name_or_path, CONFIG_NAME, **hub)
        BertConfig.from_json_file(path)  # OSError if unreadable, ValueError if another model_type
        check_is_bert(json.loads(path.read_text(encoding="utf-8")), name_or_path)
        return cls.model_class.from_pretrained(name_or_path, **kwargs)

    @classmethod
    def from_config(cls, config: BertConfig) -> PreTrainedBert:
        """A randomly initialised model of this task for ``config``."""
        return cls.model_class(config)


class AutoModelForPreTraining(AutoModel):
    model_class = BertForPreTraining


class AutoModelForMaskedLM(AutoModel):
    model_class = BertForMaskedLM


class AutoModelForNextSentencePrediction(AutoModel):
    model_class = BertForNextSentencePrediction


class AutoModelForSequenceClassification(AutoModel):
    model_class = BertForSequenceClassification


class AutoModelForTokenClassification(AutoModel):
    model_class = BertForTokenClassification


class AutoModelForQuestionAnswering(AutoModel):
    model_class = BertForQuestionAnswering


class AutoModelForMultipleChoice(AutoModel):
    model_class = BertForMultipleChoice
