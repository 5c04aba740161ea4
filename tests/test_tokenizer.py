"""minibert.BertTokenizer against transformers' BertTokenizer (the Rust `tokenizers` one).

Parity runs on the real all-MiniLM-L6-v2 vocabulary, uncased as shipped and with
do_lower_case=False (cased behaviour), and is exact: ids, token types, masks, offsets, decoded
text. The unit tests on a toy vocabulary need no download.
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
import unicodedata
import warnings
from pathlib import Path

import pytest

from minibert.tokenizer import BasicTokenizer, BertTokenizer, WordPiece
from minibert.tokenizer.unicode_tables import unicode_tables

from conftest import minilm_dir  # noqa: E402  (tests/ is on sys.path: pytest puts it there)

transformers = pytest.importorskip("transformers")
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from tokenizers import __version__ as TOKENIZERS_VERSION  # noqa: E402  (transformers' Rust backend)

# The reference: the Rust-backed tokenizer (BertTokenizer in transformers 5, where BertTokenizerFast
# is its alias; BertTokenizerFast in transformers 4).
Reference = transformers.BertTokenizerFast

needs_minilm = pytest.mark.usefixtures("minilm_path")  # fetched on first use, see conftest.minilm_dir


def _reference_truncates_as_verified() -> bool:
    """Whether the installed tokenizers truncates as the versions parity is verified against do.

    tokenizers 0.22.2 and 0.23.3 leave a text whose max_length cannot even hold its special tokens
    whole, and cut a pair (longest_first) from the longer text first, as minibert does; 0.23.1 and
    0.23.2 cut such texts anyway and split pairs the other way round."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    probe = Tokenizer(models.WordPiece({"[UNK]": 0, "[CLS]": 1, "[SEP]": 2, "a": 3, "b": 4}, unk_token="[UNK]"))
    probe.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    probe.post_processor = processors.BertProcessing(("[SEP]", 2), ("[CLS]", 1))
    probe.enable_truncation(max_length=1)
    whole = len(probe.encode("a a a").ids) == 5 and len(probe.encode("", "a b").ids) == 5
    probe.enable_truncation(max_length=3)
    return whole and probe.encode("a a a a a a", "b b b b", add_special_tokens=False).ids == [3, 3, 4]


REFERENCE_TRUNCATES_AS_VERIFIED = _reference_truncates_as_verified()
TRUNCATION_DIFFERS = (
    f"tokenizers {TOKENIZERS_VERSION} truncates differently from tokenizers 0.22.2 and 0.23.3 (and minibert): "
    "parity is verified with transformers 5.17-5.24 on tokenizers 0.23.3; pip install -e '.[test]' installs those")


# Texts that reach every branch of the basic tokenizer, and the reference's surprises.
CORPUS = [
    "", " ", "  \t\n\r  ", "Hello, world!", "The quick brown fox jumps over the lazy dog.",
    "Héllo wörld, ça va? Naïve café Ångström façade jalapeño", "e\u0301x cafe\u0301 a\u0316\u0301b",  # combining marks
    "中国人的BERT模型很好用。", "日本語のテキストです", "한국어 텍스트입니다 가나다",  # CJK, kana, Hangul
    "😀 emoji 👍🏽 and ZWJ 👨\u200d👩\u200d👧\u200d👦 🏳️\u200d🌈", "ＦＵＬＬ　ｗｉｄｔｈ，ｆｏｒｍｓ！１２３",
    "control\x00chars\x07in\x1bthe\x7fmiddle\ufffd\u200b\ufeffhere", "tab\tnew\nline\rcr\x0bvt\x0cff\x85nel\u2028ls",
    "supercalifragilisticexpialidocious " + "a" * 100 + " " + "b" * 101,  # at and over max_input_chars_per_word
    "[CLS] special [SEP] tokens [MASK][PAD] [UNK] [cls] [Sep] [[MASK]] a[SEP]b",
    "ΟΔΟΣ ΣΊΣΥΦΟΣ İstanbul ǅungla ẞ ﬁne ½ ™ Ⅻ",  # final sigma, dotted I, titlecase, ligatures
    "\U0002b820\U0002b91f\U0002b920 \u4e00 \U00020000",  # the CJK Extension E gap
    "\u2e43dash\u061dmark \u0890x\u08e2 \u1734a\u166db \U000111c9c \u302e\u0316z",  # newer than the reference's tables
    "\U00011938 \U00010d50 \u1c89 \ua7cb \u00c0\u302e",  # where the reference's tables differ; a reordered mark
    "don't you're we've I'm it's isn't . , ! ? ' do not", "https://example.com/path?q=1&b=2#frag",
    "def f(x): return x**2 + 1  # code", "1,234.56 $100 50% 3/4 2024-01-01",
    "Ünïcödé ÀÉÎÕÜ ÿ Ø æ œ ß ð þ Ł đ", "مرحبا بالعالم שלום עולם नमस्ते दुनिया สวัสดีชาวโลก",
    "x" * 300, "word " * 200,
]

