"""Task heads against transformers' classes of the same name: outputs, losses and every gradient.

Checkpoints are written here with transformers' skeleton of each class, every tensor re-drawn at
random under the legacy names (bert., gamma/beta, cls.*) that bert-base-cased uses.

Tolerances: eager attention runs transformers' operations in transformers' order, so in float32 on
CPU outputs, losses and gradients must be bit-identical (torch.equal). SDPA may pick other kernels,
and minibert's SDPA path skips padding, which reorders floating-point sums: 1e-5 relative on real
tokens, with an absolute floor of 1e-6 of the largest entry (of the tensor, or of all gradients)
for values that cancel to about zero.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import REPO, TINY_CONFIGS, assert_close, assert_equal, legacy_state_dict, transformers
from minibert import (
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    BertConfig,
    BertForMaskedLM,
    BertForMultipleChoice,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertModel,
)
from minibert.cli import main as cli_main
from minibert.heads import TASK_MODELS
from minibert.loading.weights import CheckpointError, minibert_to_checkpoint
from test_model import random_batch

TINY = dict(TINY_CONFIGS["tiny"], num_labels=3)
IMPLEMENTATIONS = ["eager", "sdpa"]
RTOL = 1e-5


def write_head_checkpoint(directory: Path, class_name: str, config_values: dict, seed: int = 0) -> Path:
    """config.json + model.safetensors of transformers' ``class_name``, random, under legacy names."""
    directory.mkdir(parents=True, exist_ok=True)
    config = transformers.BertConfig(**config_values)
    with torch.device("meta"):
        skeleton = getattr(transformers, class_name)(config)
    save_file(legacy_state_dict(skeleton, seed), str(directory / "model.safetensors"), metadata={"format": "pt"})
    (directory / "config.json").write_text(json.dumps({**config.to_dict(), "architectures": [class_name]}))
    return directory


def config_for(class_name: str) -> dict:
    return dict(TINY, num_labels=2) if class_name == "BertForQuestionAnswering" else TINY


@pytest.fixture(scope="module")
def head_checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("heads")
    return {name: write_head_checkpoint(root / name, name, config_for(name), seed=index)
            for index, name in enumerate(TASK_MODELS)}


def head_inputs(class_name: str, seed: int, implementation: str = "eager") -> dict:
    """A padded batch with sentence pairs and the labels ``class_name`` takes."""
    generator = torch.Generator().manual_seed(seed)
    batch, seq = 4, 9
    if class_name == "BertForMultipleChoice":
        flat = random_batch(TINY, batch=batch * 3, seq=seq, seed=seed)
        inputs = {name: tensor.view(batch, 3, seq) for name, tensor in flat.items()}
        return {**inputs, "labels": torch.randint(0, 3, (batch,), generator=generator)}
    inputs = random_batch(TINY, batch=batch, seq=seq, seed=seed)
    inputs["token_type_ids"] = (torch.arange(seq)[None] >= torch.tensor([[3], [4], [5], [2]])).long()
    padding = inputs["attention_mask"] == 0
    masked = (torch.rand(batch, seq, generator=generator) < 0.3) & ~padding
    masked[0, 1] = True
    token_labels = inputs["input_ids"].masked_fill(~masked, -100)
    sequence_labels = torch.randint(0, 2, (batch,), generator=generator)
    if class_name == "BertForPreTraining":
        return {**inputs, "labels": token_labels, "next_sentence_label": sequence_labels}
    if class_name == "BertForMaskedLM":
        return {**inputs, "labels": token_labels}
    if class_name in ("BertForNextSentencePrediction", "BertForSequenceClassification"):
        return {**inputs, "labels": torch.randint(0, TINY["num_labels"] if "Sequence" in class_name else 2, (batch,),
                                                  generator=generator)}
    if class_name == "BertForTokenClassification":
        labels = torch.randint(0, TINY["num_labels"], (batch, seq), generator=generator)
        return {**inputs, "labels": labels.masked_fill(padding, -100)}
    # Question answering: the last row's answer lies past the input (cut off), so it is ignored. Its loss
    # is a softmax over every position, padding included; minibert's SDPA path computes no padding
    # (zeros there), so for SDPA the batch is unpadded.
    if implementation == "sdpa":
        inputs["attention_mask"] = torch.ones_like(inputs["attention_mask"])
    return {**inputs, "start_positions": torch.tensor([1, 2, 0, seq + 4]), "end_positions": torch.tensor([3, 2, 5, seq + 7])}


