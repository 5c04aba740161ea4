"""minibert's WordPiece trainer against transformers' train_new_from_iterator (the Rust WordPieceTrainer).

The reference is not deterministic: it numbers the "##" pieces in hash-map order, and those numbers
break ties between equally frequent pairs, so each run can give a different vocabulary. Two kinds of
checks follow from that:

- the rules, exactly: given the "##" order that one reference run happened to use, minibert's merge
  loop reproduces that run token for token (``replay``); and everything before the "##" pieces
  (special tokens, alphabet) is identical to every run;
- the result, by the reference's own spread over several runs: the overlap (Jaccard) with each run is
  at least that of the two least similar runs, the size lies within the runs' range, and the token
  count on held-out text within the runs' range +- 0.1%.

minibert itself is deterministic (checked across processes with different PYTHONHASHSEED).
"""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from minibert.pretraining.corpus import docstring_paragraphs, split_corpus
from minibert.tokenizer import BasicTokenizer, BertTokenizer
from minibert.tokenizer.trainer import PREFIX, count_words, initial_vocabulary, merge_pairs

from conftest import REPO

transformers = pytest.importorskip("transformers")

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
RUNS = 4  # reference runs per corpus for the exact rules; the spread takes SPREAD_RUNS, then MORE_RUNS
SPREAD_RUNS, MORE_RUNS = 8, 16

ENGLISH = [
    "The quick brown fox jumps over the lazy dog.", "Tokenizers split words into pieces; pieces make words.",
    "A tokenizer's vocabulary is learned from text: the most frequent pairs are merged first.",
    "Merging pairs again and again builds longer and longer pieces, until the vocabulary is full.",
    "Rare words split into several pieces, frequent words stay whole.", "Hello, hello, HELLO! Héllo wörld.",
]
MULTILINGUAL = [
    "한국어 텍스트를 처리하는 것은 재미있다. 한국어 단어는 조사와 함께 쓰인다.", "東京は日本の首都です。北京是中国的首都。",
    "Café, naïve, façade, crème brûlée; Ünïcödé and Straße.", "Emoji 🤗🤗 and 😀😀😀 appear in text too 🤗.",
    "ΣΊΣΥΦΟΣ and Σίσυφος; Москва и москвичи; القاهرة", "caféine, cafés, naïveté, résumé, résumés",
] * 3


def random_unicode_texts(seed: int, count: int = 120) -> list[str]:
    """Seeded texts of random code points (letters, marks, CJK, emoji, controls, spaces)."""
    rng = random.Random(seed)
    ranges = [(0x20, 0x7F), (0xA0, 0x250), (0x300, 0x370), (0x370, 0x400), (0x3040, 0x30FF), (0x4E00, 0x4E80),
              (0xAC00, 0xAC80), (0x1F600, 0x1F640), (0x0, 0x20)]
    texts = []
    for _ in range(count):
        words = ["".join(chr(rng.randrange(*rng.choice(ranges))) for _ in range(rng.randrange(1, 8)))
                 for _ in range(rng.randrange(1, 12))]
        texts.append(" ".join(words))
    return texts


@pytest.fixture(scope="module")
def vocab_file(tmp_path_factory) -> Path:
    """A vocabulary of the five special tokens, [MASK] before [CLS] so that id order is not name order."""
    path = tmp_path_factory.mktemp("trainer") / "vocab.txt"
    path.write_text("\n".join(["[PAD]", "[UNK]", "[MASK]", "[SEP]", "[CLS]", "a", "b"]) + "\n", encoding="utf-8")
    return path


def reference_runs(vocab_file: Path, texts: list[str], vocab_size: int, lower: bool = True, runs: int = RUNS,
                   **options) -> list[list[str]]:
    """``runs`` vocabularies (tokens in id order) from transformers' train_new_from_iterator."""
    old = transformers.BertTokenizerFast(str(vocab_file), do_lower_case=lower)
    result = []
    for _ in range(runs):
        new = old.train_new_from_iterator(texts, vocab_size, show_progress=False, **options)
        result.append([token for token, _ in sorted(new.get_vocab().items(), key=lambda item: item[1])])
    return result