# Characters a random text rarely hits but the tables must get right.
INTERESTING = [
    "[CLS]", "[SEP]", "[UNK]", "[MASK]", "[PAD]", "[", "]", "##", "hello", "playing", "unbelievable", "Σ", "İ",
    "\u0301", "\u0316", "\u0345", "\u302e", "\u1734", "\u0890", "\u2e43", "\u166d", "\U000111c9", "\U0002b820",
    "\u4e00", "가", "😀", "\u200d", "\x00", "\ufffd", "\u3000", "\x85", "\x1c", "ﬁ", "Ａ", "\u00a0", "\u1dfa",
    "\u08d4", "\u00c0", "\U00011938", "\U00010d50", "\u1c89", "\U000e0001", "\U000f0000", "\u0387", "\u1fef", " ", "é",
]


# ---- fixtures ---------------------------------------------------------------------------------


_PAIRS: dict[bool, tuple] = {}


def _minilm_pair(cased: bool) -> tuple:
    """(ours, reference) on the MiniLM vocabulary, "cased" by overriding do_lower_case=False; built
    once (the hypothesis tests cannot take function-scoped fixtures)."""
    if cased not in _PAIRS:
        overrides = {"do_lower_case": False} if cased else {}
        _PAIRS[cased] = (BertTokenizer.from_pretrained(minilm_dir(), **overrides),
                         Reference.from_pretrained(minilm_dir(), **overrides))
    return _PAIRS[cased]


@pytest.fixture(params=["uncased", "cased"])
def tokenizers(request, minilm_path):
    return _minilm_pair(request.param == "cased")


TOY_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "un", "##aff", "##able", "##a", "play", "##ing",
              "hello", "world", "!", ",", "a", "b", "##b", "é", "e", "中"]


@pytest.fixture
def toy_dir(tmp_path: Path) -> Path:
    (tmp_path / "vocab.txt").write_text("\n".join(TOY_TOKENS) + "\n", encoding="utf-8")
    return tmp_path


@pytest.fixture
def toy(toy_dir: Path) -> BertTokenizer:
    return BertTokenizer(toy_dir / "vocab.txt", model_max_length=16)


def assert_same_call(ours, reference, *args, **kwargs):
    """Call both; the same columns, or both refuse (ours with a ValueError)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # both warn about ignored max_length, ours also where it is too small
        try:
            expected = reference(*args, **kwargs)
        except Exception:  # the reference raises bare Exceptions from Rust
            with pytest.raises(ValueError):
                ours(*args, **kwargs)
            return
        got = ours(*args, **kwargs)
    assert dict(got) == dict(expected), f"args={args!r} kwargs={kwargs!r}"


# ---- parity on real text ----------------------------------------------------------------------


@pytest.mark.parametrize("text", CORPUS, ids=range(len(CORPUS)))
def test_ids_types_masks_offsets_like_the_reference(tokenizers, text):
    ours, reference = tokenizers
    assert_same_call(ours, reference, text, return_offsets_mapping=True)
    assert ours.tokenize(text) == reference.tokenize(text)


def test_batches_of_the_corpus_like_the_reference(tokenizers):
    ours, reference = tokenizers
    for padding, tensors in itertools.product([False, True, "longest"], [None, "pt", "np"]):
        if tensors and not padding:
            continue
        got = ours(CORPUS, padding=padding, truncation=True, max_length=64, return_tensors=tensors,
                   return_offsets_mapping=True)
        expected = reference(CORPUS, padding=padding, truncation=True, max_length=64, return_tensors=tensors,
                             return_offsets_mapping=True)
        assert set(got) == set(expected)
        for key in expected:
            if tensors == "pt":
                import torch

                assert got[key].dtype == torch.long and torch.equal(got[key], expected[key]), key
            elif tensors == "np":
                assert got[key].dtype.name == "int64" and (got[key] == expected[key]).all(), key
            else:
                assert got[key] == expected[key], key


def test_normalizer_and_pre_tokenizer_like_the_reference_on_the_corpus():
    from tokenizers import normalizers, pre_tokenizers

    for lower, strip, cjk in itertools.product([True, False], [None, True, False], [True, False]):
        ours = BasicTokenizer(lower, strip, cjk)
        reference = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=cjk, strip_accents=strip,
                                               lowercase=lower)
        for text in CORPUS:
            normalized = reference.normalize_str(text)
            assert ours.normalize(text) == normalized, (lower, strip, cjk, text)
            words = [word for word, _ in pre_tokenizers.BertPreTokenizer().pre_tokenize_str(normalized)]
            assert ours.split(normalized) == words


# The exhaustive comparison, run as a script in a child process that cannot import unicodedata.
COMPARE_EVERY_CODE_POINT = """
import json, sys
sys.modules["unicodedata"] = None  # from here on, importing it fails
from tokenizers import normalizers, pre_tokenizers
from minibert.tokenizer import BasicTokenizer

