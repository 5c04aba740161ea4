"""What the loader tells a reader: the rules behind each name, and LoadReport's short repr."""

from __future__ import annotations

from minibert import BertModel
from minibert.loading.weights import LoadReport, NameMapping, explain_checkpoint_name, group_names


def test_explain_names_each_rule_in_order():
    assert explain_checkpoint_name("bert.encoder.layer.7.attention.output.LayerNorm.gamma") == NameMapping(
        "bert.encoder.layer.7.attention.output.LayerNorm.gamma", True, "encoder.layers.7.attention_norm.weight",
        ("'bert.' prefix", "gamma -> weight", "table 'encoder.layer.{}.attention.output.LayerNorm'"))
    assert explain_checkpoint_name("pooler.dense.bias").rules == ("table 'pooler.dense'",)
    dropped = explain_checkpoint_name("cls.predictions.decoder.weight")
    assert dropped.dropped and dropped.target is None
    assert dropped.rules == ("table 'cls.predictions.decoder.weight' -> None (dropped on purpose)",)
    unknown = explain_checkpoint_name("bert.encoder.layer.0.crossattention.self.query.weight")
    assert (unknown.known, unknown.target, unknown.rules) == (False, None, ("'bert.' prefix",))


def test_group_names():
    assert group_names(["cls.predictions.bias", "cls.seq_relationship.weight", "bert.pooler.dense.weight",
                        "bert.pooler.dense.bias", "bert.embeddings.position_ids", "classifier.weight"]) == \
        ["cls.*", "bert.pooler.*", "bert.embeddings.position_ids", "classifier.weight"]


def test_load_report_repr_is_short(tiny_checkpoints):
    report = BertModel.from_pretrained(tiny_checkpoints["tiny"]).load_report
    assert repr(report) == "LoadReport(used=39, dropped=1 (bert.embeddings.position_ids), unused=7 (cls.*), missing=0)"
    assert str(LoadReport()) == "LoadReport(used=0, dropped=0, unused=0, missing=0)"
    assert len(report.unused) == 7  # the lists themselves are unchanged
