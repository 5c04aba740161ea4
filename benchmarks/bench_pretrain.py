"""The pretrain row: tokens/s of one masked-LM training step, minibert against transformers.

Both contenders get the same examples (docstring-like paragraphs of long-tailed lengths), the same
model (the `minibert pretrain` default shape, one random initialisation loaded into both), the same
masks (each library's own collator with the same seed: the draws are identical), and take one
forward, backward and AdamW step per call. minibert runs its pretraining path: the unpadded encoder
(no work on padding) and the head at the masked positions only (pretraining/sparse.py);
transformers runs BertForMaskedLM on the padded batch, the head at every position. Tokens/s counts
real tokens.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from harness import check_goal, log, long_tailed_lengths, time_alternating


def pretrain_rows(quick: bool) -> list[dict]:
    import transformers

    from minibert import BertForMaskedLM, BertTokenizer, DataCollatorForLanguageModeling
    from minibert.pretraining.sparse import sparse_masked_lm_loss
    from minibert.pretraining.step import Settings, build_model

    settings = Settings(layers=2, hidden=64, heads=2) if quick else Settings()
    vocab_size, batch_size = (1000, 8) if quick else (8000, 64)
    lengths = long_tailed_lengths(batch_size, seed=7, median=30 if quick else 40, longest=64 if quick else 128)
    generator = torch.Generator().manual_seed(7)
    examples = [{"input_ids": [2] + torch.randint(5, vocab_size, (length - 2,), generator=generator).tolist() + [3]}
                for length in lengths]
    with tempfile.TemporaryDirectory(prefix="minibert-bench-pretrain-") as temporary:
        directory = Path(temporary)
        tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{index}" for index in range(5, vocab_size)]
        (directory / "vocab.txt").write_text("\n".join(tokens) + "\n")
        ours_tokenizer = BertTokenizer(directory / "vocab.txt")
        torch.manual_seed(0)
        build_model(settings, vocab_size).save_pretrained(directory)
        ours = BertForMaskedLM.from_pretrained(directory).train()
        theirs = transformers.BertForMaskedLM.from_pretrained(directory, attn_implementation="sdpa").train()
        theirs_tokenizer = transformers.BertTokenizerFast.from_pretrained(str(directory))
    ours_batch = DataCollatorForLanguageModeling(ours_tokenizer, seed=0)(examples)
    theirs_batch = transformers.DataCollatorForLanguageModeling(theirs_tokenizer, seed=0)(examples)
    assert torch.equal(ours_batch["labels"], theirs_batch["labels"]), "the two collators drew different masks"
    optimizers = {name: torch.optim.AdamW(model.parameters(), lr=1e-4) for name, model in
                  [("minibert", ours), ("transformers", theirs)]}

    def minibert_step() -> None:
        sparse_masked_lm_loss(ours, ours_batch["input_ids"], ours_batch["attention_mask"], ours_batch["labels"]).backward()
        optimizers["minibert"].step()
        optimizers["minibert"].zero_grad(set_to_none=True)

    def transformers_step() -> None:
        theirs(**theirs_batch).loss.backward()
        optimizers["transformers"].step()
        optimizers["transformers"].zero_grad(set_to_none=True)

    rows = []
    for threads in sorted({1, torch.get_num_threads()}):  # one thread, and torch's count (what run.py set)
        rows.append(timed_row(settings, vocab_size, lengths, threads, minibert_step, transformers_step, quick))
    return rows


def timed_row(settings, vocab_size: int, lengths: list[int], threads: int, minibert_step, transformers_step,
              quick: bool) -> dict:
    """Both steps alternated under ``threads`` torch threads: one row of the table."""
    name = f"{settings.layers}x{settings.hidden} v{vocab_size} {len(lengths)} rows, {threads} thr"
    log(f"  pretraining step {name} ...")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        timing = time_alternating({"minibert": minibert_step, "transformers_sdpa": transformers_step},
                                  repeats=2 if quick else 7)
    finally:
        torch.set_num_threads(previous)
    real = sum(lengths)
    ratio = timing.ratio("transformers_sdpa", "minibert")
    padding = 1 - real / (len(lengths) * max(lengths))
    row = {"section": "pretrain", "name": name, "unit": "ms", "lengths": lengths, "threads": threads,
           "minibert": 1000 * timing.median("minibert"), "transformers_sdpa": 1000 * timing.median("transformers_sdpa"),
           "speedup": ratio, "minibert_tokens_per_s": real / timing.median("minibert"),
           "transformers_tokens_per_s": real / timing.median("transformers_sdpa"), "padding": padding,
           "others_cpu": timing.others_cpu,
           "note": f"tokens/s {real / timing.median('minibert'):.0f} vs {real / timing.median('transformers_sdpa'):.0f}; "
                   f"{100 * padding:.0f}% padding; others used {100 * timing.others_cpu:.0f}% of the CPU"}
    log(f"    {row['minibert']:.0f} ms vs {row['transformers_sdpa']:.0f} ms: {ratio:.2f}x")
    return check_goal(row, ">= 2.0x", ratio)