def check(actual: torch.Tensor, expected: torch.Tensor, implementation: str, what: str,
          attention_mask: torch.Tensor | None = None, scale: float | None = None) -> None:
    """Bit-identical for eager; for sdpa within RTOL, with an absolute floor of 1e-6 of ``scale``
    (default: the largest entry of ``expected``) for entries that cancel to about zero."""
    if implementation == "eager":
        assert_equal(actual, expected, what)
        return
    if attention_mask is not None:
        real = attention_mask.reshape(-1, attention_mask.size(-1)).bool()  # (rows, seq)
        if actual.shape[:2] == real.shape:
            actual, expected = actual[real], expected[real]  # padding positions: zeros in minibert's sdpa
    floor = 1e-6 * (scale if scale is not None else float(expected.detach().abs().max()))
    assert_close(actual, expected, rtol=RTOL, atol=floor, what=what)


def compare_outputs(ours, theirs, implementation: str, attention_mask: torch.Tensor) -> None:
    assert set(ours.keys()) <= set(theirs.keys()), (ours.keys(), theirs.keys())
    for field in ours.keys():
        actual, expected = ours[field], theirs[field]
        if isinstance(actual, tuple):
            assert len(actual) == len(expected)
            for index, (one, other) in enumerate(zip(actual, expected)):
                check(one, other, implementation, f"{field}[{index}]", attention_mask)
        else:
            check(actual, expected, implementation, field, attention_mask)


def compare_gradients(ours: torch.nn.Module, theirs: torch.nn.Module, implementation: str) -> None:
    """Every parameter's gradient, matched by name through the checkpoint table; every one of theirs is seen."""
    their_parameters = dict(theirs.named_parameters(remove_duplicate=False))
    # Key biases get a zero gradient in exact arithmetic (softmax ignores a shift shared by all keys):
    # theirs and ours are both rounding noise, so the floor is set by the model's largest gradient.
    scale = max(float(parameter.grad.abs().max()) for parameter in theirs.parameters())
    seen = set()
    for name, parameter in ours.named_parameters():
        source = minibert_to_checkpoint(name, ours.checkpoint_base_prefix)
        counterpart = their_parameters[source]
        seen.add(id(counterpart))
        assert parameter.grad is not None and counterpart.grad is not None, name
        check(parameter.grad, counterpart.grad, implementation, f"grad of {name} ({source})", scale=scale)
    assert seen == {id(parameter) for parameter in theirs.parameters()}


def backward_and_compare(ours, theirs, ours_out, theirs_out, implementation: str) -> None:
    """Backward through both losses, then every gradient (see compare_gradients)."""
    ours_out.loss.backward()
    theirs_out.loss.backward()
    compare_gradients(ours, theirs, implementation)


def load_pair(directory: Path, class_name: str, implementation: str, **overrides):
    ours = TASK_MODELS[class_name].from_pretrained(directory, attn_implementation=implementation, **overrides)
    theirs = getattr(transformers, class_name).from_pretrained(str(directory), attn_implementation=implementation,
                                                               **overrides)
    return ours, theirs.eval()


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("class_name", list(TASK_MODELS))
def test_head_outputs_losses_and_gradients(head_checkpoints, class_name, implementation):
    ours, theirs = load_pair(head_checkpoints[class_name], class_name, implementation)
    assert ours.load_report.missing == [] and ours.load_report.unused == []
    inputs = head_inputs(class_name, seed=len(class_name), implementation=implementation)
    options = {"output_hidden_states": True, "output_attentions": implementation == "eager"}
    ours_out, theirs_out = ours(**inputs, **options), theirs(**inputs, **options)
    assert ours_out.loss is not None and ours_out.loss.dim() == 0
    compare_outputs(ours_out, theirs_out, implementation, inputs["attention_mask"])
    backward_and_compare(ours, theirs, ours_out, theirs_out, implementation)


