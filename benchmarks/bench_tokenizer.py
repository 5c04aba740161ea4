"""Tokenizer speed: texts/s of minibert's pure-Python BertTokenizer against transformers'.

Contenders, all on the all-MiniLM-L6-v2 vocabulary (uncased), called the same way
(``tok(batch_of_64_texts)``, lists out, no padding):

- minibert ``BertTokenizer`` (pure Python; its per-word cache is emptied before every timed pass,
  so each pass pays for every first sight of a word),
- transformers ``BertTokenizer`` (in transformers 5: the Rust ``tokenizers`` one, using every core),
- ``tokenizers`` ``Tokenizer.encode_batch`` (the same Rust, without transformers around it),
- transformers ``BertTokenizerLegacy`` (the pure-Python one; ``BertTokenizer`` in transformers 4).

The text is real and offline: paragraphs of the docstrings of Python's standard library and the
installed packages, and of the packages' descriptions (METADATA), files drawn with a fixed seed. Each contender warms up
on the sample, then the contenders take turns (harness.time_alternating: A B C D, D C B A, ...)
and each reports the median of the repeats. Usage::

    python benchmarks/bench_tokenizer.py [--quick] [--json PATH]

``run(quick)`` returns the rows for a combined runner, one dict per contender::

    {"row": "tokenizer", "contender": "transformers pure-Python BertTokenizer", "texts_per_s": 2680.3,
     "mb_per_s": 0.411, "ratio_vs_minibert": 0.088, "texts": 19540, "megabytes": 3.0, "repeats": 5,
     "batch_size": 64, "goal": ">= 2x", "met": true}

``ratio_vs_minibert`` is the contender's texts/s divided by minibert's (below 1: slower). The
pure-Python reference's row also carries the issue's goal (minibert >= 2x faster) as "goal"/"met".

A last row times vocabulary training: ``train_new_from_iterator(texts, 8000)`` on the standard
library's docstrings (minibert.pretraining.corpus, about 1.6 MB), minibert's pure-Python trainer
against transformers' (the Rust WordPieceTrainer), alternated, median of 3 (``--quick``: the 0.3 MB
sample, 2,000 tokens, once). Its "seconds" are minibert's and the Rust trainer's; "ratio" is
minibert's time over the Rust trainer's, with the goal (at most 20x) as "goal"/"met".
"""

from __future__ import annotations

import argparse
import ast
import functools
import json
import os
import random
import sysconfig
import warnings
from pathlib import Path
from typing import Any, Callable

from harness import REPO, check_goal, dump, log, machine, machine_line, time_alternating

MINILM_DIR = Path(os.environ.get("MINIBERT_MINILM_DIR") or REPO / ".cache" / "all-MiniLM-L6-v2")
BATCH_SIZE = 64
SEED = 0
MINIBERT = "minibert BertTokenizer (pure Python)"
RUST_REFERENCE = "transformers BertTokenizer (Rust)"
PYTHON_REFERENCE = "transformers pure-Python BertTokenizer"
TRAINING = "train_new_from_iterator (vocabulary training)"


def paragraphs_of(path: Path) -> list[str]:
    """A .py file's docstrings, or a text file, cut into paragraphs."""
    try:
        source = path.read_text(encoding="utf-8")
        if path.suffix != ".py":
            return source.split("\n\n")
        nodes = ast.walk(ast.parse(source))
    except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
        return []  # test files with deliberately broken source, binary files
    documented = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    return [part for node in nodes if isinstance(node, documented) for part in (ast.get_docstring(node) or "").split("\n\n")]


