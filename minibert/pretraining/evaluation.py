"""What a pretraining run reports: held-out loss and accuracy against a unigram baseline, a fill-mask
table, and the loss curve.

The held-out masks are drawn once, with a fixed seed, so every evaluation of a run (and every run)
scores the same positions. The unigram baseline always predicts the commonest training token: the
plateau a masked LM reaches first, by learning token frequencies before it learns context.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

import torch

from ..heads import BertForMaskedLM
from ..loading.atomic import save_files
from ..tokenizer import BertTokenizer
from .collator import DataCollatorForLanguageModeling
from .sparse import masked_positions_logits

HELD_OUT_SEED = 1234  # the held-out masks: the same in every evaluation and every run
FILL_MASK_SENTENCES = ["Return the [MASK] of the list.", "Raise ValueError if the [MASK] is not found.",
                       "If the argument is [MASK], the default is used.", "Return a new [MASK] object.",
                       "This function is [MASK] and will be removed in a future version."]


@dataclass
class HeldOut:
    """Masked held-out batches (input_ids, attention_mask, labels), and the baseline's one guess."""

    batches: list[dict[str, torch.Tensor]]
    unigram_token: int


def held_out_batches(rows: list[list[int]], collator: DataCollatorForLanguageModeling, batch_size: int,
                     unigram_token: int) -> HeldOut:
    """The held-out rows cut into batches and masked once with HELD_OUT_SEED (the collator's own
    generator is left as it was)."""
    generator, collator.generator = collator.generator, torch.Generator().manual_seed(HELD_OUT_SEED)
    try:
        batches = [collator(rows[start:start + batch_size]) for start in range(0, len(rows), batch_size)]
    finally:
        collator.generator = generator
    return HeldOut(batches, unigram_token)


@torch.no_grad()
def evaluate(model: BertForMaskedLM, held_out: HeldOut, autocast: contextlib.AbstractContextManager) -> dict:
    """{"loss", "accuracy", "unigram_accuracy", "masked_tokens"}: mean cross-entropy (nats) and top-1
    accuracy over every held-out masked token, and the accuracy of always answering the unigram token."""
    was_training = model.training
    model.eval()
    loss_sum, correct, unigram_correct, count = 0.0, 0, 0, 0
    for batch in held_out.batches:
        with autocast:
            logits, targets = masked_positions_logits(model, batch["input_ids"], batch["attention_mask"],
                                                      batch["labels"])  # (masked, vocab), (masked,)
        loss_sum += float(torch.nn.functional.cross_entropy(logits.float(), targets, reduction="sum"))
        correct += int((logits.argmax(-1) == targets).sum())
        unigram_correct += int((targets == held_out.unigram_token).sum())
        count += targets.numel()
    model.train(was_training)
    count = max(count, 1)
    return {"loss": loss_sum / count, "accuracy": correct / count, "unigram_accuracy": unigram_correct / count,
            "masked_tokens": count}


@torch.no_grad()
def fill_mask_table(model: BertForMaskedLM, tokenizer: BertTokenizer, sentences: list[str] = FILL_MASK_SENTENCES,
                    top_k: int = 3) -> str:
    """A text table: each sentence and the model's top_k tokens (with probabilities) for its [MASK]."""
    was_training = model.training
    model.eval()
    lines = []
    for sentence in sentences:
        encoded = tokenizer(sentence, return_tensors="pt")
        logits = model(encoded["input_ids"], encoded["attention_mask"]).logits[0]  # (seq, vocab)
        position = int((encoded["input_ids"][0] == tokenizer.mask_token_id).nonzero()[0])
        probs, ids = logits[position].float().softmax(-1).topk(top_k)
        guesses = "  ".join(f"{tokenizer.convert_ids_to_tokens(int(i)):>12} {float(p):.2f}" for p, i in zip(probs, ids))
        lines.append(f"{sentence:<66} {guesses}")
    model.train(was_training)
    return "\n".join(lines)


def plot_history(history: list[dict], path: Path) -> str | None:
    """The loss curve (training and held-out loss, accuracy against the baseline) as a PNG at path;
    None, or a one-line reason when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "no loss curve: matplotlib is not installed (pip install matplotlib)"
    evaluations = [entry for entry in history if "heldout_loss" in entry]
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    left.plot([e["tokens"] / 1e6 for e in history if "train_loss" in e],
              [e["train_loss"] for e in history if "train_loss" in e], label="training", alpha=0.6)
    left.plot([e["tokens"] / 1e6 for e in evaluations], [e["heldout_loss"] for e in evaluations], "o-", label="held-out")
    left.set(xlabel="tokens seen (millions)", ylabel="masked-token loss (nats)")
    left.legend()
    right.plot([e["tokens"] / 1e6 for e in evaluations], [100 * e["heldout_accuracy"] for e in evaluations], "o-",
               label="model")
    right.plot([e["tokens"] / 1e6 for e in evaluations], [100 * e["unigram_accuracy"] for e in evaluations], "--",
               label="unigram baseline")
    right.set(xlabel="tokens seen (millions)", ylabel="held-out masked-token accuracy (%)")
    right.legend()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    plt.close(figure)
    save_files(path.parent, {path.name: lambda target: target.write_bytes(buffer.getvalue())})
    return None