def ours(vocab_file: Path, texts: list[str], vocab_size: int, lower: bool = True, **options) -> list[str]:
    old = BertTokenizer(vocab_file, do_lower_case=lower)
    return old.train_new_from_iterator(texts, vocab_size, show_progress=False, **options).id_to_token


def replay(texts: list[str], vocab_size: int, lower: bool, run: list[str], min_frequency: int = 0,
           limit_alphabet: int | None = None, initial_alphabet=(), alphabet_ties: bool = False) -> list[str]:
    """minibert's merge loop, started from the initial vocabulary of reference ``run``: its "##" pieces in
    the order that run gave them. That start is first checked against minibert's own: the same special
    tokens and alphabet, in the same order (with ``alphabet_ties``, limit_alphabet falls among equally
    frequent characters, which the reference keeps by chance: then only the alphabet's size must agree)."""
    word_counts = count_words(texts, BasicTokenizer(lower).tokenize)
    start = initial_vocabulary(word_counts, ["[PAD]", "[UNK]", "[MASK]", "[SEP]", "[CLS]"], limit_alphabet,
                               initial_alphabet)
    plain = [token for token in start if not _is_continued_char(token)]
    if not alphabet_ties:
        assert run[:len(plain)] == plain, "special tokens or alphabet differ"
        assert set(run[len(plain):len(start)]) == set(start[len(plain):]), "a different set of ## pieces"
    continued = len(plain)
    while continued < len(run) and _is_continued_char(run[continued]):
        continued += 1
    return merge_pairs(word_counts, run[:continued], vocab_size, min_frequency)


def _is_continued_char(token: str) -> bool:
    return len(token) == len(PREFIX) + 1 and token.startswith(PREFIX)


# ---- the rules, exactly ------------------------------------------------------------------------

RULE_CASES = {
    "english uncased": (ENGLISH, 120, True, {}),
    "english cased": (ENGLISH, 120, False, {}),
    "multilingual cased": (MULTILINGUAL, 200, False, {}),
    "multilingual uncased": (MULTILINGUAL, 200, True, {}),
    "random unicode": (random_unicode_texts(0), 900, True, {}),
    "min_frequency": (ENGLISH * 2, 1000, True, {"min_frequency": 4}),  # a pair seen exactly 4 times is merged
    "limit_alphabet": (MULTILINGUAL, 150, False, {"limit_alphabet": 22}),  # no tie at the limit
    "limit_alphabet among ties": (MULTILINGUAL, 150, False, {"limit_alphabet": 30, "alphabet_ties": True}),
    "initial_alphabet": (ENGLISH, 100, True, {"initial_alphabet": ["z", "Ж", "xyz"], "limit_alphabet": 22}),
    "vocab below the alphabet": (MULTILINGUAL, 10, False, {}),
    "runs out of merges": (ENGLISH, 5000, True, {}),
}


@pytest.mark.parametrize("case", RULE_CASES)
def test_replaying_the_references_order_reproduces_each_run(vocab_file, case):
    texts, vocab_size, lower, options = RULE_CASES[case]
    reference_options = {name: value for name, value in options.items() if name != "alphabet_ties"}
    for run in reference_runs(vocab_file, texts, vocab_size, lower, **reference_options):
        assert replay(texts, vocab_size, lower, run, **options) == run


def test_limit_alphabet_keeps_the_most_frequent_and_among_ties_the_lowest_code_points(vocab_file):
    """30 of MULTILINGUAL's characters: 22 seen more than 6 times, then 8 of the 16 seen 6 times. The
    reference picks those 8 by chance; minibert takes the 8 lowest code points, one of its outcomes."""
    frequency: dict[str, int] = {}
    for word, count in count_words(MULTILINGUAL, BasicTokenizer(False).tokenize).items():
        for char in word:
            frequency[char] = frequency.get(char, 0) + count
    frequent = {char for char, seen in frequency.items() if seen > 6}
    tied = sorted(char for char, seen in frequency.items() if seen == 6)
    assert (len(frequent), len(tied)) == (22, 16)
    for tokens in reference_runs(vocab_file, MULTILINGUAL, 40, False, limit_alphabet=30) + [
            ours(vocab_file, MULTILINGUAL, 40, False, limit_alphabet=30)]:
        kept = set(tokens[5:35])
        assert frequent <= kept and kept - frequent <= set(tied) and len(kept) == 30
    assert set(ours(vocab_file, MULTILINGUAL, 40, False, limit_alphabet=30)[5:35]) == frequent | set(tied[:8])


