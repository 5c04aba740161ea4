"""Texts in, vectors out (``python -m minibert encode``): the model's outputs with a short summary,
saved as .npz or printed as JSON on request."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..loading.atomic import save_files
from .text_table import format_number, format_table


@dataclass
class Encoded:
    """tokens per text; input_ids, attention_mask (batch, seq); last_hidden_state (batch, seq, hidden);
    pooler_output (batch, hidden) or None for a model without a pooler."""

    tokens: list[list[str]]
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    last_hidden_state: torch.Tensor
    pooler_output: torch.Tensor | None

    def arrays(self) -> dict[str, np.ndarray]:
        """The tensors as float32/int64 numpy arrays (numpy has no bfloat16)."""
        tensors = {"input_ids": self.input_ids, "attention_mask": self.attention_mask,
                   "last_hidden_state": self.last_hidden_state, "pooler_output": self.pooler_output}
        return {name: (tensor.float() if tensor.is_floating_point() else tensor).cpu().numpy()
                for name, tensor in tensors.items() if tensor is not None}


def encode_texts(model: torch.nn.Module, tokenizer, texts: list[str], device: str | torch.device = "cpu") -> Encoded:
    """Tokenize ``texts`` as one padded batch and run ``model`` (a BertModel) on it."""
    batch = tokenizer(texts, padding=True, truncation=True, max_length=model.config.max_position_embeddings,
                      return_tensors="pt")
    with torch.no_grad():
        out = model(**{key: value.to(device) for key, value in batch.items()})
    tokens = [tokenizer.convert_ids_to_tokens(ids[mask.bool()]) for ids, mask in
              zip(batch["input_ids"], batch["attention_mask"])]
    return Encoded(tokens, batch["input_ids"], batch["attention_mask"], out.last_hidden_state, out.pooler_output)


def summary(encoded: Encoded) -> str:
    """Tokens per text, then shape, dtype and statistics of each output (over real tokens)."""
    lines = [f"text {index + 1}: {' '.join(tokens)}" for index, tokens in enumerate(encoded.tokens)]
    real = encoded.attention_mask.bool().to(encoded.last_hidden_state.device)  # (batch, seq)
    rows = [_stats("last_hidden_state", encoded.last_hidden_state, encoded.last_hidden_state[real])]
    if encoded.pooler_output is not None:
        rows.append(_stats("pooler_output", encoded.pooler_output, encoded.pooler_output))
    lines.append(format_table(["output", "shape", "dtype", "mean", "std", "min", "max"], rows))
    lines.append("(statistics over real tokens; padding positions left out)")
    return "\n".join(lines)


def _stats(name: str, tensor: torch.Tensor, values: torch.Tensor) -> list[str]:
    values = values.double()
    return [name, str(tuple(tensor.shape)), str(tensor.dtype).removeprefix("torch."),
            *(format_number(float(statistic)) for statistic in
              (values.mean(), values.std(), values.min(), values.max()))]


def save_npz(encoded: Encoded, path: str | os.PathLike) -> Path:
    """Save the arrays with numpy.savez, all or nothing (a full disk leaves an old file as it was).

    As numpy.savez, ".npz" is added to a name without it. Returns the path written.
    """
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    arrays = encoded.arrays()
    save_files(path.parent, {path.name: lambda staged: np.savez(staged, **arrays)})
    return path


def to_json(encoded: Encoded) -> str:
    document = {"tokens": encoded.tokens, **{name: array.tolist() for name, array in encoded.arrays().items()}}
    return json.dumps(document)
