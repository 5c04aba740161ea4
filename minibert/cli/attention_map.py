"""Attention maps (``python -m minibert attention``): one head's probabilities as a heatmap with the
tokens on both axes, or every head of a layer as a grid. matplotlib is the optional extra ``[plot]``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from ..loading.atomic import save_files

# Inches per panel, at DPI dots per inch: a single head is SINGLE_INCHES (with its colour bar),
# a grid is GRID_INCHES per head. Fixed sizes, so that a test can check the file.
SINGLE_INCHES = (7.0, 6.0)
GRID_INCHES = 3.0
DPI = 100


def attention_probs(model: torch.nn.Module, batch: dict[str, torch.Tensor], layer: int) -> torch.Tensor:
    """The probabilities of ``layer`` (1 = first) for one text: (heads, seq, seq), rows = queries."""
    layers = model.config.num_hidden_layers
    if not 1 <= layer <= layers:
        raise ValueError(f"--layer must be between 1 and {layers} (the model has {layers} layers), got {layer}")
    with torch.no_grad():
        out = model(**batch, output_attentions=True)
    return out.attentions[layer - 1][0].float().cpu()  # (heads, seq, seq)


def grid_shape(heads: int) -> tuple[int, int]:
    """(rows, columns) of the grid for ``heads`` panels: as square as possible."""
    columns = math.ceil(math.sqrt(heads))
    return math.ceil(heads / columns), columns


def plot_attention(probs: torch.Tensor, tokens: list[str], path: str | os.PathLike, title: str,
                   head: int | None = None) -> tuple[int, int]:
    """Write the heatmap of head ``head`` (1 = first), or of every head, to ``path`` (PNG).

    probs: (heads, seq, seq). Returns the image size in pixels (width, height).
    """
    heads = probs.size(0)
    if head is not None and not 1 <= head <= heads:  # checked first, as --layer is: a bad argument is said as such
        raise ValueError(f"--head must be between 1 and {heads} (the layer has {heads} heads), got {head}")
    try:
        import matplotlib
    except ImportError:
        raise ImportError("attention maps need matplotlib: pip install 'minibert[plot]'") from None
    matplotlib.use("Agg")  # files only; no window, no display needed
    import matplotlib.pyplot as plt

    if head is not None:
        figure, axis = plt.subplots(figsize=SINGLE_INCHES, dpi=DPI)
        image = _heatmap(axis, probs[head - 1], tokens, f"head {head}", labels=True)
        figure.colorbar(image, ax=axis, label="attention probability")
    else:
        rows, columns = grid_shape(heads)
        figure, axes = plt.subplots(rows, columns, figsize=(GRID_INCHES * columns, GRID_INCHES * rows), dpi=DPI,
                                    squeeze=False)
        for index, axis in enumerate(axes.flat):
            if index < heads:
                _heatmap(axis, probs[index], tokens, f"head {index + 1}", labels=len(tokens) <= 24)
            else:
                axis.axis("off")
    figure.suptitle(title)
    figure.tight_layout()
    path = Path(path)  # written all or nothing: an old image stays whole if the disk is full
    try:
        save_files(path.parent, {path.name: lambda staged: figure.savefig(staged, dpi=DPI)})
        width, height = (round(size * DPI) for size in figure.get_size_inches())
    finally:
        plt.close(figure)
    return width, height


def _heatmap(axis, probs: torch.Tensor, tokens: list[str], title: str, labels: bool):
    """probs (seq, seq): rows are the attending tokens (queries), columns the attended ones (keys)."""
    image = axis.imshow(probs.numpy(), cmap="viridis", vmin=0.0, vmax=float(probs.max()))
    axis.set_title(title, fontsize=9)
    if labels:
        positions = range(len(tokens))
        axis.set_xticks(positions, tokens, rotation=90, fontsize=7)
        axis.set_yticks(positions, tokens, fontsize=7)
    else:
        axis.set_xticks([])
        axis.set_yticks([])
    return image
