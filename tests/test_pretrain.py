"""``python -m minibert pretrain`` on a tiny model and a tiny corpus, a few steps each:
- an interrupted and resumed run ends with bit for bit the parameters of an unbroken one (torch.equal:
  the same steps on the same rows and masks, from the same optimizer state);
- the saved model loads in transformers' BertForMaskedLM with the same logits (1e-5: transformers'
  attention path against minibert's, the same math in another order);
- the JSON summary, the loss curve and the fill-mask table are there;
- bad input is one line on stderr and exit status 2.
"""

from __future__ import annotations

import json
import random

import pytest
import torch
from safetensors.torch import load_file

from minibert import BertForMaskedLM, BertTokenizer
from minibert.cli.main import main

WORDS = ("return the value of list string object default argument function raise error if is not found new a "
         "an to from in for with this that file name path module class method").split()
TINY = ["--layers", "2", "--hidden", "32", "--heads", "2", "--seq-len", "32", "--batch-size", "8", "--precision",
        "fp32", "--lr", "1e-3", "--threads", "1"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A corpus file of 400 made-up docstring lines and a vocabulary of their words."""
    directory = tmp_path_factory.mktemp("pretrain_corpus")
    rng = random.Random(0)
    lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 14))).capitalize() + "." for _ in range(400)]
    (directory / "corpus.txt").write_text("\n".join(lines) + "\n")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "."] + WORDS
    (directory / "tokenizer").mkdir()
    (directory / "tokenizer" / "vocab.txt").write_text("\n".join(vocab) + "\n")
    return directory


def pretrain(corpus, output, *options):
    return main(["pretrain", "--corpus", str(corpus / "corpus.txt"), "--tokenizer", str(corpus / "tokenizer"),
                 "--output", str(output), *TINY, *options])


def test_resumed_run_equals_unbroken_run(corpus, tmp_path):
    assert pretrain(corpus, tmp_path / "unbroken", "--steps", "6", "--checkpoint-every", "3") == 0
    assert pretrain(corpus, tmp_path / "broken", "--steps", "6", "--checkpoint-every", "3", "--stop-after", "3") == 0
    assert not (tmp_path / "broken" / "model.safetensors").exists()  # stopped as if killed after step 3
    assert pretrain(corpus, tmp_path / "broken", "--steps", "6", "--resume") == 0
    unbroken = load_file(tmp_path / "unbroken" / "model.safetensors")
    resumed = load_file(tmp_path / "broken" / "model.safetensors")
    assert unbroken.keys() == resumed.keys()
    for name, tensor in unbroken.items():
        assert torch.equal(resumed[name], tensor), name


def test_saved_model_loads_in_transformers_and_summary(corpus, tmp_path, capsys):
    transformers = pytest.importorskip("transformers")
    summary_path = tmp_path / "summary.json"
    assert pretrain(corpus, tmp_path / "run", "--steps", "4", "--json", str(summary_path)) == 0
    printed = capsys.readouterr()
    assert "Return the [MASK] of the list." in printed.err + printed.out  # the fill-mask table
    summary = json.loads(summary_path.read_text())
    for key in ("heldout_accuracy", "unigram_accuracy", "heldout_loss", "steps", "tokens", "tokens_per_second",
                "batch_size", "seq_len"):
        assert key in summary, key
    assert summary["steps"] == 4 and summary["batch_size"] == 8 and summary["seq_len"] == 32
    assert 0 < summary["tokens"] <= 4 * 8 * 32
    assert (tmp_path / "run" / "loss_curve.png").stat().st_size > 1000

    tokenizer = BertTokenizer.from_pretrained(tmp_path / "run")
    batch = tokenizer(["Return the value of the list.", "Raise error if not found."], padding=True, return_tensors="pt")
    ours = BertForMaskedLM.from_pretrained(tmp_path / "run").eval()
    theirs = transformers.BertForMaskedLM.from_pretrained(tmp_path / "run").eval()
    with torch.no_grad():
        expected = theirs(**batch).logits
        actual = ours(**batch).logits
    mask = batch["attention_mask"].bool()
    torch.testing.assert_close(actual[mask], expected[mask], rtol=0, atol=1e-5)


@pytest.mark.parametrize("problem, options, message", [
    ("batch", ["--batch-size", "4096"], "too small for the batch"),
    ("seq_len", ["--seq-len", "600"], "over max_position_embeddings"),
    ("mask", [], "[MASK]"),
    ("output", [], "cannot write to the output folder"),
])
def test_bad_input_is_one_line_and_exit_2(corpus, tmp_path, capsys, problem, options, message):
    arguments = ["pretrain", "--corpus", str(corpus / "corpus.txt"), "--tokenizer", str(corpus / "tokenizer"),
                 "--output", str(tmp_path / "out"), "--steps", "1", "--precision", "fp32"]
    if problem == "mask":
        (tmp_path / "nomask").mkdir()
        vocab = (corpus / "tokenizer" / "vocab.txt").read_text().replace("[MASK]\n", "")
        (tmp_path / "nomask" / "vocab.txt").write_text(vocab)
        arguments[arguments.index("--tokenizer") + 1] = str(tmp_path / "nomask")
    if problem == "output":
        (tmp_path / "a_file").write_text("not a folder")
        arguments[arguments.index("--output") + 1] = str(tmp_path / "a_file" / "out")
    assert main(arguments + TINY[:6] + options) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and error.startswith("error: ") and message in error, error


def test_without_a_tokenizer_it_trains_a_vocabulary_on_the_corpus(corpus, tmp_path):
    arguments = ["pretrain", "--corpus", str(corpus / "corpus.txt"), "--vocab-size", "60", "--cache-dir",
                 str(tmp_path / "cache"), "--output", str(tmp_path / "run"), "--steps", "2", *TINY]
    assert main(arguments) == 0
    vocab = (tmp_path / "run" / "vocab.txt").read_text().split()
    assert len(vocab) <= 60 and "[MASK]" in vocab and "r" in vocab
    assert any(len(token.removeprefix("##")) > 1 for token in vocab[5:])  # pieces merged from the corpus
    cached = list((tmp_path / "cache").glob("vocab-60-*/vocab.txt"))
    assert len(cached) == 1 and cached[0].read_text().split() == vocab  # the second run reads it from here