# Every character of planes 0-3 and 14 (every 61st of the rest: unassigned and private use).
points = [*range(0xD800), *range(0xE000, 0x40000), *range(0x40000, 0xE0000, 61), *range(0xE0000, 0xF0000),
          *range(0xF0000, sys.maxunicode + 1, 61)]
texts = {"alone": " ".join(map(chr, points)), "packed": "".join(map(chr, points)),
         # Each mark before and after U+302E (a spacing mark, combining class 224, kept by accent stripping):
         # NFD swaps them where it knows the mark's class.
         "marks": "".join(f"a{mark}\u302e a\u302e{mark} " for mark in json.loads(sys.argv[1]))}

def first_difference(got, expected):
    index = next(i for i, (a, b) in enumerate(zip(got + "$", expected + "$")) if a != b)
    return f"at {index}, ours {got[index - 3:index + 3]!r}, reference {expected[index - 3:index + 3]!r}"

for lower, strip, cjk in [(True, None, True), (False, None, True), (False, True, False), (True, False, True)]:
    ours = BasicTokenizer(lower, strip, cjk)
    reference = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=cjk, strip_accents=strip,
                                           lowercase=lower)
    for name, text in texts.items():
        expected, got = reference.normalize_str(text), ours.normalize(text)
        assert got == expected, f"normalize {name}, flags {(lower, strip, cjk)}: {first_difference(got, expected)}"
# Splitting: each character between two letters, so that punctuation and spaces show.
flanked = "".join(f"a{chr(point)}a " for point in points)
expected = [word for word, _ in pre_tokenizers.BertPreTokenizer().pre_tokenize_str(flanked)]
got = BasicTokenizer(False, False, False).split(flanked)
assert got == expected, "split: ours {!r}, reference {!r}".format(
    *next((a, b) for a, b in zip(got, expected) if a != b))
print("same")
"""


def test_every_code_point_like_the_reference():
    """Every code point, alone, packed, between marks and between letters, through each stage, as the
    reference does it; in a child process where ``unicodedata`` cannot be imported, so the tables
    cannot come from the running Python's Unicode version."""
    # The marks to reorder: those with a combining class. Classes never change once assigned, and
    # every Python since 3.10 knows more of them than the reference, so this Python's list will do.
    marks = [chr(point) for point in range(sys.maxunicode + 1) if unicodedata.combining(chr(point))]
    child = subprocess.run([sys.executable, "-c", COMPARE_EVERY_CODE_POINT, json.dumps(marks)],
                           capture_output=True, text=True, timeout=600, cwd=Path(__file__).resolve().parent.parent)
    assert child.returncode == 0 and child.stdout.strip() == "same", child.stderr[-3000:]


# str methods and regex features whose answers come from Python's own Unicode tables.
VERSION_DEPENDENT_METHODS = {"lower", "upper", "casefold", "title", "capitalize", "swapcase", "isspace", "isalnum",
                             "isalpha", "isdigit", "isdecimal", "isnumeric", "isprintable", "isidentifier",
                             "islower", "isupper", "istitle", "IGNORECASE", "I"}


TOKENIZER_MODULES = sorted(path.stem for path in (Path(__file__).resolve().parents[1] / "minibert" / "tokenizer").glob("*.py"))


