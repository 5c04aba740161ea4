"""Reduced precision on CPU: bf16 and int8 rows, each with its measured accuracy.

Speed: minibert in float32, in bfloat16 (``from_pretrained(..., dtype=torch.bfloat16)``) and with
int8 linear layers (``minibert.quantize(model, "int8")``), alternated, on the benchmark's workloads.
Whether bf16 pays depends on the CPU: AMX or avx512_bf16 multiply bf16 in hardware; on a CPU with
neither, every bf16 matmul converts to float32 and back, and bf16 is slower. The row names the flags.

Accuracy: the real all-MiniLM-L6-v2 (a 6-layer BERT trained for sentence embeddings), on real
sentences: the cosine between each sentence's mean-pooled embedding in float32 and in reduced
precision, and whether the paraphrase ranking (each sentence's other sentences, most similar first)
changes.

    python benchmarks/bench_precision.py [--quick] [--minilm DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # harness beside this file

from harness import REPO, check_goal, dump, log, long_tailed_lengths, make_batch, time_alternating  # noqa: E402

MINILM = Path(os.environ.get("MINIBERT_MINILM_DIR", REPO / ".cache" / "all-MiniLM-L6-v2"))

# Eight pairs of paraphrases (sentence 2k and 2k + 1), on unrelated topics, and of varied length.
PARAPHRASES = [
    "The cat sits outside on the wall.",
    "A cat is sitting on the garden wall.",
    "A man is playing the guitar on stage.",
    "On the stage, a guitarist performs a song.",
    "I love eating pasta for dinner.",
    "Pasta is my favourite evening meal.",
    "The new movie was awesome; we watched it twice last weekend.",
    "We saw the new film two times last weekend because it was so good.",
    "The stock market fell sharply after the interest rate announcement.",
    "Shares dropped quickly once the central bank announced the new rates.",
    "Please restart your computer to finish installing the update.",
    "To complete the update installation, reboot the machine.",
    "Heavy rain is expected across the north of the country tomorrow.",
    "Tomorrow the northern regions will see a lot of rainfall.",
    "She is training every morning for the city marathon.",
    "Each morning she runs to prepare for the marathon in town.",
]

PRECISION_FLAGS = ("amx_bf16", "avx512_bf16", "amx_int8", "avx512_vnni", "avx_vnni", "avx512f", "avx2")


def precision_flags() -> str:
    """The CPU flags that decide whether bf16 and int8 pay, e.g. "avx2 (no AMX, avx512_bf16, VNNI)"."""
    from minibert.fast.quantize import cpu_flags

    flags = cpu_flags()
    present = [flag for flag in PRECISION_FLAGS if flag in flags]
    missing = [flag for flag in ("amx_bf16", "avx512_bf16", "avx512_vnni") if flag not in flags]
    return " ".join(present) + (f" (none of {', '.join(missing)})" if missing else "")


def sentence_embeddings(model: torch.nn.Module, batch: dict) -> torch.Tensor:
    """Mean over the real tokens of the last hidden state, in float32: (sentences, hidden)."""
    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state.float()  # (sentences, seq, hidden)
    mask = batch["attention_mask"][..., None].float()  # (sentences, seq, 1)
    return (hidden * mask).sum(1) / mask.sum(1)  # (sentences, hidden)


def paraphrase_rankings(embeddings: torch.Tensor) -> list[list[int]]:
    """For each sentence, the other sentences' indices, most similar (cosine) first."""
    normalized = torch.nn.functional.normalize(embeddings, dim=-1)
    similarity = normalized @ normalized.T  # (sentences, sentences)
    similarity.fill_diagonal_(-2.0)  # itself last, then dropped
    return [row[:-1] for row in similarity.argsort(dim=1, descending=True).tolist()]


def agreement(reference: torch.Tensor, other: torch.Tensor) -> dict:
    """Lowest cosine between the two embeddings of a sentence; ranking changes against the reference."""
    cosine = torch.nn.functional.cosine_similarity(reference, other, dim=-1)  # (sentences,)
    ours, theirs = paraphrase_rankings(reference), paraphrase_rankings(other)
    return {"min_cosine": float(cosine.min()), "mean_cosine": float(cosine.mean()),
            "top1_changes": sum(a[0] != b[0] for a, b in zip(ours, theirs)),
            "ranking_changes": sum(a != b for a, b in zip(ours, theirs)),
            "paraphrase_found": sum(row[0] == index ^ 1 for index, row in enumerate(theirs))}