@functools.cache
def real_texts(megabytes: float) -> tuple[str, ...]:
    """Paragraphs (20+ characters) of at least ``megabytes`` of text, drawn with a fixed seed from the
    docstrings of the standard library and the installed packages, and the packages' descriptions."""
    stdlib, packages = Path(sysconfig.get_paths()["stdlib"]), Path(sysconfig.get_paths()["purelib"])
    files = [path for path in sorted(stdlib.rglob("*.py")) if "site-packages" not in path.relative_to(stdlib).parts]
    files += sorted(packages.rglob("*.py")) + sorted(packages.glob("*.dist-info/METADATA"))
    random.Random(SEED).shuffle(files)
    texts, size = [], 0
    for path in files:
        if size >= megabytes * 1e6:
            break
        for paragraph in map(str.strip, paragraphs_of(path)):
            if len(paragraph) >= 20:
                texts.append(paragraph)
                size += len(paragraph)
    random.Random(SEED).shuffle(texts)
    return tuple(texts)


def take_megabytes(texts: tuple[str, ...], megabytes: float) -> list[str]:
    """The first texts that together hold ``megabytes`` of characters (1 MB = 1e6 characters)."""
    taken, size = [], 0
    for text in texts:
        if size >= megabytes * 1e6:
            break
        taken.append(text)
        size += len(text)
    return taken


@functools.cache
def contenders() -> dict[str, tuple[Any, Callable[[list[str]], Any]]]:
    """name -> (tokenizer, call on one batch)."""
    import transformers

    from minibert.tokenizer import BertTokenizer

    try:  # transformers 5: BertTokenizer is Rust-backed, the pure-Python one is "legacy"
        from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy as PythonReference

        RustReference = transformers.BertTokenizer
    except ImportError:  # transformers 4
        PythonReference, RustReference = transformers.BertTokenizer, transformers.BertTokenizerFast
    ours = BertTokenizer.from_pretrained(MINILM_DIR)
    rust = RustReference.from_pretrained(MINILM_DIR)
    python = PythonReference.from_pretrained(MINILM_DIR)
    rust.model_max_length = python.model_max_length = 1 << 30  # silence "longer than 512" warnings
    return {
        MINIBERT: (ours, ours),
        RUST_REFERENCE: (rust, rust),
        "tokenizers encode_batch (Rust, bare)": (rust, rust.backend_tokenizer.encode_batch),
        PYTHON_REFERENCE: (python, python),  # BertTokenizerLegacy in transformers 5
    }


def run(quick: bool = False) -> list[dict]:
    """Time every contender; one row each (see the module docstring for the keys)."""
    if not (MINILM_DIR / "vocab.txt").is_file():
        raise OSError(f"no {MINILM_DIR}/vocab.txt: fetch it with python tests/fetch_minilm.py "
                      "(or set MINIBERT_MINILM_DIR)")
    megabytes = 0.3 if quick else 3.0
    sample = take_megabytes(real_texts(megabytes), megabytes)
    megabytes = sum(map(len, sample)) / 1e6
    repeats = 3 if quick else 5
    timed = contenders()
    ours = timed[MINIBERT][0]

    def one_pass(call: Callable[[list[str]], Any]) -> Callable[[], None]:
        def tokenize_sample() -> None:
            ours.wordpiece.cache.clear()  # a cold cache for every pass: no credit for earlier passes
            for index in range(0, len(sample), BATCH_SIZE):
                call(sample[index:index + BATCH_SIZE])
        return tokenize_sample

    log(f"  tokenizer: {len(sample)} texts, {megabytes:.2f} MB, {repeats} passes each ...")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seconds = time_alternating({name: one_pass(call) for name, (_, call) in timed.items()}, repeats)
    speeds = {name: len(sample) / value for name, value in seconds.items()}
    rows = [dict(row="tokenizer", contender=name, texts_per_s=round(speed, 1),
                 mb_per_s=round(speed * megabytes / len(sample), 3), ratio_vs_minibert=round(speed / speeds[MINIBERT], 3),
                 texts=len(sample), megabytes=round(megabytes, 3), repeats=repeats, batch_size=BATCH_SIZE)
            for name, speed in speeds.items()]
    check_goal(rows[-1], ">= 2x", speeds[MINIBERT] / speeds[PYTHON_REFERENCE])  # the pure-Python reference
    return rows + [training_row(quick, sample)]