@pytest.mark.parametrize("module", TOKENIZER_MODULES)
def test_tokenizer_source_asks_nothing_of_pythons_unicode_tables(module):
    """No unicodedata, no str.lower()/isspace()/..., no re.IGNORECASE or \\w, \\s, \\d classes: on
    Python 3.10 (Unicode 13) to 3.14 (Unicode 16) these answer differently."""
    import ast

    import minibert

    path = Path(minibert.__file__).parent / "tokenizer" / f"{module}.py"
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [alias.name for alias in node.names] + [getattr(node, "module", None) or ""]
            found += [f"line {node.lineno}: imports unicodedata" for name in names if name == "unicodedata"]
        elif isinstance(node, ast.Attribute) and node.attr in VERSION_DEPENDENT_METHODS and \
                not (isinstance(node.value, ast.Name) and node.value.id == "self"):  # our own step self.lower
            found.append(f"line {node.lineno}: .{node.attr}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and re.search(r"\\[wWsSdDbB]", node.value):
            found.append(f"line {node.lineno}: regex class in {node.value[:40]!r}")
    assert not found, f"{path.name} depends on the running Python's Unicode tables: {found}"


@pytest.fixture
def fresh_tables():
    """Tables built anew in the test, and again afterwards for the other tests."""
    unicode_tables.cache_clear()
    yield
    unicode_tables.cache_clear()


def test_python_3_12s_unicode_changes_nothing(monkeypatch, fresh_tables):
    """Python 3.12's unicodedata (Unicode 15) makes U+0ECF LAO SIGN YAMAKKAN a nonspacing mark with a
    combining class; the reference's tables do not know it. A tokenizer built under such a
    unicodedata (simulated here on the one we have) still keeps it as the reference does."""
    real_category, real_combining = unicodedata.category, unicodedata.combining
    monkeypatch.setattr(unicodedata, "category", lambda char: "Mn" if char == "\u0ecf" else real_category(char))
    monkeypatch.setattr(unicodedata, "combining", lambda char: 230 if char == "\u0ecf" else real_combining(char))
    from tokenizers import normalizers

    text = "a\u0ecf\u0301 \u0ecf\u0316x \u0ecf"
    for lower, strip in [(True, None), (False, True), (True, False)]:
        reference = normalizers.BertNormalizer(strip_accents=strip, lowercase=lower)
        ours = BasicTokenizer(lower, strip)
        assert ours.normalize(text) == reference.normalize_str(text), (lower, strip)


# ---- pairs, truncation, padding ---------------------------------------------------------------


@pytest.mark.parametrize("strategy", [True, "longest_first", "only_first", "only_second"])
def test_pair_truncation_like_the_reference(tokenizers, strategy):
    ours, reference = tokenizers
    texts = {"empty": "", "short": "a b", "medium": "one two three four", "long": "a b c d e f g h i j k l"}
    if not REFERENCE_TRUNCATES_AS_VERIFIED:
        pytest.skip(TRUNCATION_DIFFERS)
    for (first, second), max_length in itertools.product(itertools.product(texts.values(), repeat=2),
                                                         [0, 2, 3, 4, 5, 7, 8, 11, 30]):
        assert_same_call(ours, reference, first, second or None, truncation=strategy, max_length=max_length,
                         return_offsets_mapping=True)
        assert_same_call(ours, reference, [first], [second], truncation=strategy, max_length=max_length,
                         padding="max_length")
        assert_same_call(ours, reference, [first], [second], truncation=strategy, max_length=max_length,
                         add_special_tokens=False)


def test_padding_options_like_the_reference(tokenizers):
    ours, reference = tokenizers
    texts = ["Hello!", "Cool.", "a much longer sentence than the others, with a comma"]
    for padding, truncation, max_length in itertools.product([False, True, "longest", "max_length", "do_not_pad"],
                                                             [None, False, True, "do_not_truncate"], [None, 4, 20]):
        assert_same_call(ours, reference, texts, padding=padding, truncation=truncation, max_length=max_length)
        assert_same_call(ours, reference, texts[0], padding=padding, truncation=truncation, max_length=max_length)


# Random text: arbitrary code points, mixed with words and the characters the tables care about.
random_text = st.lists(st.one_of(st.characters(exclude_categories=["Cs"]), st.sampled_from(INTERESTING)),
                       max_size=40).map("".join)


@needs_minilm
@settings(max_examples=200, deadline=None, derandomize=True)
@given(text=random_text, cased=st.booleans())
def test_random_text_like_the_reference(text, cased):
    ours, reference = _minilm_pair(cased)
    assert_same_call(ours, reference, text, return_offsets_mapping=True)
    assert ours.decode(ours(text)["input_ids"]) == reference.decode(reference(text)["input_ids"])


@needs_minilm
@settings(max_examples=150, deadline=None, derandomize=True)
@given(texts=st.lists(st.tuples(random_text, random_text), min_size=1, max_size=3),
       padding=st.sampled_from([False, True, "max_length"]),
       truncation=st.sampled_from([None, False, True, "only_first", "only_second"]),
       max_length=st.one_of(st.none(), st.integers(0, 40)), special=st.booleans(), cased=st.booleans())
def test_random_batches_like_the_reference(texts, padding, truncation, max_length, special, cased):
    ours, reference = _minilm_pair(cased)
    firsts, seconds = map(list, zip(*texts))
    if not REFERENCE_TRUNCATES_AS_VERIFIED and truncation not in (None, False):
        return  # see TRUNCATION_DIFFERS; test_pair_truncation_like_the_reference says so once
    assert_same_call(ours, reference, firsts, seconds, padding=padding, truncation=truncation, max_length=max_length,
                     add_special_tokens=special, return_offsets_mapping=True)


# ---- decoding ---------------------------------------------------------------------------------


def test_decode_like_the_reference(tokenizers):
    ours, reference = tokenizers
    rows = [reference(text)["input_ids"] for text in CORPUS]
    rows.append(reference.convert_tokens_to_ids(["##ing", "play", "##ing", "!", "'", "s", "?", ".", "do", "not"]))
    for skip, clean in itertools.product([False, True], [None, False, True]):
        for row in rows:
            assert ours.decode(row, skip_special_tokens=skip, clean_up_tokenization_spaces=clean) == \
                reference.decode(row, skip_special_tokens=skip, clean_up_tokenization_spaces=clean)
        assert ours.batch_decode(rows, skip_special_tokens=skip) == reference.batch_decode(rows,
                                                                                           skip_special_tokens=skip)
    import torch

    assert ours.decode(torch.tensor(rows[3])) == reference.decode(rows[3])
    assert ours.decode(torch.tensor([rows[3], rows[3]])) == [reference.decode(rows[3])] * 2
    assert ours.decode(rows[3][1]) == reference.decode(rows[3][1])
    assert ours.decode(torch.tensor(rows[3][1])) == reference.decode(rows[3][1])  # a 0-d tensor: one id
    assert ours.batch_decode(torch.tensor([rows[3], rows[3]])) == reference.batch_decode([rows[3], rows[3]])
    assert ours.convert_ids_to_tokens(rows[3], skip_special_tokens=True) == \
        reference.convert_ids_to_tokens(rows[3], skip_special_tokens=True)
    assert ours.convert_tokens_to_ids(["hello", "zzzqqq", "[SEP]"]) == \
        reference.convert_tokens_to_ids(["hello", "zzzqqq", "[SEP]"])


# ---- the reference's surprises, one by one ----------------------------------------------------


@needs_minilm
def test_reference_quirks_are_reproduced():
    ours, reference = _minilm_pair(False)
    # No word-final sigma: "ΟΔΟΣ" lower-cases to "οδοσ", not Python's "οδος".
    assert ours.basic.normalize("ΟΔΟΣ") == "οδοσ" != "ΟΔΟΣ".lower()
    # U+2B820..U+2B91F are not spaced out like the other CJK ideographs.
    assert ours.tokenize("\U0002b820\U0002b821") == reference.tokenize("\U0002b820\U0002b821") == ["[UNK]"]
    # An empty text_pair is no pair for a single text, but an empty sequence in a batch.
    assert ours("hi", "")["input_ids"] == reference("hi", "")["input_ids"] == [101, 7632, 102]
    assert ours(["hi"], [""])["input_ids"] == reference(["hi"], [""])["input_ids"] == [[101, 7632, 102, 102]]
    # max_length below the number of special tokens: no truncation at all (we warn).
    with pytest.warns(UserWarning, match="cannot even hold"):
        whole = ours("a b c", truncation=True, max_length=1)
    assert whole["input_ids"] == [101, 1037, 1038, 1039, 102]
    if REFERENCE_TRUNCATES_AS_VERIFIED:  # else see TRUNCATION_DIFFERS
        assert whole == dict(reference("a b c", truncation=True, max_length=1))
    # only_second refuses to cut the pair down to nothing.
    with pytest.raises(Exception, match="too short"):
        reference("a b c", "x", truncation="only_second", max_length=5)
    with pytest.raises(ValueError, match="only 1"):
        ours("a b c", "x", truncation="only_second", max_length=5)
    # The decoder cleans token by token: "isn ' t" keeps its spaces.
    ids = ours("isn't it.")["input_ids"]
    assert ours.decode(ids) == reference.decode(ids) == "[CLS] isn ' t it. [SEP]"


# ---- loading and saving -----------------------------------------------------------------------


@needs_minilm
@pytest.mark.parametrize("cased", [False, True])
def test_save_pretrained_loads_in_transformers(tmp_path, cased):
    ours = BertTokenizer.from_pretrained(minilm_dir(), do_lower_case=not cased)
    files = ours.save_pretrained(tmp_path / "saved")
    assert sorted(Path(file).name for file in files) == ["special_tokens_map.json", "tokenizer_config.json",
                                                         "vocab.txt"]
    assert (tmp_path / "saved" / "vocab.txt").read_bytes() == (minilm_dir() / "vocab.txt").read_bytes()
    theirs = Reference.from_pretrained(tmp_path / "saved")
    again = BertTokenizer.from_pretrained(tmp_path / "saved")
    assert again.do_lower_case == theirs.do_lower_case == (not cased)
    assert again.model_max_length == ours.model_max_length == 512
    batch = ours(CORPUS, padding=True)
    assert dict(batch) == dict(again(CORPUS, padding=True)) == dict(theirs(CORPUS, padding=True))


def test_settings_come_from_tokenizer_config(toy_dir):
    (toy_dir / "tokenizer_config.json").write_text(json.dumps(
        {"do_lower_case": False, "strip_accents": True, "tokenize_chinese_chars": False, "model_max_length": 8,
         "unk_token": {"content": "[UNK]", "__type": "AddedToken"}, "tokenizer_class": "BertTokenizer"}))
    tok = BertTokenizer.from_pretrained(toy_dir)
    assert (tok.do_lower_case, tok.strip_accents, tok.tokenize_chinese_chars, tok.model_max_length) == \
        (False, True, False, 8)
    assert tok.tokenize("Hello é") == ["[UNK]", "e"]  # cased: "Hello" is not in the vocabulary; accent stripped
    assert BertTokenizer.from_pretrained(toy_dir, do_lower_case=True).tokenize("Hello") == ["hello"]
    assert len(tok("a " * 20, truncation=True)["input_ids"]) == 8  # model_max_length stands in for max_length


def _hub_cache(tmp_path: Path, files: dict[str, str]) -> Path:
    """A huggingface_hub cache holding bert-base-cased at one revision, as a download leaves it."""
    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--bert-base-cased"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    for name, content in files.items():
        (snapshot / name).write_text(content, encoding="utf-8")
    return tmp_path / "hub"


def test_from_pretrained_hub_id_uses_the_cache_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cache = _hub_cache(tmp_path, {"vocab.txt": "\n".join(TOY_TOKENS + ["Hello"]) + "\n",
                                  "tokenizer_config.json": json.dumps({"do_lower_case": False})})
    tok = BertTokenizer.from_pretrained("bert-base-cased", cache_dir=cache)
    assert tok.do_lower_case is False and tok.tokenize("Hello hello") == ["Hello", "hello"]
    assert BertTokenizer.from_pretrained("bert-base-cased", cache_dir=cache, revision="main").vocab_size == 22


def test_from_pretrained_reports_what_is_missing(tmp_path, monkeypatch, toy_dir):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match="cannot be reached"):
        BertTokenizer.from_pretrained("bert-base-cased", cache_dir=tmp_path / "empty")
    (tmp_path / "no-vocab").mkdir()
    with pytest.raises(OSError, match="has no vocab.txt"):
        BertTokenizer.from_pretrained(tmp_path / "no-vocab")
    with pytest.raises(OSError, match="is a file"):
        BertTokenizer.from_pretrained(toy_dir / "vocab.txt")
    with pytest.raises(OSError, match="does not exist"):
        BertTokenizer(tmp_path / "missing.txt")
    cache = _hub_cache(tmp_path, {"tokenizer_config.json": "{}"})
    with pytest.raises(OSError, match="vocab.txt"):
        BertTokenizer.from_pretrained("bert-base-cased", cache_dir=cache)