def minilm_models(directory: Path) -> dict[str, torch.nn.Module]:
    """all-MiniLM-L6-v2 in float32, bf16 and int8."""
    import minibert

    return {"fp32": minibert.BertModel.from_pretrained(directory),
            "bf16": minibert.BertModel.from_pretrained(directory, dtype=torch.bfloat16),
            "int8": minibert.quantize(minibert.BertModel.from_pretrained(directory), "int8")}


def minilm_accuracy(directory: Path = MINILM) -> dict[str, dict]:
    """{"bf16": agreement(...), "int8": agreement(...)} against float32 on PARAPHRASES."""
    import minibert

    tokenizer = minibert.BertTokenizer.from_pretrained(directory)
    batch = dict(tokenizer(PARAPHRASES, padding=True, return_tensors="pt"))
    embeddings = {name: sentence_embeddings(model, batch) for name, model in minilm_models(directory).items()}
    return {name: agreement(embeddings["fp32"], embeddings[name]) for name in ("bf16", "int8")}


def accuracy_note(result: dict) -> str:
    """The paraphrase ranking is each sentence's most similar other sentence (its paraphrase, in float32);
    the full order of the 14 unrelated sentences below it, whose cosines sit close together near 0,
    is reported too but is not a goal: it reshuffles under any rounding."""
    top = "unchanged" if result["top1_changes"] == 0 else f"changed for {result['top1_changes']} of 16"
    return (f"MiniLM cosine >= {result['min_cosine']:.4f}, paraphrase ranking {top} "
            f"(full order differs for {result['ranking_changes']} of 16)")


def precision_rows(directory: Path, config: dict, quick: bool) -> list[dict]:
    """minibert fp32 vs bf16 vs int8 on each workload, with the flags and MiniLM's accuracy in the note."""
    import minibert

    flags = precision_flags()
    if MINILM.joinpath("model.safetensors").is_file():
        accuracy = minilm_accuracy(MINILM)
    else:
        accuracy = None
        log(f"  all-MiniLM-L6-v2 not found at {MINILM}: no accuracy figures (python tests/fetch_minilm.py)")
    models = {"fp32": minibert.BertModel.from_pretrained(directory),
              "bf16": minibert.BertModel.from_pretrained(directory, dtype=torch.bfloat16),
              "int8": minibert.quantize(minibert.BertModel.from_pretrained(directory), "int8")}
    longest = min(270, config["max_position_embeddings"])
    if quick:
        workloads = {"1x32": [32], "4x32": [32] * 4}
    else:
        workloads = {"1x16": [16], "1x128": [128], "1x512": [512], "8x128": [128] * 8,
                     f"long-tailed 16x{longest}": long_tailed_lengths(16, seed=1, longest=longest)}
    rows = []
    for workload, lengths in workloads.items():
        log(f"  precision {workload} ...")
        inputs = make_batch(lengths, config["vocab_size"], seed=6)
        if len(set(lengths)) == 1:
            inputs.pop("attention_mask")  # a full batch, as a caller without padding passes it

        def call(model, inputs=inputs):
            def run():
                with torch.inference_mode():
                    return model(**inputs)
            return run

        timing = time_alternating({name: call(model) for name, model in models.items()},
                                  repeats=2 if quick else (5 if sum(lengths) >= 1024 else 9))
        for name in ("bf16", "int8"):
            row = {"section": "precision", "name": f"{workload} {name}", "unit": "ms",
                   "minibert": 1000 * timing.median(name), "fp32_ms": 1000 * timing.median("fp32"),
                   "speedup": timing.ratio("fp32", name), "cpu_flags": flags,
                   "note": f"vs fp32 {1000 * timing.median('fp32'):.1f} ms: {timing.ratio('fp32', name):.2f}x"}
            if name == "bf16":
                row["note"] += f"; CPU: {flags}"
            if accuracy is not None:
                row["accuracy"] = accuracy[name]
                row["note"] += f"; {accuracy_note(accuracy[name])}"
                if name == "int8":
                    check_goal(row, ">= 0.99", accuracy[name]["min_cosine"])
                    row["met"] = row["met"] and accuracy[name]["top1_changes"] == 0
            rows.append(row)
            log(f"    {row['name']}: {row['minibert']:.1f} ms; {row['note']}")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minilm", type=Path, default=MINILM, help="all-MiniLM-L6-v2 directory (%(default)s)")
    args = parser.parse_args(argv)
    log(f"CPU flags: {precision_flags()}")
    result = minilm_accuracy(args.minilm)
    for name, values in result.items():
        print(f"{name}: {accuracy_note(values)}; the paraphrase is first for {values['paraphrase_found']} of 16")
    print(dump({"cpu_flags": precision_flags(), "accuracy": result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