def training_row(quick: bool, sample: list[str]) -> dict:
    """minibert's vocabulary trainer against the Rust one: the same texts, the same vocabulary size."""
    from minibert.pretraining.corpus import docstring_paragraphs

    texts = sample if quick else docstring_paragraphs()
    vocab_size, repeats = (2000, 1) if quick else (8000, 3)
    megabytes = sum(map(len, texts)) / 1e6
    ours, rust = contenders()[MINIBERT][0], contenders()[RUST_REFERENCE][0]
    trained = {}

    def train(tokenizer: Any, name: str) -> Callable[[], None]:
        def call() -> None:
            trained[name] = tokenizer.train_new_from_iterator(texts, vocab_size, show_progress=False)
        return call

    log(f"  tokenizer training: {len(texts)} texts, {megabytes:.2f} MB, {vocab_size} tokens, {repeats} runs each ...")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seconds = time_alternating({"minibert": train(ours, "minibert"), "rust": train(rust, "rust")}, repeats,
                                   warmup=0)
    ratio = seconds["minibert"] / seconds["rust"]
    row = dict(row="tokenizer", contender=TRAINING, seconds={name: round(value, 3) for name, value in seconds.items()},
               ratio=round(ratio, 2), vocab_size=vocab_size, sizes={name: len(tokenizer) for name, tokenizer in
                                                                    trained.items()},
               texts=len(texts), megabytes=round(megabytes, 3), repeats=repeats,
               note=f"{ratio:.1f}x the Rust trainer's time ({seconds['minibert']:.2f} s vs {seconds['rust']:.2f} s, "
                    f"{vocab_size} tokens, {megabytes:.1f} MB)")
    return check_goal(row, "<= 20x", ratio)


def script_texts(script: str, megabytes: float) -> list[str]:
    """The benchmark's paragraphs in one script: "ascii" as they are; "cjk" with each letter replaced
    by a CJK ideograph (seeded: the same text every run); "accents" with a combining acute accent
    (U+0301) after every vowel, the decomposed form that accent stripping has to take apart."""
    texts = take_megabytes(real_texts(max(megabytes, 0.3)), megabytes)
    if script == "cjk":
        generator = random.Random(SEED)
        ideographs = {letter: chr(0x4E00 + generator.randrange(0x5000)) for letter in "abcdefghijklmnopqrstuvwxyz"}
        return [text.lower().translate(str.maketrans(ideographs)) for text in texts]
    if script == "accents":
        return [text.translate(str.maketrans({vowel: vowel + "\u0301" for vowel in "aeiouAEIOU"})) for text in texts]
    return texts


def offsets_rows(quick: bool = False) -> list[dict]:
    """The cost of ``return_offsets_mapping=True`` per script (ASCII, CJK, combining accents): minibert
    with and without offsets, and transformers' Rust tokenizer with offsets, alternated. One row per
    script: seconds per pass, ``offsets_overhead`` (minibert with / without offsets; goal <= 1.5x) and
    ``ratio_vs_transformers`` (minibert with offsets / transformers with offsets)."""
    megabytes, repeats = (0.1, 3) if quick else (1.0, 5)  # 5: a per-round ratio here spreads by ~10%
    timed = contenders()
    ours, rust = timed[MINIBERT][0], timed[RUST_REFERENCE][0]
    rows = []
    for script in ("ascii", "cjk", "accents"):
        sample = script_texts(script, megabytes)

        def one_pass(tokenizer: Any, offsets: bool, sample: list[str] = sample) -> Callable[[], None]:
            def tokenize_sample() -> None:
                ours.wordpiece.clear_caches()
                for index in range(0, len(sample), BATCH_SIZE):
                    tokenizer(sample[index:index + BATCH_SIZE], return_offsets_mapping=offsets)
            return tokenize_sample

        log(f"  tokenizer offsets, {script}: {len(sample)} texts, {sum(map(len, sample)) / 1e6:.2f} MB ...")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            seconds = time_alternating({"minibert": one_pass(ours, False), "minibert_offsets": one_pass(ours, True),
                                        "transformers": one_pass(rust, False),
                                        "transformers_offsets": one_pass(rust, True)}, repeats)
        row = dict(row="tokenizer offsets", contender=f"offsets ({script})", script=script,
                   megabytes=round(sum(map(len, sample)) / 1e6, 3),
                   **{f"{name}_s": round(seconds.median(name), 3) for name in seconds.seconds},
                   offsets_overhead=round(seconds.ratio("minibert_offsets", "minibert"), 2),
                   ratio_vs_transformers=round(seconds.ratio("minibert_offsets", "transformers_offsets"), 2))
        check_goal(row, "<= 1.5x", row["offsets_overhead"])
        rows.append(row)
    return rows