# ---- the API --------------------------------------------------------------------------------

def test_new_tokenizer_keeps_settings_and_special_tokens(vocab_file):
    old = BertTokenizer(vocab_file, do_lower_case=False, strip_accents=True, tokenize_chinese_chars=False,
                        model_max_length=64)
    new = old.train_new_from_iterator(ENGLISH, 100, show_progress=False)
    assert (new.do_lower_case, new.strip_accents, new.tokenize_chinese_chars, new.model_max_length) == (
        False, True, False, 64)
    assert new.id_to_token[:5] == ["[PAD]", "[UNK]", "[MASK]", "[SEP]", "[CLS]"]  # in the old ids' order
    tokens = new.tokenize("Hello [MASK] wörld")  # cased, accents stripped, [MASK] whole
    assert tokens[:2] == ["Hello", "[MASK]"] and new.convert_tokens_to_string(tokens[2:]) == "world"
    assert len(new) == 100


def test_bad_input_is_refused(vocab_file):
    old = BertTokenizer(vocab_file)
    for texts, error in [([], "is empty"), (["", "  "], "no words"), ("some text", "single string"),
                         (["ok", 3], "got int"), ([["ok"], [None]], "got NoneType"), (iter([]), "is empty")]:
        with pytest.raises((ValueError, TypeError), match=error):
            old.train_new_from_iterator(texts, 100, show_progress=False)
    for size, error in [(0, ValueError), (-1, ValueError), (2.5, TypeError), ("100", TypeError), (None, TypeError),
                        (True, TypeError)]:
        with pytest.raises(error, match="vocab_size"):
            old.train_new_from_iterator(ENGLISH, size, show_progress=False)
    with pytest.raises(ValueError, match="min_frequency"):
        old.train_new_from_iterator(ENGLISH, 100, min_frequency=-1, show_progress=False)
    with pytest.raises(TypeError, match="unexpected keyword"):
        old.train_new_from_iterator(ENGLISH, 100, vocabulary_size=3)
    with pytest.raises(TypeError, match="got int"):
        old.train_new_from_iterator(5, 100)
    with pytest.raises(TypeError, match="not one string"):
        old.train_new_from_iterator(ENGLISH, 100, new_special_tokens="[X]")
    with pytest.raises(TypeError, match="initial_alphabet"):
        old.train_new_from_iterator(ENGLISH, 100, initial_alphabet=[1], show_progress=False)


def test_batches_new_and_renamed_special_tokens_and_saving(vocab_file, tmp_path):
    """Batches (lists of texts) count as their texts; renamed and new special tokens take the places the
    reference gives them, stay whole in text, and survive save_pretrained for both libraries."""
    old = BertTokenizer(vocab_file)
    new = old.train_new_from_iterator([ENGLISH[:3], ENGLISH[3:]], 150, new_special_tokens=["[NEW]"],
                                      special_tokens_map={"[CLS]": "<cls>"}, show_progress=False)
    assert new.id_to_token == ours(vocab_file, ENGLISH, 150, new_special_tokens=["[NEW]"],
                                   special_tokens_map={"[CLS]": "<cls>"})
    reference = reference_runs(vocab_file, ENGLISH, 150, runs=1, new_special_tokens=["[NEW]"],
                               special_tokens_map={"[CLS]": "<cls>"})[0]
    assert new.id_to_token[:6] == reference[:6] == ["[PAD]", "[UNK]", "[MASK]", "[SEP]", "<cls>", "[NEW]"]
    assert new.cls_token == "<cls>" and new.tokenize("a [NEW] b <cls>") == ["a", "[NEW]", "b", "<cls>"]
    new.save_pretrained(tmp_path)
    assert BertTokenizer.from_pretrained(tmp_path).tokenize("a [NEW] b") == ["a", "[NEW]", "b"]
    assert transformers.BertTokenizerFast.from_pretrained(tmp_path).tokenize("a [NEW] b") == ["a", "[NEW]", "b"]


