"""Loading and saving checkpoints: the name table, the load report, broken files, the hub cache."""

from __future__ import annotations

import json
import logging
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import TINY_CONFIGS, assert_equal, reference_model, transformers
from minibert import BertConfig, BertModel
from minibert.loading.weights import CHECKPOINT_NAMES, CheckpointError, checkpoint_to_minibert, minibert_to_checkpoint

TINY = TINY_CONFIGS["tiny"]


@pytest.fixture
def tiny(tiny_checkpoints, tmp_path):
    """A private copy of the tiny legacy checkpoint, free to break."""
    return shutil.copytree(tiny_checkpoints["tiny"], tmp_path / "tiny")


def ids(seq: int = 6) -> torch.Tensor:
    return torch.arange(1, 2 * seq + 1).reshape(2, seq) % TINY["vocab_size"]


def test_table_maps_every_parameter_both_ways():
    for name in BertModel(BertConfig(**TINY)).state_dict():
        source = minibert_to_checkpoint(name)
        assert source is not None, name
        assert checkpoint_to_minibert(source) == (True, name)
        assert checkpoint_to_minibert("bert." + source.replace("LayerNorm.weight", "LayerNorm.gamma")) == (True, name)
    assert checkpoint_to_minibert("bert.embeddings.position_ids") == (True, None)
    assert all("{}" not in target or "{}" in source for source, target in CHECKPOINT_NAMES.items() if target)


def test_load_report_and_one_warning(tiny, caplog):
    with caplog.at_level(logging.WARNING, logger="minibert"):
        model = BertModel.from_pretrained(tiny)
    report = model.load_report
    assert report.missing == [] and report.dropped == ["bert.embeddings.position_ids"]
    assert len(report.used) == len(model.state_dict())
    assert sorted(report.unused) == sorted(name for name in load_file(tiny / "model.safetensors") if name.startswith("cls."))
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 1 and "cls.predictions.transform.dense.weight" in warnings[0]
    assert not model.training


def test_missing_tensor_is_an_error_naming_it(tiny):
    tensors = load_file(tiny / "model.safetensors")
    del tensors["bert.encoder.layer.1.attention.self.key.bias"]
    save_file(tensors, str(tiny / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"encoder\.layers\.1\.attention\.key\.bias"):
        BertModel.from_pretrained(tiny)
    model = BertModel.from_pretrained(tiny, strict=False)
    assert model.load_report.missing == ["encoder.layers.1.attention.key.bias"]
    assert torch.all(model.encoder.layers[1].attention.key.bias == 0)  # fresh init: biases start at zero
    assert not any(parameter.is_meta for parameter in model.parameters())


def test_wrong_shape_is_an_error_with_both_shapes(tiny):
    tensors = load_file(tiny / "model.safetensors")
    tensors["bert.pooler.dense.weight"] = torch.zeros(32, 31)
    save_file(tensors, str(tiny / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"bert\.pooler\.dense\.weight: expected \(32, 32\).*found \(32, 31\)"):
        BertModel.from_pretrained(tiny)


def test_config_overrides_that_disagree_with_the_weights_fail_clearly(tiny):
    with pytest.raises(CheckpointError, match="wrong shape"):
        BertModel.from_pretrained(tiny, intermediate_size=40)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_broken_safetensors_file(tiny, damage):
    path = tiny / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"\xff" * 64, "empty": b""}[damage])
    with pytest.raises(OSError, match="model.safetensors"):
        BertModel.from_pretrained(tiny)


def test_config_that_is_not_json(tiny):
    (tiny / "config.json").write_text("{ this is not json")
    with pytest.raises(OSError, match="not valid JSON"):
        BertModel.from_pretrained(tiny)


def test_config_of_another_model_type(tiny):
    values = json.loads((tiny / "config.json").read_text())
    values["model_type"] = "gpt2"
    (tiny / "config.json").write_text(json.dumps(values))
    with pytest.raises(ValueError, match="'gpt2' model, not a BERT"):
        BertModel.from_pretrained(tiny)


def test_missing_directory_and_missing_weights(tmp_path):
    with pytest.raises(OSError, match="not a directory"):
        BertModel.from_pretrained(tmp_path / "nowhere")
    (tmp_path / "config.json").write_text(json.dumps(TINY))
    with pytest.raises(OSError, match="has no model.safetensors"):
        BertModel.from_pretrained(tmp_path)


