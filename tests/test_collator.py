"""The masked-LM collator against transformers' DataCollatorForLanguageModeling: the same seed (or the
same global torch seed) and the same examples give identical input_ids and labels (torch.equal: the
same draws from the same generator), with and without whole-word masking and pad_to_multiple_of."""

from __future__ import annotations

import pytest
import torch

from minibert import BertTokenizer, DataCollatorForLanguageModeling

transformers = pytest.importorskip("transformers")

TEXTS = ["Return the length of the list.", "Raise ValueError if the value is not found.",
         "Unbearably unreadable docstrings.", "a b", "Convert a string to bytes, using the codec registered for "
         "encoding and return the result as an object."]
WORDS = sorted(set(" ".join(TEXTS[:2] + TEXTS[3:]).lower().replace(".", " . ").replace(",", " , ").split()))
PIECES = [  # the third text becomes pieces of words
    "un", "##bear", "##ably", "##read", "##able", "doc", "##string", "##s"]


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    directory = tmp_path_factory.mktemp("collator_vocab")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS + PIECES
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n")
    ours = BertTokenizer(directory / "vocab.txt")
    reference = transformers.BertTokenizerFast.from_pretrained(str(directory))
    assert ours(TEXTS)["input_ids"] == reference(TEXTS)["input_ids"]
    return ours, reference


def examples(tokenizer, texts=TEXTS, **options):
    encoded = tokenizer(texts, **options)
    return [{name: encoded[name][index] for name in encoded} for index in range(len(texts))]


def compare(ours, reference, rows, **options):
    """Run both collators on copies of ``rows``; return our batch after checking it equals theirs."""
    mine = DataCollatorForLanguageModeling(ours, **options)(rows)
    theirs = transformers.DataCollatorForLanguageModeling(reference, **options)([dict(row) if isinstance(row, dict) else list(row)
                                                                          for row in rows])
    for name in theirs:  # lists of ids get no attention_mask from transformers; ours always has one
        assert torch.equal(mine[name], theirs[name]), (name, options)
    return mine


@pytest.mark.parametrize("pad_to_multiple_of", [None, 8])
def test_the_same_seed_gives_transformers_batch(tokenizers, pad_to_multiple_of):
    ours, reference = tokenizers
    rows = examples(ours)
    for seed in range(40):
        options = dict(seed=seed, mlm_probability=0.4, pad_to_multiple_of=pad_to_multiple_of)
        batch = compare(ours, reference, rows, **options)
        if pad_to_multiple_of:
            assert batch["input_ids"].shape[1] % pad_to_multiple_of == 0


def test_the_global_seed_and_other_probabilities(tokenizers):
    ours, reference = tokenizers
    rows = examples(ours)
    for seed in range(20):
        options = dict(mlm_probability=0.5, mask_replace_prob=0.5, random_replace_prob=0.3)
        torch.manual_seed(seed)
        mine = DataCollatorForLanguageModeling(ours, **options)(rows)
        torch.manual_seed(seed)
        theirs = transformers.DataCollatorForLanguageModeling(reference, **options)(rows)
        assert torch.equal(mine["input_ids"], theirs["input_ids"]) and torch.equal(mine["labels"], theirs["labels"])


def test_whole_word_masking_and_lists_of_ids(tokenizers):
    ours, reference = tokenizers
    # transformers pads no offsets, so its whole-word path needs rows of one length.
    rows = examples(ours, padding="max_length", max_length=24, return_offsets_mapping=True)
    rows = [{**row, "offset_mapping": [tuple(pair) for pair in row["offset_mapping"]]} for row in rows]
    spread = 0
    for seed in range(30):
        batch = compare(ours, reference, rows, seed=seed, whole_word_mask=True, mlm_probability=0.3)
        spread += int((batch["labels"][2, 1:4] != -100).sum() in (1, 2))  # "un ##bear ##ably": all or none
    assert spread == 0, "a word was masked in part"
    plain = [row["input_ids"] for row in examples(ours)]
    for seed in range(10):
        compare(ours, reference, plain, seed=seed)


def test_special_tokens_and_padding_are_never_chosen(tokenizers):
    ours, _ = tokenizers
    batch = DataCollatorForLanguageModeling(ours, mlm_probability=1.0, seed=0)(examples(ours))
    original = DataCollatorForLanguageModeling(ours, mlm_probability=0.0, seed=0)(examples(ours))["input_ids"]
    special = torch.isin(original, torch.tensor(sorted(ours.all_special_ids)))
    assert (batch["labels"][special] == -100).all()
    assert (batch["labels"][~special] == original[~special]).all()  # every other token was chosen


def test_bad_arguments(tokenizers):
    ours, _ = tokenizers
    with pytest.raises(ValueError, match="should not exceed 1"):
        DataCollatorForLanguageModeling(ours, mask_replace_prob=0.8, random_replace_prob=0.3)
    with pytest.raises(ValueError, match="offset_mapping"):
        DataCollatorForLanguageModeling(ours, whole_word_mask=True)(examples(ours))