# ---- the two stages on a toy vocabulary -------------------------------------------------------


def test_basic_tokenizer_steps():
    basic = BasicTokenizer(do_lower_case=True)
    assert basic.normalize("Héllo\tWORLD\x00!") == "hello world!"
    assert basic.tokenize("Héllo, WORLD!中文") == ["hello", ",", "world", "!", "中", "文"]
    assert BasicTokenizer(do_lower_case=False).tokenize("Héllo, 中文") == ["Héllo", ",", "中", "文"]
    assert BasicTokenizer(do_lower_case=True, strip_accents=False).tokenize("Héllo") == ["héllo"]
    assert BasicTokenizer(tokenize_chinese_chars=False).tokenize("中文x") == ["中文x"]
    assert basic.tokenize("a$b^c`d") == ["a", "$", "b", "^", "c", "`", "d"]  # ASCII symbols split too
    # Where each normalized character came from: İ lower-cases to two (i + a dot above), both from İ.
    text, keep_accents = "Ｉ\u0130 x\u0301y", BasicTokenizer(do_lower_case=True, strip_accents=False)
    assert keep_accents.normalize(text) == "ｉi\u0307 x\u0301y"
    assert [text[i] for i in keep_accents.origins(text)] == ["Ｉ", "\u0130", "\u0130", " ", "x", "\u0301", "y"]
    assert basic.normalize(text) == "ｉi xy" and [text[i] for i in basic.origins(text)] == ["Ｉ", "\u0130", " ", "x", "y"]


