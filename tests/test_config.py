"""BertConfig: transformers' names and defaults, JSON both ways, validation, every activation."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
import torch

from conftest import transformers
from minibert import BertConfig
from minibert.activations import ACTIVATIONS

SHARED_FIELDS = ["vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                 "hidden_act", "hidden_dropout_prob", "attention_probs_dropout_prob", "max_position_embeddings",
                 "type_vocab_size", "initializer_range", "layer_norm_eps", "pad_token_id", "use_cache",
                 "classifier_dropout", "num_labels", "problem_type"]


def test_defaults_are_transformers_defaults():
    ours, theirs = BertConfig(), transformers.BertConfig()
    for name in SHARED_FIELDS:
        assert getattr(ours, name) == getattr(theirs, name), name
    assert ours.attn_implementation == "sdpa" and ours.position_embedding_type == "absolute"


def test_print_shows_json():
    text = repr(BertConfig(hidden_size=96, num_attention_heads=3))
    assert text.startswith("BertConfig {")
    assert json.loads(text.removeprefix("BertConfig "))["hidden_size"] == 96


def test_unknown_keys_survive_the_round_trip(tmp_path):
    values = {"model_type": "bert", "hidden_size": 64, "num_attention_heads": 4, "gradient_checkpointing": False,
              "transformers_version": "4.8.2", "_name_or_path": "somewhere", "architectures": ["BertModel"]}
    config = BertConfig.from_dict(values)
    assert config.extra["transformers_version"] == "4.8.2" and config.hidden_size == 64
    config.save_pretrained(tmp_path)
    written = json.loads((tmp_path / "config.json").read_text())
    assert {key: written[key] for key in values} == values
    again = BertConfig.from_json_file(tmp_path / "config.json")
    assert again == config
    theirs = transformers.BertConfig.from_pretrained(str(tmp_path))
    assert theirs.hidden_size == 64 and theirs.num_attention_heads == 4


def test_transformers_config_json_loads(tmp_path):
    transformers.BertConfig(hidden_size=48, num_attention_heads=6, hidden_act="gelu_new",
                            id2label={0: "neg", 1: "neutral", 2: "pos"}).save_pretrained(str(tmp_path))
    config = BertConfig.from_pretrained(tmp_path, hidden_dropout_prob=0.0)
    assert config.hidden_act == "gelu_new" and config.num_labels == 3 and config.id2label[2] == "pos"
    assert config.label2id == {"neg": 0, "neutral": 1, "pos": 2} and config.hidden_dropout_prob == 0.0


@pytest.mark.parametrize("values, message", [
    (dict(hidden_size=100, num_attention_heads=12), "divisible by num_attention_heads"),
    (dict(num_hidden_layers=0), "num_hidden_layers must be a positive integer"),
    (dict(vocab_size=-5), "vocab_size must be a positive integer"),
    (dict(hidden_act="gelu_fancy"), "unknown hidden_act 'gelu_fancy'"),
    (dict(position_embedding_type="relative_key"), "position_embedding_type 'relative_key' is not supported"),
    (dict(attn_implementation="flash"), "attn_implementation must be one of"),
    (dict(hidden_dropout_prob=1.5), "hidden_dropout_prob must be a probability"),
    (dict(layer_norm_eps=0), "layer_norm_eps must be positive"),
    (dict(pad_token_id=30522), "pad_token_id 30522 is outside the vocabulary"),
    (dict(problem_type="ranking"), "problem_type must be one of"),
])
def test_validation_messages(values, message):
    with pytest.raises(ValueError, match=message):
        BertConfig(**values)


NUMERIC_AND_BOOL_FIELDS = {"vocab_size": "an int", "hidden_size": "an int", "num_hidden_layers": "an int",
                           "num_attention_heads": "an int", "intermediate_size": "an int",
                           "max_position_embeddings": "an int", "type_vocab_size": "an int", "num_labels": "an int",
                           "pad_token_id": "an int or None", "hidden_dropout_prob": "a float",
                           "attention_probs_dropout_prob": "a float", "initializer_range": "a float",
                           "layer_norm_eps": "a float", "classifier_dropout": "a float", "use_cache": "True or False"}


@pytest.mark.parametrize("name", sorted(NUMERIC_AND_BOOL_FIELDS))
def test_a_string_where_a_number_belongs_names_the_field_and_type(name, tmp_path):
    default = getattr(BertConfig(), name)
    text = "1e-12" if name == "layer_norm_eps" else str(default if default is not None else 0.1)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", name: text}))
    with pytest.raises(TypeError, match=rf"^{name} must be {re.escape(NUMERIC_AND_BOOL_FIELDS[name])}.*got str"):
        BertConfig.from_pretrained(tmp_path)
    with pytest.raises(TypeError, match=rf"^{name} must be"):
        BertConfig(**{name: text})
    with pytest.raises(TypeError, match=rf"^{name} must be"):  # nor a bool for a number, a number for a bool
        BertConfig(**{name: 1 if name == "use_cache" else True})


@pytest.mark.parametrize("values", [dict(hidden_size=7.5), dict(num_labels=2.0), dict(hidden_act=3),
                                    dict(id2label=["neg", "pos"]), dict(architectures="BertModel")])
def test_other_wrong_types(values):
    with pytest.raises(TypeError, match=f"^{next(iter(values))} must be"):
        BertConfig(**values)


def test_ints_where_floats_belong_are_accepted_and_saved_as_floats(tmp_path):
    config = BertConfig(layer_norm_eps=1, hidden_dropout_prob=0, attention_probs_dropout_prob=1, initializer_range=1,
                        classifier_dropout=0)
    config.save_pretrained(tmp_path)
    written = json.loads((tmp_path / "config.json").read_text())
    for name in ("layer_norm_eps", "hidden_dropout_prob", "attention_probs_dropout_prob", "initializer_range",
                 "classifier_dropout"):
        assert isinstance(written[name], float) and written[name] == getattr(config, name), name
    assert transformers.BertConfig.from_pretrained(str(tmp_path)).layer_norm_eps == 1.0  # refuses an int there


def test_not_a_bert_config():
    with pytest.raises(ValueError, match="'roberta' model, not a BERT"):
        BertConfig.from_dict({"model_type": "roberta"})


def test_replace_revalidates():
    with pytest.raises(ValueError, match="divisible"):
        dataclasses.replace(BertConfig(), num_attention_heads=7)


def test_every_activation_transformers_accepts():
    """Same names as transformers' ACT2FN, and the same numbers, bit for bit."""
    from transformers.activations import ACT2FN

    assert set(ACT2FN) - set(ACTIVATIONS) == {"prelu", "xielu"}  # those two carry learned parameters
    x = torch.linspace(-12, 12, 1001)
    for name, function in ACTIVATIONS.items():
        expected = ACT2FN[name](x)
        assert torch.equal(function(x), expected), name
        BertConfig(hidden_act=name)  # accepted
