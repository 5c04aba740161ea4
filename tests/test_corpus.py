"""The docstring corpus: paragraphs read from source, a held-out split fixed by checksum."""

from minibert.pretraining.corpus import docstring_paragraphs, is_held_out, split_corpus, stdlib_source_files


def test_paragraphs_come_from_docstrings_only(tmp_path):
    source = tmp_path / "module.py"
    source.write_text('"""A module about five words long.\n\n   Second    paragraph has words five.\n\nshort"""\n'
                      'x = "not a docstring at all, five words"\n'
                      'def f():\n    """Return the sum of the list."""\n', encoding="utf-8")
    (tmp_path / "broken.py").write_text("def (:\n", encoding="utf-8")
    paragraphs = docstring_paragraphs(sorted(tmp_path.glob("*.py")))
    assert paragraphs == ["A module about five words long.", "Return the sum of the list.",
                          "Second paragraph has words five."]


def test_stdlib_corpus_leaves_out_tests_and_splits_by_checksum():
    files = stdlib_source_files()
    assert files and not any("test" in path.parts for path in files)
    sample = docstring_paragraphs(files[:40])
    train, held_out = split_corpus(sample)
    assert sorted(train + held_out) == sample and not set(train) & set(held_out)
    assert all(is_held_out(paragraph) for paragraph in held_out)
    assert is_held_out("x") == is_held_out("x")  # a checksum, not a random draw