def test_pre_training_heads_at_bert_base_cased_shape(base_cased_checkpoint):
    """The full bert-base-cased shape and names (cls.predictions.*, cls.seq_relationship.*, gamma/beta): eager,
    bit for bit, gradients included."""
    ours, theirs = load_pair(base_cased_checkpoint, "BertForPreTraining", "eager")
    assert ours.load_report.missing == [] and ours.load_report.unused == []
    generator = torch.Generator().manual_seed(12)
    input_ids = torch.randint(1000, 28996, (2, 12), generator=generator)
    inputs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids).index_fill(1, torch.tensor([11]), 0),
              "token_type_ids": (torch.arange(12)[None] >= 6).long().expand(2, 12),
              "labels": input_ids.masked_fill(torch.rand(2, 12, generator=generator) > 0.3, -100),
              "next_sentence_label": torch.tensor([0, 1])}
    ours_out, theirs_out = ours(**inputs), theirs(**inputs)
    compare_outputs(ours_out, theirs_out, "eager", inputs["attention_mask"])
    backward_and_compare(ours, theirs, ours_out, theirs_out, "eager")


@pytest.mark.parametrize("problem", ["regression", "single_label_classification", "multi_label_classification"])
def test_sequence_classification_problem_types(tmp_path, problem):
    """transformers' rule for the loss: one label -> MSE, integer labels -> cross-entropy, else BCE."""
    num_labels = 1 if problem == "regression" else 3
    directory = write_head_checkpoint(tmp_path, "BertForSequenceClassification", dict(TINY, num_labels=num_labels))
    ours, theirs = load_pair(directory, "BertForSequenceClassification", "eager")
    generator = torch.Generator().manual_seed(3)
    inputs = random_batch(TINY, batch=5, seq=7, seed=3)
    labels = {"regression": torch.randn(5, generator=generator),
              "single_label_classification": torch.randint(0, 3, (5,), generator=generator),
              "multi_label_classification": torch.randint(0, 2, (5, 3), generator=generator).float()}[problem]
    ours_out, theirs_out = ours(**inputs, labels=labels), theirs(**inputs, labels=labels)
    assert ours.config.problem_type == theirs.config.problem_type == problem
    assert_equal(ours_out.loss, theirs_out.loss, f"{problem} loss")
    backward_and_compare(ours, theirs, ours_out, theirs_out, "eager")
    saved = ours.save_pretrained(tmp_path / "saved")
    assert json.loads((saved / "config.json").read_text())["problem_type"] == problem


@pytest.mark.parametrize("class_name", list(TASK_MODELS))
def test_save_pretrained_loads_in_transformers_with_nothing_missing(head_checkpoints, tmp_path, class_name):
    ours = TASK_MODELS[class_name].from_pretrained(head_checkpoints[class_name], attn_implementation="eager")
    saved = ours.save_pretrained(tmp_path / "saved")
    theirs, info = getattr(transformers, class_name).from_pretrained(
        str(saved), attn_implementation="eager", output_loading_info=True)
    assert info["missing_keys"] in ([], set()) and info["unexpected_keys"] in ([], set()), info
    assert json.loads((saved / "config.json").read_text())["architectures"] == [class_name]
    inputs = head_inputs(class_name, seed=11)
    with torch.no_grad():
        compare_outputs(ours(**inputs), theirs.eval()(**inputs), "eager", inputs["attention_mask"])
    again = TASK_MODELS[class_name].from_pretrained(saved)
    assert again.load_report.missing == [] and again.load_report.unused == []