def test_progress_bar_when_asked(vocab_file, capsys):
    BertTokenizer(vocab_file).train_new_from_iterator(ENGLISH, 100)  # show_progress=True, as transformers
    assert {"Count words", "Compute merges"} <= set(re.findall(r"Count words|Compute merges", capsys.readouterr().err))
    BertTokenizer(vocab_file).train_new_from_iterator(ENGLISH, 100, show_progress=False)
    assert capsys.readouterr().err == ""


# ---- as close to the reference as it is to itself ------------------------------------------------

@pytest.fixture(scope="module")
def docstrings() -> tuple[list[str], list[str]]:
    """(training, held-out) paragraphs of the docstrings of the first 60 top-level standard-library modules."""
    files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))[:60]
    return split_corpus(docstring_paragraphs(files))


def jaccard(first: list[str], second: list[str]) -> float:
    return len(set(first) & set(second)) / len(set(first) | set(second))


def token_count(vocabulary: list[str], texts: list[str], lower: bool) -> int:
    """How many tokens a WordPiece tokenizer with this vocabulary makes of the texts."""
    tokenizer = BertTokenizer(vocabulary, do_lower_case=lower)
    return sum(len(tokenizer.encode_text(text)) for text in texts)


SPREAD_CASES = {  # (corpus, vocab_size, lower); the docstring corpus is the fixture's
    "docstrings uncased": ("docstrings", 2000, True),
    "docstrings cased": ("docstrings", 1200, False),
    "multilingual cased": ("multilingual", 200, False),
    "random unicode uncased": ("random", 900, True),
    "random unicode cased": ("random", 1200, False),  # runs out of merges at 1,703 tokens
}


@pytest.mark.parametrize("case", SPREAD_CASES)
def test_as_close_to_each_reference_run_as_the_runs_are_to_each_other(vocab_file, docstrings, case):
    """Over SPREAD_RUNS reference runs (MORE_RUNS if the overlap falls short: the spread of a random
    process is only measured by its runs): minibert's overlap with each run is at least the smallest
    overlap between two runs; its size lies within the runs' range, its held-out token count within
    their range +- 0.1%. The measured numbers are printed (pytest -s)."""
    corpus, vocab_size, lower = SPREAD_CASES[case]
    texts, held_out = {"docstrings": docstrings, "multilingual": (MULTILINGUAL, MULTILINGUAL[:6]),
                       "random": (random_unicode_texts(0), random_unicode_texts(1))}[corpus]
    mine = ours(vocab_file, texts, vocab_size, lower)
    runs = reference_runs(vocab_file, texts, vocab_size, lower, runs=SPREAD_RUNS)
    least_similar = min(jaccard(a, b) for a, b in itertools.combinations(runs, 2))
    if min(jaccard(mine, run) for run in runs) < least_similar:
        runs += reference_runs(vocab_file, texts, vocab_size, lower, runs=MORE_RUNS - SPREAD_RUNS)
        least_similar = min(jaccard(a, b) for a, b in itertools.combinations(runs, 2))
    overlaps = [jaccard(mine, run) for run in runs]
    counts = [token_count(run, held_out, lower) for run in runs]
    mine_count = token_count(mine, held_out, lower)
    print(f"\n{case}: {len(runs)} runs; Jaccard with minibert {min(overlaps):.4f}-{max(overlaps):.4f}, between runs "
          f"from {least_similar:.4f}; size {len(mine)} (runs {min(map(len, runs))}-{max(map(len, runs))}); "
          f"held-out tokens {mine_count} (runs {min(counts)}-{max(counts)})")
    assert min(overlaps) >= least_similar
    assert min(map(len, runs)) <= len(mine) <= max(map(len, runs))
    assert min(counts) * 0.999 <= mine_count <= max(counts) * 1.001
    alphabet_end = next(index for index, token in enumerate(mine) if token.startswith(PREFIX))
    for run in runs:  # the special tokens first, in the same order, then the same alphabet in the same order
        assert run[:alphabet_end] == mine[:alphabet_end] and run[alphabet_end].startswith(PREFIX)