def test_wordpiece_greedy_longest_match_first():
    vocab = {token: index for index, token in enumerate(TOY_TOKENS)}
    wordpiece = WordPiece(vocab, max_input_chars_per_word=10)
    tokens = lambda word: [TOY_TOKENS[i] for i in wordpiece.ids(word)]  # noqa: E731
    assert tokens("unaffable") == ["un", "##aff", "##able"]
    assert tokens("playing") == ["play", "##ing"]
    assert tokens("ab") == ["a", "##b"]  # "a" then the continuation "##b", not "b"
    assert tokens("unx") == ["[UNK]"]  # one uncoverable piece makes the whole word unknown
    assert tokens("a" * 10) == ["a"] + ["##a"] * 9  # 10 characters: still split
    assert tokens("a" * 11) == ["[UNK]"]  # over max_input_chars_per_word
    assert wordpiece.spans("unaffable") == [(5, 0, 2), (6, 2, 5), (7, 5, 9)]
    assert wordpiece.ids("playing") is wordpiece.ids("playing")  # cached


def test_batch_encoding_feeds_the_model(toy):
    import torch

    from minibert import BertConfig, BertModel

    batch = toy(["hello world!", "play!"], ["a", "unaffable"], padding=True, return_tensors="pt")
    assert batch.input_ids is batch["input_ids"] and list(batch) == ["input_ids", "token_type_ids", "attention_mask"]
    assert batch.input_ids.tolist() == [[2, 11, 12, 13, 3, 15, 3, 0], [2, 9, 13, 3, 5, 6, 7, 3]]
    assert batch.token_type_ids.tolist() == [[0, 0, 0, 0, 0, 1, 1, 0], [0, 0, 0, 0, 1, 1, 1, 1]]
    assert batch.attention_mask.tolist() == [[1] * 7 + [0], [1] * 8]
    model = BertModel(BertConfig(vocab_size=len(toy), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=32, max_position_embeddings=32)).eval()
    with torch.no_grad():
        assert model(**batch).last_hidden_state.shape == (2, 8, 16)
    with pytest.raises(AttributeError, match="offset_mapping"):
        batch.offset_mapping
    assert toy("a", return_offsets_mapping=True, return_tensors="np").offset_mapping.shape == (1, 3, 2)
    assert toy("", add_special_tokens=False, return_offsets_mapping=True, return_tensors="pt")["offset_mapping"] \
        .shape == (1, 0, 2)