def test_pickle_checkpoint_is_refused_by_default_and_loaded_safely(tiny):
    tensors = load_file(tiny / "model.safetensors")
    (tiny / "model.safetensors").unlink()
    torch.save(tensors, tiny / "pytorch_model.bin")
    with pytest.raises(OSError, match="use_safetensors=False"):
        BertModel.from_pretrained(tiny)
    model = BertModel.from_pretrained(tiny, use_safetensors=False, attn_implementation="eager")
    with torch.no_grad():
        assert_equal(model(ids()).last_hidden_state, reference_model(tiny, "eager")(ids()).last_hidden_state, "bin")


class Exploit:
    def __reduce__(self):
        return (print, ("this code must never run",))


def test_pickle_with_code_is_not_executed(tiny):
    (tiny / "model.safetensors").unlink()
    torch.save({"payload": Exploit()}, tiny / "pytorch_model.bin")
    with pytest.raises(OSError, match="weights_only"):
        BertModel.from_pretrained(tiny, use_safetensors=False)


def test_sharded_checkpoint(tiny):
    tensors = load_file(tiny / "model.safetensors")
    names = sorted(tensors)
    halves = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
              "model-00002-of-00002.safetensors": names[len(names) // 2:]}
    for filename, part in halves.items():
        save_file({name: tensors[name] for name in part}, str(tiny / filename))
    index = {"metadata": {}, "weight_map": {name: file for file, part in halves.items() for name in part}}
    (tiny / "model.safetensors.index.json").write_text(json.dumps(index))
    whole = BertModel.from_pretrained(tiny)
    (tiny / "model.safetensors").unlink()
    sharded = BertModel.from_pretrained(tiny)
    for (name, a), (_, b) in zip(whole.state_dict().items(), sharded.state_dict().items()):
        assert_equal(a, b, name)


def test_save_pretrained_round_trip_through_transformers(tiny, tmp_path):
    ours = BertModel.from_pretrained(tiny, attn_implementation="eager")
    saved = ours.save_pretrained(tmp_path / "saved")
    stored = load_file(saved / "model.safetensors")
    assert not any(name.startswith("bert.") or name.endswith(("gamma", "beta")) for name in stored)
    theirs = transformers.BertModel.from_pretrained(str(saved), attn_implementation="eager").eval()
    for name, tensor in theirs.state_dict().items():
        if name in stored:
            assert_equal(tensor, stored[name], name)
    assert set(stored) == {name for name in theirs.state_dict() if not name.endswith(("position_ids", "token_type_ids"))}
    with torch.no_grad():
        assert_equal(ours(ids()).last_hidden_state, theirs(ids()).last_hidden_state, "after transformers load")
    # ... and back: transformers' own save loads into minibert with nothing missing or unused.
    theirs.save_pretrained(tmp_path / "theirs")
    again = BertModel.from_pretrained(tmp_path / "theirs", attn_implementation="eager")
    assert again.load_report.missing == [] and again.load_report.unused == []
    with torch.no_grad():
        assert_equal(again(ids()).pooler_output, ours(ids()).pooler_output, "after minibert reload")


def test_save_is_atomic(tiny, tmp_path, monkeypatch):
    model = BertModel.from_pretrained(tiny)
    target = model.save_pretrained(tmp_path / "out")
    before = (target / "model.safetensors").read_bytes()

    def failing_save(tensors, filename, metadata=None):
        with open(filename, "wb") as handle:
            handle.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr("safetensors.torch.save_file", failing_save)
    with torch.no_grad():
        model.pooler.dense.bias.add_(1.0)
    with pytest.raises(OSError, match="disk full"):
        model.save_pretrained(target)
    assert (target / "model.safetensors").read_bytes() == before
    assert sorted(path.name for path in target.iterdir()) == ["config.json", "model.safetensors"]


def test_save_over_the_directory_it_was_loaded_from(tiny):
    """The weights are memory-mapped from the file being replaced; the rename keeps them valid."""
    model = BertModel.from_pretrained(tiny)
    with torch.no_grad():
        expected = model(ids()).last_hidden_state
    model.save_pretrained(tiny)
    with torch.no_grad():
        assert_equal(model(ids()).last_hidden_state, expected, "after saving over the source")
        assert_equal(BertModel.from_pretrained(tiny)(ids()).last_hidden_state, expected, "reloaded")


def test_dtype_and_device_arguments(tiny):
    model = BertModel.from_pretrained(tiny, torch_dtype=torch.bfloat16, device="cpu")
    assert {parameter.dtype for parameter in model.parameters()} == {torch.bfloat16}
    with torch.no_grad():
        out = model(ids()).last_hidden_state
    assert out.dtype == torch.bfloat16
    reference = BertModel.from_pretrained(tiny)
    with torch.no_grad():
        torch.testing.assert_close(out.float(), reference(ids()).last_hidden_state, rtol=0.05, atol=0.05)
    with pytest.raises(ValueError, match="unknown dtype"):
        BertModel.from_pretrained(tiny, dtype="float7")
    with pytest.raises(TypeError, match="unexpected keyword"):
        BertModel.from_pretrained(tiny, hidden_sise=3)


def write_hub_cache(cache, source, repo="bert-base-cased", revision="0123456789abcdef0123456789abcdef01234567"):
    """Lay out a Hugging Face hub cache as huggingface_hub itself writes it."""
    root = cache / f"models--{repo.replace('/', '--')}"
    snapshot = root / "snapshots" / revision
    snapshot.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        shutil.copy(source / name, snapshot / name)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(revision)
    return revision


def test_hub_id_from_an_offline_cache(tiny, tmp_path):
    revision = write_hub_cache(tmp_path / "hub", tiny)
    model = BertModel.from_pretrained("bert-base-cased", cache_dir=tmp_path / "hub", attn_implementation="eager")
    pinned = BertModel.from_pretrained("bert-base-cased", cache_dir=tmp_path / "hub", revision=revision)
    with torch.no_grad():
        expected = reference_model(tiny, "eager")(ids()).last_hidden_state
        assert_equal(model(ids()).last_hidden_state, expected, "hub-cache load")
        assert pinned(ids()).last_hidden_state.shape == expected.shape


def test_hub_id_offline_and_not_cached_says_how_to_load(tmp_path):
    with pytest.raises(OSError, match="cannot be reached.*local directory"):
        BertModel.from_pretrained("bert-base-cased", cache_dir=tmp_path / "empty-cache")


def test_auto_dtype_keeps_the_files_dtype(tiny):
    tensors = load_file(tiny / "model.safetensors")
    save_file({name: t.half() if t.is_floating_point() else t for name, t in tensors.items()},
              str(tiny / "model.safetensors"))
    assert BertModel.from_pretrained(tiny, dtype="auto").pooler.dense.weight.dtype == torch.float16
    assert BertModel.from_pretrained(tiny).pooler.dense.weight.dtype == torch.float32


def test_checkpoint_without_pooler_initialises_it(tiny, caplog):
    tensors = load_file(tiny / "model.safetensors")
    save_file({name: t for name, t in tensors.items() if "pooler" not in name}, str(tiny / "model.safetensors"))
    with caplog.at_level(logging.WARNING, logger="minibert"):
        model = BertModel.from_pretrained(tiny)
    assert model.load_report.missing == ["pooler.dense.weight", "pooler.dense.bias"]
    assert torch.all(model.pooler.dense.bias == 0)
    assert any("freshly initialised: pooler.dense.bias, pooler.dense.weight" in r.getMessage() for r in caplog.records)


def test_integer_weights_are_cast_as_transformers_casts_them(tiny, caplog):
    tensors = load_file(tiny / "model.safetensors")
    tensors["bert.pooler.dense.weight"] = torch.arange(32 * 32).reshape(32, 32) % 7 - 3  # int64
    tensors["bert.embeddings.word_embeddings.weight"] = (tensors["bert.embeddings.word_embeddings.weight"] * 100).int()
    save_file(tensors, str(tiny / "model.safetensors"), metadata={"format": "pt"})
    with caplog.at_level(logging.WARNING, logger="minibert"):
        ours = BertModel.from_pretrained(tiny, attn_implementation="eager")
    assert any("bert.pooler.dense.weight (int64)" in r.getMessage() and "word_embeddings.weight (int32)" in r.getMessage()
               for r in caplog.records)
    theirs = reference_model(tiny, "eager")
    assert ours.pooler.dense.weight.dtype == theirs.pooler.dense.weight.dtype == torch.float32
    assert ours.pooler.dense.weight.requires_grad
    assert_equal(ours.pooler.dense.weight, theirs.pooler.dense.weight, "int64 pooler weight")
    assert_equal(ours.embeddings.word_embeddings.weight, theirs.embeddings.word_embeddings.weight, "int32 embeddings")
    with torch.no_grad():
        assert_equal(ours(ids()).pooler_output, theirs(ids()).pooler_output, "forward")
    assert BertModel.from_pretrained(tiny, dtype=torch.bfloat16).pooler.dense.weight.dtype == torch.bfloat16
    save_file({name: t.half() if t.is_floating_point() else t for name, t in tensors.items()},
              str(tiny / "model.safetensors"))
    halves = BertModel.from_pretrained(tiny, dtype="auto")
    assert {parameter.dtype for parameter in halves.parameters()} == {torch.float16}


def refuse_to_build_layers(monkeypatch):
    """Building even one encoder layer fails the test: the check must come before building."""
    def built(*args, **kwargs):
        raise AssertionError("an encoder layer was built before the config was checked against the checkpoint")
    monkeypatch.setattr("minibert.encoder.EncoderLayer.__init__", built)


def test_a_million_layers_fail_before_anything_is_built(tiny, monkeypatch):
    values = json.loads((tiny / "config.json").read_text())
    (tiny / "config.json").write_text(json.dumps({**values, "num_hidden_layers": 1_000_000}))
    refuse_to_build_layers(monkeypatch)
    with pytest.raises(CheckpointError, match=r"num_hidden_layers=1000000 but the checkpoint holds 2 layer\(s\) "
                                              r"\(encoder\.layer\.0\.\.1\)"):
        BertModel.from_pretrained(tiny)


def test_a_hidden_size_that_is_not_the_checkpoints_fails_before_building(tiny, monkeypatch):
    refuse_to_build_layers(monkeypatch)
    with pytest.raises(CheckpointError, match=r"hidden_size=64 but the checkpoint's "
                                              r"bert\.embeddings\.word_embeddings\.weight has shape \(120, 32\)"):
        BertModel.from_pretrained(tiny, hidden_size=64)


def test_fewer_layers_than_the_checkpoint_load_its_first_ones(tiny):
    """As in transformers, num_hidden_layers below the checkpoint's keeps the first layers (the rest unused)."""
    model = BertModel.from_pretrained(tiny, num_hidden_layers=1)
    assert len(model.encoder.layers) == 1
    assert any(name.startswith("bert.encoder.layer.1.") for name in model.load_report.unused)
    more = BertModel.from_pretrained(tiny, num_hidden_layers=3, strict=False)  # the third initialised
    assert more.load_report.missing and all(name.startswith("encoder.layers.2.") for name in more.load_report.missing)


def test_integer_weights_under_auto_in_a_mixed_dtype_checkpoint_get_transformers_dtype(tiny):
    """With dtype="auto" and no dtype in config.json, transformers gives the checkpoint's first floating
    dtype (in file order) to the integer tensors; here that is bfloat16, though most tensors are float32."""
    values = json.loads((tiny / "config.json").read_text())
    (tiny / "config.json").write_text(json.dumps({key: value for key, value in values.items()
                                                  if key not in ("dtype", "torch_dtype")}))
    tensors = load_file(tiny / "model.safetensors")
    first = sorted(name for name, tensor in tensors.items() if tensor.is_floating_point())[0]  # safetensors' order
    tensors[first] = tensors[first].bfloat16()
    tensors["bert.pooler.dense.weight"] = torch.arange(32 * 32).reshape(32, 32) % 7 - 3  # int64
    save_file(tensors, str(tiny / "model.safetensors"), metadata={"format": "pt"})
    theirs = transformers.BertModel.from_pretrained(str(tiny), dtype="auto")
    ours = BertModel.from_pretrained(tiny, dtype="auto")
    assert ours.pooler.dense.weight.dtype == theirs.pooler.dense.weight.dtype == torch.bfloat16
    assert_equal(ours.pooler.dense.weight, theirs.pooler.dense.weight, "int64 pooler weight under auto")