AGREEING = ["bat cat cats hat hats mat mats rat rats sat, sat; cats!", "Bats, cats, rats: a cat sat."] * 3


@pytest.mark.parametrize("lower", [True, False], ids=["uncased", "cased"])
def test_identical_where_the_reference_runs_agree(vocab_file, lower):
    """Words whose continuations are all beginnings of one ("at", "ats"): every run meets the "##" pieces
    in the same order, the ties between pairs fall the same way, and the runs agree token for token."""
    runs = reference_runs(vocab_file, AGREEING, 40, lower, runs=SPREAD_RUNS)
    assert all(run == runs[0] for run in runs), "the reference's runs differ: the corpus has ties"
    assert ours(vocab_file, AGREEING, 40, lower) == runs[0]


def test_vocab_size_below_the_alphabet_and_a_corpus_that_runs_out(vocab_file):
    """As the reference: the special tokens, the alphabet and the "##" pieces are always kept, whatever
    vocab_size says; a corpus whose words are all whole stops short of vocab_size."""
    for vocab_size in (1, 5, 30):
        tokens = ours(vocab_file, MULTILINGUAL, vocab_size, False)
        assert len(tokens) == len(reference_runs(vocab_file, MULTILINGUAL, vocab_size, False, runs=1)[0]) > 30
        assert not any(len(token) > 1 and not token.startswith(("[", PREFIX)) for token in tokens)  # no merges
    # Running out: the size varies from run to run (a token made again from another pair does not count
    # twice, and which tokens are made twice depends on the order of the merges).
    tokens = ours(vocab_file, ENGLISH, 5000, True)
    sizes = [len(run) for run in reference_runs(vocab_file, ENGLISH, 5000, True, runs=SPREAD_RUNS)]
    assert min(sizes) <= len(tokens) <= max(sizes) < 5000
    assert {"quick", "vocabulary", "tokenizer"} <= set(tokens)  # every word whole


def test_min_frequency_stops_at_the_first_rarer_pair(vocab_file):
    few = ours(vocab_file, ENGLISH * 2, 1000, True, min_frequency=5)
    assert len(few) == len(reference_runs(vocab_file, ENGLISH * 2, 1000, True, runs=1, min_frequency=5)[0])
    assert len(ours(vocab_file, ENGLISH * 2, 1000, True, min_frequency=0)) > len(few)


# ---- determinism -------------------------------------------------------------------------------

DETERMINISM_SCRIPT = """
import json, sys
from minibert.tokenizer import BertTokenizer
sys.path.insert(0, "tests")
from test_tokenizer_trainer import ENGLISH, MULTILINGUAL, random_unicode_texts
texts = ENGLISH + MULTILINGUAL + random_unicode_texts(2)
print(json.dumps([BertTokenizer(sys.argv[1], do_lower_case=lower).train_new_from_iterator(
    texts, 2500, show_progress=False).id_to_token for lower in (True, False)]))
"""


def test_same_vocabulary_whatever_the_hash_seed(vocab_file):
    """Two processes with different PYTHONHASHSEED (so different str hashes, set and dict layouts) give
    the same vocabulary, order included, cased and uncased."""
    results = []
    for seed in ("1", "2"):
        done = subprocess.run([sys.executable, "-c", DETERMINISM_SCRIPT, str(vocab_file)], cwd=REPO,
                              capture_output=True, text=True, timeout=120,
                              env={**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO)})
        assert done.returncode == 0, done.stderr[-2000:]
        results.append(json.loads(done.stdout))
    assert results[0] == results[1]
    assert all(len(tokens) > 2000 for tokens in results[0])
