"""A vocab.txt with repeated lines: the count and the ids are transformers' (the last line of a token wins)."""

from __future__ import annotations

from conftest import transformers
from minibert import BertTokenizer

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def test_repeated_vocab_lines_count_once_and_the_last_id_wins(tmp_path):
    lines = [*SPECIALS, "hello", "world", "##s", "hello", "a", "world", "b", "[UNK]"]
    (tmp_path / "vocab.txt").write_text("\n".join(lines) + "\n")
    ours = BertTokenizer.from_pretrained(tmp_path)
    theirs = transformers.BertTokenizer.from_pretrained(str(tmp_path))
    assert len(ours) == len(theirs) == len(set(lines)) == 10
    assert ours.vocab_size == theirs.vocab_size
    text = "hello worlds a b unknown"
    assert ours(text)["input_ids"] == theirs(text)["input_ids"] == [2, 8, 10, 7, 9, 11, 12, 3]
    assert ours.convert_tokens_to_ids(["hello", "world", "[UNK]"]) == theirs.convert_tokens_to_ids(["hello", "world", "[UNK]"])
    assert ours.unk_token_id == theirs.unk_token_id == 12
    # Saved as read, so that every id keeps its line.
    ours.save_pretrained(tmp_path / "saved")
    assert (tmp_path / "saved" / "vocab.txt").read_text() == (tmp_path / "vocab.txt").read_text()