def test_special_tokens_match_in_raw_text_longest_first(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(TOY_TOKENS + ["<s>", "<s>x"]) + "\n", encoding="utf-8")
    settings = dict(cls_token="<s>", mask_token="<s>x")
    ours = BertTokenizer(vocab, **settings)
    reference = Reference.from_pretrained(tmp_path, **settings)
    text = "a<s>xb <s> <S>x"
    tokens = ours.tokenize(text)
    assert tokens == reference.tokenize(text) and tokens[:4] == ["a", "<s>x", "b", "<s>"]  # "<S>x" is text


# ---- errors in the caller's terms -------------------------------------------------------------


def test_bad_input_gets_a_clear_error(toy, tmp_path):
    cases = [
        (TypeError, "text must be a str", lambda: toy(5)),
        (TypeError, r"text\[1\] must be a str", lambda: toy(["a", None])),
        (TypeError, "pre-split words", lambda: toy([["a", "b"]])),
        (TypeError, "text_pair must be a list", lambda: toy(["a"], "b")),
        (ValueError, "has 1 texts but text_pair has 2", lambda: toy(["a"], ["b", "c"])),
        (ValueError, "empty list", lambda: toy([])),
        (ValueError, "lone surrogate U\\+D800 at index 1", lambda: toy("a\ud800")),
        (ValueError, "truncation='middle' is not one of", lambda: toy("a", truncation="middle")),
        (ValueError, "padding='left' is not one of", lambda: toy("a", padding="left")),
        (TypeError, "max_length must be an int", lambda: toy("a", max_length="8")),
        (ValueError, "max_length must be >= 0", lambda: toy("a", max_length=-1)),
        (ValueError, "return_tensors must be", lambda: toy("a", return_tensors="tf")),
        (ValueError, "pass padding=True", lambda: toy(["a", "a b"], return_tensors="pt")),
        (ValueError, "needs a text_pair", lambda: toy("a b a b", truncation="only_second", max_length=4)),
        (ValueError, "text_pair has only 1", lambda: toy("a b", "a", truncation="only_second", max_length=4)),
        (ValueError, "token id 99 is outside the vocabulary", lambda: toy.decode([2, 99])),
        (ValueError, "token id -1 is outside", lambda: toy.convert_ids_to_tokens(-1)),
        (TypeError, "token ids must be ints", lambda: toy.decode([1.5])),
        (TypeError, "expected token ids", lambda: toy.decode("hello")),
        (TypeError, "rows of token ids", lambda: toy.batch_decode(5)),
        (TypeError, "do_lower_case must be True or False", lambda: BertTokenizer(toy.vocab_file, do_lower_case="no")),
        (ValueError, "mask_token '<mask>' is not in", lambda: BertTokenizer(toy.vocab_file, mask_token="<mask>")),
    ]
    for error, message, call in cases:
        with pytest.raises(error, match=message):
            call()
    untitled = BertTokenizer(toy.vocab_file)  # no model_max_length
    for kwargs in [dict(padding="max_length"), dict(truncation=True)]:
        with pytest.raises(ValueError, match="needs max_length"):
            untitled("a", **kwargs)
    with pytest.warns(UserWarning, match="never_split has no effect"):
        BertTokenizer(toy.vocab_file, never_split=["hello"])
    with pytest.warns(UserWarning, match="max_length is ignored"):
        toy(["a", "a b"], padding=True, max_length=3)


