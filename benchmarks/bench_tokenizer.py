"""Tokenizer speed: texts/s of minibert's pure-Python BertTokenizer against transformers'.

Contenders, all on the all-MiniLM-L6-v2 vocabulary (uncased), called the same way
(``tok(batch_of_64_texts)``, lists out, no padding):

- minibert ``BertTokenizer`` (pure Python; its per-word cache is emptied before every timed pass,
  so each pass pays for every first sight of a word),
- transformers ``BertTokenizer`` (in transformers 5: the Rust ``tokenizers`` one, using every core),
- ``tokenizers`` ``Tokenizer.encode_batch`` (the same Rust, without transformers around it),
- transformers ``BertTokenizerLegacy`` (the pure-Python one; ``BertTokenizer`` in transformers 4).

The text is real and offline: paragraphs of the docstrings of Python's standard library and of
the installed packages' descriptions (METADATA), drawn with a fixed seed. Each contender warms up
on texts outside the timed sample; then the contenders take turns, in rotating order, and each
reports the median of the repeats. Usage::

    python benchmarks/bench_tokenizer.py [--quick] [--json PATH]

``run(quick)`` returns the rows for a combined runner, one dict per contender::

    {"row": "tokenizer", "contender": "minibert BertTokenizer (pure Python)", "texts_per_s": 24000.0,
     "mb_per_s": 3.1, "ratio_vs_minibert": 1.0, "texts": 20000, "megabytes": 2.6, "repeats": 3,
     "batch_size": 64}

``ratio_vs_minibert`` is the contender's texts/s divided by minibert's (below 1: slower).
"""

from __future__ import annotations

import argparse
import ast
import functools
import json
import os
import platform
import random
import statistics
import sys
import sysconfig
import time
import warnings
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

MINILM_DIR = Path(os.environ.get("MINIBERT_MINILM_DIR") or REPO / ".cache" / "all-MiniLM-L6-v2")
BATCH_SIZE = 64
SEED = 0


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
    standard library's docstrings and the descriptions (METADATA) of the installed packages."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = [path for path in sorted(stdlib.rglob("*.py"))
             if not {"site-packages", "test", "tests"} & set(path.relative_to(stdlib).parts)]
    files += sorted(Path(sysconfig.get_paths()["purelib"]).glob("*.dist-info/METADATA"))
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

    def minibert_call(batch: list[str]) -> Any:
        return ours(batch)

    return {
        "minibert BertTokenizer (pure Python)": (ours, minibert_call),
        "transformers BertTokenizer (Rust)": (rust, rust),
        "tokenizers encode_batch (Rust, bare)": (rust, rust.backend_tokenizer.encode_batch),
        f"transformers {PythonReference.__name__} (pure Python)": (python, python),
    }


def time_pass(call: Callable[[list[str]], Any], texts: list[str]) -> float:
    """Seconds to tokenize ``texts`` in batches."""
    start = time.perf_counter()
    for index in range(0, len(texts), BATCH_SIZE):
        call(texts[index:index + BATCH_SIZE])
    return time.perf_counter() - start


def run(quick: bool = False) -> list[dict]:
    """Time every contender; one row each (see the module docstring for the keys)."""
    if not (MINILM_DIR / "vocab.txt").is_file():
        raise OSError(f"no {MINILM_DIR}/vocab.txt: fetch it with python tests/fetch_minilm.py "
                      "(or set MINIBERT_MINILM_DIR)")
    megabytes = 0.3 if quick else 3.0
    texts = real_texts(megabytes + 0.2)
    warmup = list(texts[:300])
    sample = take_megabytes(texts[300:], megabytes)
    megabytes = sum(map(len, sample)) / 1e6
    repeats = 3 if quick else 5
    timed = contenders()
    ours = timed["minibert BertTokenizer (pure Python)"][0]
    for _, call in timed.values():
        time_pass(call, warmup)

    seconds: dict[str, list[float]] = {name: [] for name in timed}
    for repeat in range(repeats):
        names = list(timed)
        for name in names[repeat % len(names):] + names[:repeat % len(names)]:  # rotate who goes first
            ours.wordpiece.cache.clear()  # a cold cache for every pass: no credit for earlier passes
            seconds[name].append(time_pass(timed[name][1], sample))

    speeds = {name: len(sample) / statistics.median(values) for name, values in seconds.items()}
    baseline = speeds["minibert BertTokenizer (pure Python)"]
    return [dict(row="tokenizer", contender=name, texts_per_s=round(speed, 1),
                 mb_per_s=round(speed * megabytes / len(sample), 3), ratio_vs_minibert=round(speed / baseline, 3),
                 texts=len(sample), megabytes=round(megabytes, 3), repeats=repeats, batch_size=BATCH_SIZE)
            for name, speed in speeds.items()]


def machine() -> dict:
    """CPU, threads and library versions, for the table's machine line."""
    import tokenizers
    import torch
    import transformers

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return dict(cpu=cpu, cpu_count=os.cpu_count(), torch_threads=torch.get_num_threads(), torch=torch.__version__,
                python=platform.python_version(), transformers=transformers.__version__,
                tokenizers=tokenizers.__version__)


def ids_agree(quick: bool) -> bool:
    """Do minibert and the Rust reference give the same ids on (part of) the benchmark text?"""
    timed = contenders()
    texts = take_megabytes(real_texts((0.3 if quick else 3.0) + 0.2)[300:], 0.1 if quick else 0.5)
    ours, rust = timed["minibert BertTokenizer (pure Python)"][0], timed["transformers BertTokenizer (Rust)"][0]
    return ours(texts)["input_ids"] == rust(texts)["input_ids"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="0.3 MB of text and 3 repeats instead of 3 MB and 5")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the JSON result to PATH")
    args = parser.parse_args()
    warnings.simplefilter("ignore")

    rows = run(args.quick)
    info = machine()
    agree = ids_agree(args.quick)
    first = rows[0]
    print(f"tokenizer: {first['texts']} texts, {first['megabytes']:.2f} MB of stdlib docstrings and package descriptions "
          f"(seed {SEED}), batches of {first['batch_size']}, median of {first['repeats']}")
    print(f"machine: {info['cpu']}, {info['cpu_count']} threads (torch uses {info['torch_threads']}), "
          f"torch {info['torch']}, Python {info['python']}, transformers {info['transformers']}, "
          f"tokenizers {info['tokenizers']}")
    print(f"{'contender':<48}{'texts/s':>12}{'MB/s':>9}{'vs minibert':>13}")
    for row in rows:
        print(f"{row['contender']:<48}{row['texts_per_s']:>12,.0f}{row['mb_per_s']:>9.2f}"
              f"{row['ratio_vs_minibert']:>12.2f}x")
    print(f"ids identical to transformers' BertTokenizer on this text: {'yes' if agree else 'NO'}")
    result = dict(benchmark="tokenizer", machine=info, ids_identical=agree, rows=rows)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
