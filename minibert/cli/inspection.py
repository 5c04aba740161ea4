"""The key mapping made visible (``python -m minibert inspect``): every tensor of a checkpoint, the
minibert parameter it became, and the rule of weights.py that did it; then parameter counts.

The rules come from the loader itself (weights.explain_checkpoint_name), and the verdicts (used,
dropped, unused, missing) from a real load's LoadReport: nothing here re-derives the mapping.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass

import torch

from ..loading.pretrained import PreTrainedBert
from .text_table import format_table
from ..loading.hub import HUB_ARGUMENTS, resolve_weight_files
from ..loading.weights import BASE_PREFIX, explain_checkpoint_name, read_tensors


@dataclass
class TensorRow:
    """One checkpoint tensor (or, with source "", one parameter the checkpoint lacks)."""

    source: str
    shape: tuple[int, ...]
    dtype: str
    target: str  # the minibert parameter's full name, "" if none
    verdict: str  # used, dropped, unused or missing
    rules: str  # the rules of weights.py that applied, in order


def inspect_checkpoint(name_or_path: str | os.PathLike, model_class: type[PreTrainedBert],
                       **load_options) -> tuple[PreTrainedBert, list[TensorRow]]:
    """Load the checkpoint into ``model_class`` (missing tensors initialised) and explain each tensor."""
    quiet = logging.getLogger("minibert")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # the loader's warnings say in one line what the table shows in full
    try:
        model = model_class.from_pretrained(name_or_path, strict=False, **load_options)
    finally:
        quiet.setLevel(level)
    report = model.load_report
    by_plain_name = {name.removeprefix(BASE_PREFIX): name for name in model.state_dict()}
    unused = set(report.unused)
    rows = []
    for source, tensor in read_tensors(resolve_weight_files(name_or_path, **_hub_only(load_options))):
        mapping = explain_checkpoint_name(source)
        rules, target = " + ".join(mapping.rules), ""
        if source in unused:
            verdict = "unused"
            rules = (f"{rules}; {model_class.__name__} has no {mapping.target}" if mapping.known
                     else "no table row matches")
        elif mapping.dropped:
            verdict = "dropped"
        else:
            verdict, target = "used", by_plain_name[mapping.target]
        rows.append(TensorRow(source, tuple(tensor.shape), _dtype_name(tensor), target, verdict, rules))
    parameters = dict(model.named_parameters())
    for name in report.missing:
        tensor = parameters[name] if name in parameters else model.get_buffer(name)
        rows.append(TensorRow("", tuple(tensor.shape), _dtype_name(tensor), name, "missing",
                              "not in the checkpoint: freshly initialised"))
    return model, rows


def _dtype_name(tensor: torch.Tensor) -> str:
    return str(tensor.dtype).removeprefix("torch.")


def _hub_only(options: dict) -> dict:
    return {key: value for key, value in options.items() if key in HUB_ARGUMENTS}


def format_rows(rows: list[TensorRow]) -> str:
    header = ["checkpoint tensor", "shape", "dtype", "minibert parameter", "verdict", "rules"]
    return format_table(header, [[row.source or "-", str(row.shape), row.dtype, row.target or "-", row.verdict,
                                  row.rules] for row in rows])


def parameter_counts(model: torch.nn.Module) -> list[tuple[str, int]]:
    """Parameters per block: the embeddings, each encoder layer, the pooler, each head; then the total.

    Tied parameters (the masked-LM decoder is the word embeddings) count once, as in model.parameters().
    """
    counts: dict[str, int] = {}
    seen: set[int] = set()
    for name, parameter in model.named_parameters():
        if id(parameter) in seen:
            continue
        seen.add(id(parameter))
        plain = name.removeprefix(BASE_PREFIX)
        layer = re.match(r"encoder\.layers\.(\d+)\.", plain)
        block = f"encoder.layers.{layer.group(1)}" if layer else plain.split(".")[0]
        counts[block] = counts.get(block, 0) + parameter.numel()
    return list(counts.items()) + [("total", sum(counts.values()))]


def format_counts(counts: list[tuple[str, int]]) -> str:
    return format_table(["block", "parameters"], [[block, f"{count:,}"] for block, count in counts])