def test_save_over_a_transformers_folder_leaves_one_tokenizer(tmp_path, toy_dir):
    """transformers reads tokenizer.json before vocab.txt: a save over a folder that has one (another
    vocabulary, another casing) must not leave it behind, or AutoTokenizer loads the old tokenizer."""
    folder = tmp_path / "hf"
    other = tmp_path / "other-vocab.txt"
    other.write_text("\n".join(reversed(TOY_TOKENS)) + "\n", encoding="utf-8")  # other ids for every token
    Reference(vocab_file=str(toy_dir / "vocab.txt"), do_lower_case=False).save_pretrained(folder)
    assert (folder / "tokenizer.json").is_file()
    ours = BertTokenizer(other, do_lower_case=True)
    ours.save_pretrained(folder)
    assert not (folder / "tokenizer.json").exists()
    theirs = transformers.AutoTokenizer.from_pretrained(folder)
    texts = ["Hello World!", "unaffable playing, a b", "HELLO"]
    assert dict(theirs(texts, padding=True)) == dict(ours(texts, padding=True))


def test_an_interrupted_save_is_named_as_such(tmp_path, toy):
    """A save killed after it removed vocab.txt leaves its staging folder: the error says what happened
    (as the model's loader does), not only that vocab.txt is missing."""
    toy.save_pretrained(tmp_path)
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    staging = tmp_path / f".minibert-save.{int(finished.stdout)}.0123abcd.tmp"  # a process that is gone
    staging.mkdir()
    (tmp_path / "vocab.txt").rename(staging / "vocab.txt")
    with pytest.raises(OSError, match="a save into it was interrupted"):
        BertTokenizer.from_pretrained(tmp_path)


# Offsets where normalizing moves characters: CJK ideographs spaced out, accents decomposed and
# dropped, marks reordered, characters that lower-case or decompose into several, control characters.
MOVING_TEXTS = [
    "日本語のテキスト、東京都。中文abc中文 123漢字",
    "Cafe\u0301 na\u0308ive re\u0301sume\u0301 — e\u0301te\u0301 à l'école, ÉCOLE",
    "q\u0307\u0323 a\u0301\u0327b \u1e0b\u0323 \u00c5ngstr\u00f6m \u212b",  # marks out of canonical order
    "İstanbul ΣΊΣΥΦΟΣ 한국어 텍스트 \u0130\u0301",
    "tab\there\x00nul\x7fdel\u200bzero width 中\u0301文 unaffable",
    "豈更車 \U00020000\U0002f800 𠀀x 中a中",
]


@needs_minilm
@pytest.mark.parametrize("text", MOVING_TEXTS, ids=range(len(MOVING_TEXTS)))
def test_offsets_where_normalizing_moves_characters(text):
    for cased in (False, True):
        ours, reference = _minilm_pair(cased)
        assert_same_call(ours, reference, text, return_offsets_mapping=True)
        assert_same_call(ours, reference, [text, text.upper(), "a " + text], return_offsets_mapping=True, padding=True)


@needs_minilm
def test_offsets_of_the_benchmark_scripts_like_the_reference():
    """The offsets benchmark's CJK and combining-accent texts (benchmarks/bench_tokenizer.py)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import bench_tokenizer

    for script in ("cjk", "accents"):
        texts = bench_tokenizer.script_texts(script, 0.02)
        for cased in (False, True):
            ours, reference = _minilm_pair(cased)
            assert_same_call(ours, reference, texts, return_offsets_mapping=True)


@needs_minilm
def test_word_caches_emptied_when_full_change_nothing(monkeypatch):
    """The WordPiece caches are emptied when full, even within one text, and the calls without offsets
    empty theirs alone: the same ids and offsets."""
    ours = _minilm_pair(cased=False)[0]
    small = BertTokenizer.from_pretrained(minilm_dir())  # caches of its own
    monkeypatch.setattr(small.wordpiece, "CACHE_SIZE", 3)
    # "hello" seen with offsets, then the caches of the calls without offsets emptied, then "hello" again.
    calls = [("hello", True), ("a b c d", False), (", hello", True)]
    calls += [(text, offsets) for _ in range(2) for text in [*MOVING_TEXTS, "unaffable playing hello, world! " * 3]
              for offsets in (True, False)]
    for text, offsets in calls:
        assert small(text, return_offsets_mapping=offsets) == ours(text, return_offsets_mapping=offsets), text
        assert len(small.wordpiece.cache) <= 3
        # One text's words are all remembered, with and without their spaces, even past the size.
        assert len(small.wordpiece.spaced_pieces) <= max(3, 2 * len(small.basic.tokenize(text)))