def test_head_from_an_encoder_checkpoint_is_initialised_and_said_once(tiny_checkpoints, tmp_path, caplog):
    """A plain BertModel checkpoint has no classifier: it is initialised (normal(0, 0.02), zero bias), one line says so."""
    encoder = BertModel.from_pretrained(tiny_checkpoints["tiny"]).save_pretrained(tmp_path / "encoder")
    with caplog.at_level(logging.WARNING, logger="minibert"):
        model = BertForSequenceClassification.from_pretrained(encoder, num_labels=4)
    fresh = [record.getMessage() for record in caplog.records if "freshly initialised" in record.getMessage()]
    assert len(fresh) == 1 and "classifier.weight" in fresh[0] and "classifier.bias" in fresh[0], fresh
    assert sorted(model.load_report.missing) == ["classifier.bias", "classifier.weight"]
    assert model.classifier.weight.shape == (4, TINY["hidden_size"]) and torch.all(model.classifier.bias == 0)
    assert 0.01 < float(model.classifier.weight.detach().std()) < 0.03
    with torch.no_grad():
        assert model(torch.tensor([[1, 2, 3]])).logits.shape == (1, 4)
    # The encoder itself stays required: a checkpoint missing one of its tensors is still an error.
    (tmp_path / "broken").mkdir()
    tensors = {name: tensor for name, tensor in legacy_state_dict(
        transformers.BertForPreTraining(transformers.BertConfig(**TINY)), 1).items() if "layer.1.output.dense" not in name}
    save_file(tensors, str(tmp_path / "broken" / "model.safetensors"))
    (tmp_path / "broken" / "config.json").write_text(json.dumps(TINY))
    with pytest.raises(CheckpointError, match=r"encoder\.layers\.1\.feed_forward\.output"):
        BertForSequenceClassification.from_pretrained(tmp_path / "broken")


def test_masked_lm_decoder_is_the_word_embedding_matrix(head_checkpoints):
    model = BertForMaskedLM.from_pretrained(head_checkpoints["BertForMaskedLM"])
    names = [name for name, _ in model.named_parameters()]
    assert not any("decoder" in name for name in names) and "mlm_head.bias" in names
    ids = torch.tensor([[1, 5, 9]])
    with torch.no_grad():
        before = model(ids).logits
        model.bert.embeddings.word_embeddings.weight[7] += 1.0  # an output row, not an input token
        after = model(ids).logits
    assert torch.equal(before[..., :7], after[..., :7]) and not torch.equal(before[..., 7], after[..., 7])


def test_fresh_models_initialise_heads_as_transformers():
    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(**TINY))
    assert model.training and torch.all(model.mlm_head.bias == 0) and torch.all(model.mlm_head.transform_norm.weight == 1)
    assert 0.015 < float(model.mlm_head.transform.weight.detach().std()) < 0.025
    assert model.bert.pooler is None  # as transformers: token-level heads have no pooler


def test_shape_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"num_choices"):
        BertForMultipleChoice(BertConfig(**TINY))(torch.tensor([[1, 2, 3]]))
    with pytest.raises(ValueError, match="num_labels must be 2"):
        BertForQuestionAnswering(BertConfig(**TINY))


def test_auto_classes_pick_bert_classes(head_checkpoints):
    directory = head_checkpoints["BertForPreTraining"]
    assert type(AutoModel.from_pretrained(directory)) is BertModel  # as transformers: the bare encoder
    assert type(AutoModelForMaskedLM.from_pretrained(directory)) is BertForMaskedLM
    classifier = AutoModelForSequenceClassification.from_pretrained(directory, num_labels=5)
    assert type(classifier) is BertForSequenceClassification and classifier.classifier.out_features == 5
    assert type(AutoModelForMaskedLM.from_config(BertConfig(**TINY))) is BertForMaskedLM


@pytest.mark.parametrize("values, words", [
    ({"model_type": "roberta", "architectures": ["RobertaForMaskedLM"]}, "'roberta'"),
    ({"architectures": ["GPT2LMHeadModel"], "n_layer": 2}, "GPT2LMHeadModel"),  # older than model_type
])
def test_auto_rejects_a_checkpoint_that_is_not_bert(tmp_path, values, words):
    (tmp_path / "config.json").write_text(json.dumps(values))
    with pytest.raises(ValueError, match=words) as error:
        AutoModelForMaskedLM.from_pretrained(tmp_path)
    assert "not a BERT" in str(error.value)