def print_offsets_rows(rows: list[dict]) -> None:
    """The offsets table: seconds per pass of each script's sample, with and without offsets."""
    print(f"return_offsets_mapping=True, {rows[0]['megabytes']:.2f} MB per script, median of the passes (s):")
    print(f"{'script':<10}{'minibert':>10}{'+offsets':>10}{'overhead':>10}{'transformers':>14}{'+offsets':>10}"
          f"{'minibert/transformers':>23}  goal")
    for row in rows:
        print(f"{row['script']:<10}{row['minibert_s']:>10.3f}{row['minibert_offsets_s']:>10.3f}"
              f"{row['offsets_overhead']:>9.2f}x{row['transformers_s']:>14.3f}{row['transformers_offsets_s']:>10.3f}"
              f"{row['ratio_vs_transformers']:>22.2f}x  overhead {row['goal']}: {'met' if row['met'] else 'NOT MET'}")


def ids_agree(quick: bool) -> bool:
    """Do minibert and the Rust reference give the same ids on (part of) the benchmark text?"""
    timed = contenders()
    texts = take_megabytes(real_texts(0.3 if quick else 3.0), 0.1 if quick else 0.5)
    return timed[MINIBERT][0](texts)["input_ids"] == timed[RUST_REFERENCE][0](texts)["input_ids"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="0.3 MB of text and 3 repeats instead of 3 MB and 5")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the JSON result to PATH")
    args = parser.parse_args()

    rows = run(args.quick)
    info = machine()
    import tokenizers

    info["tokenizers"] = tokenizers.__version__
    agree = ids_agree(args.quick)
    print(f"tokenizer: {rows[0]['texts']} texts, {rows[0]['megabytes']:.2f} MB of docstrings and package "
          f"descriptions (seed {SEED}), batches of {BATCH_SIZE}, median of {rows[0]['repeats']} passes")
    print(f"machine: {machine_line(info)}; tokenizers {info['tokenizers']}")
    print(f"{'contender':<48}{'texts/s':>10}{'MB/s':>8}{'vs minibert':>13}  goal")
    training = rows.pop()
    for row in rows:
        goal = f"minibert {row['goal']}: {'met' if row['met'] else 'NOT MET'}" if "goal" in row else ""
        print(f"{row['contender']:<48}{row['texts_per_s']:>10,.0f}{row['mb_per_s']:>8.2f}"
              f"{row['ratio_vs_minibert']:>12.2f}x  {goal}")
    print(f"ids identical to transformers' BertTokenizer on this text: {'yes' if agree else 'NO'}")
    print(f"{training['contender']}: {training['note']}; goal {training['goal']}: "
          f"{'met' if training['met'] else 'NOT MET'}")
    rows.append(training)
    offsets = offsets_rows(args.quick)
    print_offsets_rows(offsets)
    document = dict(benchmark="tokenizer", machine=info, ids_identical=agree, rows=rows, offsets_rows=offsets)
    if args.json:
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    print(dump(document))


if __name__ == "__main__":
    main()
