"""BertConfig: transformers' names and defaults, JSON both ways, validation, every activation."""

from __future__ import annotations

import dataclasses
import json

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
    (dict(hidden_size=7.5), "hidden_size must be a positive integer"),
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