def fill_mask_directory(directory: Path) -> Path:
    """A tiny BertForMaskedLM with a vocab.txt, whose output bias makes "capital" the likeliest token."""
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "paris", "is", "the", "capital", "of", "france", "."]
    vocabulary = words + [f"word{index}" for index in range(TINY["vocab_size"] - len(words))]
    write_head_checkpoint(directory, "BertForMaskedLM", TINY)
    (directory / "vocab.txt").write_text("\n".join(vocabulary) + "\n")
    tensors = load_file(directory / "model.safetensors")
    tensors["cls.predictions.bias"][vocabulary.index("capital")] = 50.0
    save_file(tensors, str(directory / "model.safetensors"))
    return directory


def test_fill_mask_prints_the_top_k_tokens(tmp_path, capsys):
    pytest.importorskip("minibert.tokenizer")
    directory = fill_mask_directory(tmp_path / "model")
    assert cli_main(["fill-mask", "Paris is the [MASK] of France.", "--model", str(directory), "--top-k", "3"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert len(rows) == 3 and rows[0].split()[1] == "capital", rows
    assert rows[0].endswith("paris is the capital of france.")
    scores = [float(row.split()[0]) for row in rows]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0.99
    assert cli_main(["fill-mask", "[MASK] is the [MASK]", "--model", str(directory), "--top-k", "2"]) == 0
    assert capsys.readouterr().out.count("[MASK] at token") == 2


def test_fill_mask_errors_are_one_line_and_exit_nonzero(tmp_path):
    pytest.importorskip("minibert.tokenizer")
    directory = fill_mask_directory(tmp_path / "model")
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "cache"),
                   "HF_HOME": str(tmp_path / "home"), "PYTHONPATH": str(REPO)}
    for arguments, code, words in [
        (["Paris is the [MASK]."], 2, "cannot load config.json of 'bert-base-cased'"),  # offline, nothing cached
        (["no mask here", "--model", str(directory)], 2, "has no [MASK]"),
    ]:
        result = subprocess.run([sys.executable, "-m", "minibert", "fill-mask", *arguments], capture_output=True,
                                text=True, env=environment, timeout=300)
        assert result.returncode == code and words in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


def test_later_labels_of_another_integer_dtype_keep_the_problem_type(tmp_path):
    """The first labels decide problem_type (int64 -> single-label); uint8 labels later are still
    class indices, as in transformers, which keeps the decided type: the losses stay equal."""
    directory = write_head_checkpoint(tmp_path, "BertForSequenceClassification", dict(TINY, num_labels=3))
    ours, theirs = load_pair(directory, "BertForSequenceClassification", "eager")
    inputs = random_batch(TINY, batch=5, seq=7, seed=4)
    labels = torch.randint(0, 3, (5,), generator=torch.Generator().manual_seed(4))
    for dtype in (torch.long, torch.uint8):
        ours_loss, theirs_loss = ours(**inputs, labels=labels.to(dtype)).loss, theirs(**inputs, labels=labels.to(dtype)).loss
        assert ours.config.problem_type == theirs.config.problem_type == "single_label_classification", dtype
        assert_equal(ours_loss, theirs_loss, f"loss with {dtype} labels")


def test_num_labels_given_with_a_config_replaces_its_label_names(tmp_path):
    """from_pretrained(path, config=cfg, num_labels=3) builds 3 labels, as BertConfig.from_pretrained(path,
    num_labels=3) does: the config's two label names give way (dataclasses.replace kept them)."""
    directory = BertModel(BertConfig(**TINY, id2label={0: "negative", 1: "positive"})).save_pretrained(tmp_path)
    config = BertConfig.from_pretrained(directory)
    assert config.num_labels == 2
    model = BertForSequenceClassification.from_pretrained(directory, config=config, num_labels=3)
    assert model.config.num_labels == 3 and model.classifier.out_features == 3
    assert model.config.id2label == {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}
    assert model.config.id2label == BertConfig.from_pretrained(directory, num_labels=3).id2label
    assert config.num_labels == 2  # the caller's config is not changed
