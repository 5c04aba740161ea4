"""minibert against transformers' BertModel: one command, one table, one JSON document.

    python benchmarks/run.py            # the full run (about 10 minutes on 2 CPU cores)
    python benchmarks/run.py --quick    # a tiny model, every row, under a minute
    python -m minibert bench [options]  # the same
    python benchmarks/run.py --only onnx,precision   # ONNX Runtime, bf16 and int8 rows (needs '.[bench]')

Both libraries load the same randomly initialised checkpoint (bert-base-cased's shape, written by
transformers), in one process, with the runs alternated and medians taken. A progress line per row
goes to stderr; stdout gets the machine line, the table, and, last, one line of JSON (also written
to --json PATH).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # harness, bench_* beside this file

import torch  # noqa: E402

from harness import (  # noqa: E402
    BERT_BASE_CASED,
    TINY,
    dump,
    log,
    machine,
    machine_line,
    quiet_transformers,
    table,
    write_checkpoint,
)

SECTIONS = ("model", "onnx", "precision", "load", "fresh", "training", "pretrain", "compile", "tokenizer", "gpu")


def tokenizer_rows(quick: bool) -> list[dict]:
    """benchmarks/bench_tokenizer.py's rows, when that file exists (it has its own owner)."""
    try:
        import bench_tokenizer
    except ModuleNotFoundError as error:
        if error.name != "bench_tokenizer":
            raise
        return [{"section": "tokenizer", "name": "-", "note": "benchmarks/bench_tokenizer.py does not exist yet"}]
    try:
        rows = bench_tokenizer.run(quick)
    except OSError as error:  # no vocabulary file on this machine
        return [{"section": "tokenizer", "name": "-", "note": f"skipped: {error}"}]
    for row in rows:  # its own keys stay in the JSON; the table needs a name and a note
        row.setdefault("section", "tokenizer")
        name, _, kind = str(row.get("contender", row.get("row", "-"))).partition(" (")
        row.setdefault("name", name)
        if "texts_per_s" in row:
            row.setdefault("note", f"{row['texts_per_s']:.0f} texts/s = {row.get('ratio_vs_minibert', 1):.2f}x "
                                   f"minibert's {('(' + kind) if kind else ''}".rstrip())
    return rows


def run_section(section: str, directory: Path, config: dict, quick: bool) -> list[dict]:
    import bench_load
    import bench_model

    if section == "model":
        return bench_model.model_rows(directory, config, quick)
    if section == "load":
        return bench_load.load_rows(directory, quick)
    if section == "fresh":
        return bench_load.first_output_rows(directory, quick)
    if section == "training":
        return bench_model.training_rows(directory, config, quick)
    if section == "pretrain":
        import bench_pretrain

        return bench_pretrain.pretrain_rows(quick)
    if section == "compile":
        return bench_model.compile_rows(directory, config, quick)
    if section == "tokenizer":
        return tokenizer_rows(quick)
    if section == "onnx":
        import bench_onnx

        return bench_onnx.onnx_rows(directory, config, quick)
    if section == "precision":
        import bench_precision

        return bench_precision.precision_rows(directory, config, quick)
    import bench_gpu

    return bench_gpu.gpu_rows(directory, config, quick)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="benchmarks/run.py", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny model and few repeats: proves the script works")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the JSON document here")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections to run (default: all of {','.join(SECTIONS)})")
    parser.add_argument("--checkpoint", type=Path, metavar="DIR",
                        help="a BERT checkpoint directory to use instead of a random bert-base-cased-shaped one")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sections = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise SystemExit(f"unknown sections {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    quiet_transformers()
    info = machine()
    log(f"minibert benchmarks{' (quick)' if args.quick else ''}: {machine_line(info)}")
    with tempfile.TemporaryDirectory(prefix="minibert-bench-") as temporary:
        if args.checkpoint:
            directory = args.checkpoint
            config = json.loads((directory / "config.json").read_text())
        else:
            config = dict(TINY if args.quick else BERT_BASE_CASED)
            log(f"writing a random checkpoint of shape {config} ...")
            directory = write_checkpoint(config, Path(temporary))
        rows: list[dict] = []
        for section in sections:
            log(f"[{section}]")
            rows += run_section(section, directory, config, args.quick)
    info["load_average_after"] = round(os.getloadavg()[0], 2)
    document = {"machine": info, "quick": args.quick, "config": config, "seconds": time.perf_counter() - started,
                "rows": rows}
    print(f"Machine: {machine_line(info)}")
    print(table(rows))
    goals = [row for row in rows if row.get("goal")]
    print(f"Goals met: {sum(bool(row.get('met')) for row in goals)} of {len(goals)}. "
          "speedup = transformers sdpa / minibert (above 1: minibert faster or smaller; in the onnx rows "
          "ORT optimized / minibert, in the precision rows minibert float32 / that precision); "
          "roofline = minibert's GFLOP/s on real tokens / a matmul's, measured alongside "
          "(2048^3 float32 on the CPU, 8192^3 bfloat16 on a GPU).")
    text = dump(document)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
