"""Checkpoints in and out: the name table and safetensors files (finding them: hub.py).

The table below is the whole correspondence between transformers' tensor names and ours. The
loader walks it for every tensor in a checkpoint and reports what it used, what it ignored and
what the model needed but did not find. Nothing else in minibert knows transformers' names.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from .atomic import SaveInProgressError
from .hub import SAFE_WEIGHTS

logger = logging.getLogger("minibert")
# The safetensors metadata key under which a minibert save records the sha256 of its config.json.
CONFIG_DIGEST_KEY = "minibert_config_sha256"

# transformers' module name -> minibert's (the tensor's own name, weight or bias, carries over).
# "{}" stands for a layer number. A full tensor name mapped to None is in checkpoints but dropped on purpose.
CHECKPOINT_NAMES: dict[str, str | None] = {
    "embeddings.word_embeddings": "embeddings.word_embeddings",
    "embeddings.position_embeddings": "embeddings.position_embeddings",
    "embeddings.token_type_embeddings": "embeddings.token_type_embeddings",
    "embeddings.LayerNorm": "embeddings.layer_norm",
    "embeddings.position_ids": None,  # the buffer arange(max_positions): positions are computed instead
    "embeddings.token_type_ids": None,  # an all-zero buffer some exports carry
    "encoder.layer.{}.attention.self.query": "encoder.layers.{}.attention.query",
    "encoder.layer.{}.attention.self.key": "encoder.layers.{}.attention.key",
    "encoder.layer.{}.attention.self.value": "encoder.layers.{}.attention.value",
    "encoder.layer.{}.attention.output.dense": "encoder.layers.{}.attention.output",
    "encoder.layer.{}.attention.output.LayerNorm": "encoder.layers.{}.attention_norm",
    "encoder.layer.{}.intermediate.dense": "encoder.layers.{}.feed_forward.intermediate",
    "encoder.layer.{}.output.dense": "encoder.layers.{}.feed_forward.output",
    "encoder.layer.{}.output.LayerNorm": "encoder.layers.{}.feed_forward_norm",
    "pooler.dense": "pooler.dense",
    # Task heads (heads.py): the pre-training heads sit under "cls.", the fine-tuning heads at the top.
    "cls.predictions.transform.dense": "mlm_head.transform",
    "cls.predictions.transform.LayerNorm": "mlm_head.transform_norm",
    "cls.predictions.bias": "mlm_head.bias",
    "cls.predictions.decoder.weight": None,  # the word embeddings again (tied); some exports store the copy
    "cls.predictions.decoder.bias": None,  # cls.predictions.bias again (tied)
    "cls.seq_relationship": "next_sentence_head",
    "classifier": "classifier",
    "qa_outputs": "span_classifier",
}

# Legacy spellings, as data: older checkpoints (bert-base-cased among them) put the encoder under
# "bert." and call LayerNorm's parameters gamma and beta (TensorFlow's names).
BASE_PREFIX = "bert."
LEGACY_PARAMETER_NAMES = {"gamma": "weight", "beta": "bias"}
# Modules of the encoder itself; in transformers' task-head checkpoints they sit under BASE_PREFIX.
BASE_MODULES = ("embeddings.", "encoder.", "pooler.")



def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile(re.escape(pattern).replace(r"\{\}", r"(\d+)") + r"$")


# (pattern, replacement, the table row it comes from), in both directions.
_FORWARD = [(_compile(source), target, source) for source, target in CHECKPOINT_NAMES.items()]
_BACKWARD = [(_compile(target), source, source) for source, target in CHECKPOINT_NAMES.items() if target is not None]


@dataclass(frozen=True)
class NameMapping:
    """What the name table makes of one checkpoint tensor name, and which rules it took to get there.

    ``target`` is the minibert name relative to the encoder or head (None when dropped on purpose or
    unknown); ``rules`` lists, in the order applied, the legacy rules and the table row that matched.
    """

    source: str
    known: bool
    target: str | None
    rules: tuple[str, ...]

    @property
    def dropped(self) -> bool:
        return self.known and self.target is None


def _lookup(table: list[tuple[re.Pattern[str], str | None, str]], name: str) -> tuple[bool, str | None, str | None]:
    """Match a full tensor name, or its module part plus the parameter name, against a table.

    Returns (matched, the replaced name or None if dropped, the table row that matched)."""
    module, _, parameter = name.rpartition(".")
    for candidate, suffix in ((name, ""), (module, "." + parameter)):
        for pattern, replacement, row in table:
            match = pattern.match(candidate)
            if match:
                if replacement is None:
                    return True, None, row
                return True, replacement.replace("{}", match.group(1) if match.groups() else "") + suffix, row
    return False, None, None


def explain_checkpoint_name(name: str) -> NameMapping:
    """transformers' tensor name -> its minibert name and the rules that mapped it (see NameMapping)."""
    source, rules = name, []
    if name.startswith(BASE_PREFIX):
        name = name.removeprefix(BASE_PREFIX)
        rules.append(f"{BASE_PREFIX!r} prefix")
    module, _, parameter = name.rpartition(".")
    if parameter in LEGACY_PARAMETER_NAMES and module.endswith("LayerNorm"):
        name = f"{module}.{LEGACY_PARAMETER_NAMES[parameter]}"
        rules.append(f"{parameter} -> {LEGACY_PARAMETER_NAMES[parameter]}")
    known, target, row = _lookup(_FORWARD, name)
    if known:
        rules.append(f"table {row!r}" + (" -> None (dropped on purpose)" if target is None else ""))
    return NameMapping(source, known, target, tuple(rules))


def checkpoint_to_minibert(name: str) -> tuple[bool, str | None]:
    """transformers' tensor name -> (known, minibert name relative to the encoder or head; None if dropped)."""
    mapping = explain_checkpoint_name(name)
    return mapping.known, mapping.target


def minibert_to_checkpoint(name: str, base_prefix: str = "") -> str | None:
    """minibert tensor name -> transformers' name; encoder tensors get ``base_prefix`` ("bert." in heads)."""
    known, source, _ = _lookup(_BACKWARD, name.removeprefix(BASE_PREFIX))
    if not known or source is None:
        return None
    return base_prefix + source if source.startswith(BASE_MODULES) else source


def read_tensors(files: list[Path], shapes_only: bool = False,
                 config_digest: str | None = None) -> Iterator[tuple[str, Any]]:
    """Yield (name, tensor) from weight files. Safetensors tensors are memory-mapped, not copied.

    ``shapes_only``: yield (name, shape) instead, reading only the safetensors headers.
    ``config_digest``: the sha256 of the config.json read with these files. A safetensors file whose
    metadata records another (it was saved with another config.json) raises SaveInProgressError
    before any of its tensors is yielded; the tensors come from the very file that was checked.
    """
    from safetensors import SafetensorError, safe_open

    for path in files:
        if path.name.endswith(".bin"):
            try:
                state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except Exception as error:  # torch raises many kinds; the caller needs to know which file
                raise OSError(f"{path} could not be loaded with torch.load(weights_only=True): {error}") from None
            yield from ((name, tuple(tensor.shape) if shapes_only else tensor) for name, tensor in state.items())
            continue
        # safe_open opens the file more than once (the header, then the tensor data), so a save that
        # renames a new file over it in between would pair one file's metadata with the other's
        # tensors. Holding the file open keeps its inode number from being reused: if the name still
        # leads to that inode after the last tensor, every one of safe_open's opens found this file.
        held = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        try:
            opened = os.fstat(held)
            with safe_open(path, framework="pt") as handle:
                check_pairing(path, handle.metadata() or {}, config_digest)
                names = list(handle.keys())
                for name in names:
                    yield name, tuple(handle.get_slice(name).get_shape()) if shapes_only else handle.get_tensor(name)
            if not _still_names(path, opened):
                raise SaveInProgressError(f"{path} was replaced by a save while it was read")
        except SafetensorError as error:
            raise OSError(f"{path} is not a readable safetensors file ({error}); is it truncated?") from None
        finally:
            os.close(held)


def _still_names(path: Path, opened: os.stat_result) -> bool:
    """Whether ``path`` still leads to the file whose stat (taken while it was open) is ``opened``."""
    try:
        return os.path.samestat(opened, os.stat(path))
    except FileNotFoundError:
        return False


def check_pairing(path: Path, metadata: dict[str, str], config_digest: str | None) -> None:
    """Raise SaveInProgressError when a weights file records a config digest other than ``config_digest``.

    Files without one (every checkpoint not saved by minibert) pass.
    """
    saved_with = metadata.get(CONFIG_DIGEST_KEY)
    if config_digest is not None and saved_with is not None and saved_with != config_digest:
        raise SaveInProgressError(
            f"{path.name} in {path.parent} was saved with another config.json than the one there (sha256 "
            f"{saved_with[:12]}... against {config_digest[:12]}...)"
        )


def check_config_fits(config: Any, files: list[Path], *, strict: bool = True,
                      config_digest: str | None = None) -> None:
    """Compare a config with a checkpoint's tensor names and shapes before any module is built.

    Building costs time per layer even on the meta device, so a config.json that says 1,000,000
    layers must fail here, from the file headers, not after minutes of building. Raises
    CheckpointError when the hidden size differs from the embeddings' width, or (when ``strict``)
    when the config wants more layers than the checkpoint holds.
    """
    layers, width = set(), None
    for source, shape in read_tensors(files, shapes_only=True, config_digest=config_digest):
        known, target = checkpoint_to_minibert(source)
        if not known or target is None:
            continue
        layer = re.match(r"encoder\.layers\.(\d+)\.", target)
        if layer:
            layers.add(int(layer.group(1)))
        elif target == "embeddings.word_embeddings.weight" and len(shape) == 2:
            width = (source, shape)
    if width is not None and width[1][1] != config.hidden_size:
        raise CheckpointError(f"the config says hidden_size={config.hidden_size} but the checkpoint's {width[0]} "
                              f"has shape {width[1]}: {width[1][1]} features per token")
    held = max(layers) + 1 if layers else 0
    if strict and config.num_hidden_layers > held:
        raise CheckpointError(
            f"the config says num_hidden_layers={config.num_hidden_layers} but the checkpoint holds "
            + (f"{held} layer(s) (encoder.layer.0..{held - 1})" if held else "no encoder layers")
            + " (pass strict=False to initialise the others freshly)"
        )


# ---- loading into a model ----------------------------------------------------------------


class CheckpointError(OSError):
    """A checkpoint that does not fit the model: tensors missing or of the wrong shape."""


@dataclass(repr=False)
class LoadReport:
    """What a load did: minibert names filled, checkpoint names left unused, minibert names missing."""

    used: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)  # in the checkpoint, not needed by this model
    dropped: list[str] = field(default_factory=list)  # in the checkpoint, dropped on purpose (buffers)
    missing: list[str] = field(default_factory=list)  # needed by the model, not in the checkpoint

    def __repr__(self) -> str:
        """Counts, and the names that need a reader's attention grouped: 'unused=5 (cls.*)'."""
        def part(label: str, names: list[str]) -> str:
            return f"{label}={len(names)}" + (f" ({', '.join(group_names(names))})" if names else "")

        return (f"LoadReport(used={len(self.used)}, {part('dropped', self.dropped)}, "
                f"{part('unused', self.unused)}, {part('missing', self.missing)})")


def group_names(names: list[str]) -> list[str]:
    """Names grouped by their top module ('cls.*'; under 'bert.', the next one: 'bert.pooler.*'); a
    module with a single name keeps the full name."""
    groups: dict[str, list[str]] = {}
    for name in names:
        parts = name.split(".")
        depth = 2 if parts[0] + "." == BASE_PREFIX and len(parts) > 2 else 1
        groups.setdefault(".".join(parts[:depth]), []).append(name)
    return [members[0] if len(members) == 1 else f"{key}.*" for key, members in groups.items()]


def summarize_names(names: list[str]) -> str:
    """Names with layer numbers folded: 'encoder.layer.{0..11}.output.dense.weight'."""
    groups: dict[str, list[int]] = {}
    for name in names:
        key = re.sub(r"\.(\d+)\.", ".{}.", name, count=1)
        number = re.search(r"\.(\d+)\.", name)
        groups.setdefault(key, []).append(int(number.group(1)) if number and key != name else -1)
    folded = []
    for key, numbers in groups.items():
        if key.count("{}") and len(numbers) > 1:
            folded.append(key.replace("{}", "{" + f"{min(numbers)}..{max(numbers)}" + "}"))
        elif key.count("{}"):
            folded.append(key.replace("{}", str(numbers[0])))
        else:
            folded.append(key)
    return ", ".join(sorted(folded))


def load_into(model: torch.nn.Module, files: list[Path], *, strict: bool = True,
              dtype: torch.dtype | str | None = None, device: torch.device | str | None = None,
              fresh_prefixes: tuple[str, ...] = (), config_digest: str | None = None) -> LoadReport:
    """Fill ``model``'s parameters from checkpoint files through the name table.

    The model may live on the meta device: tensors are assigned, not copied into existing storage,
    so the weights exist once (memory-mapped from the file unless a dtype or device change copies them).
    ``dtype``: None keeps the model's (float32), "auto" keeps the file's, a torch.dtype converts.
    Raises CheckpointError for wrong shapes, and for missing tensors when ``strict`` (tensors under
    ``fresh_prefixes``, a task head's own, may always be missing: the caller initialises them).
    ``config_digest``: see read_tensors (SaveInProgressError when the files were saved with another config).
    """
    expected = dict(model.state_dict(keep_vars=True))
    # minibert names are compared without the "bert." a task head puts before the encoder.
    by_plain_name = {name.removeprefix(BASE_PREFIX): name for name in expected}
    report = LoadReport()
    loaded: dict[str, torch.Tensor] = {}
    wrong_shapes = []
    cast: list[str] = []  # integer tensors, cast to floating point
    integers: dict[str, torch.Tensor] = {}  # ... whose dtype (with dtype="auto") the others decide
    first_floating: torch.dtype | None = None  # with dtype="auto", the integer tensors get it (below)
    for source, tensor in read_tensors(files, config_digest=config_digest):
        if first_floating is None and tensor.is_floating_point():
            first_floating = tensor.dtype  # of any tensor, used or not, in file order: as transformers decides
        known, target = checkpoint_to_minibert(source)
        if known and target is None:
            report.dropped.append(source)
            continue
        full_name = by_plain_name.get(target) if known else None
        if full_name is None:
            report.unused.append(source)
            continue
        want = tuple(expected[full_name].shape)
        if tuple(tensor.shape) != want:
            wrong_shapes.append(f"{source}: expected {want} for {full_name}, found {tuple(tensor.shape)}")
            continue
        if not tensor.is_floating_point():
            # Every tensor we load is floating; as transformers does, an integer (or bool) one of the
            # right shape is cast, to the dtype the others get (decided below for "auto").
            cast.append(f"{source} ({str(tensor.dtype).removeprefix('torch.')})")
            if dtype == "auto":
                integers[full_name] = tensor
                continue
        if dtype == "auto":
            pass  # keep the file's dtype
        elif dtype is not None:
            tensor = tensor.to(dtype)
        else:
            tensor = tensor.to(expected[full_name].dtype)
        if device is not None:
            tensor = tensor.to(device)
        loaded[full_name] = tensor
        report.used.append(full_name)
    if wrong_shapes:
        raise CheckpointError("checkpoint tensors have the wrong shape for this config:\n  " + "\n  ".join(wrong_shapes))
    if integers:
        # transformers' dtype="auto" (without a dtype in config.json) is the checkpoint's first floating
        # dtype; the integer tensors get that one, also where the floating tensors' dtypes are mixed.
        common = first_floating or torch.get_default_dtype()
        for full_name, tensor in integers.items():
            loaded[full_name] = tensor.to(device=device or tensor.device, dtype=common)
            report.used.append(full_name)
    if cast:
        logger.warning("Checkpoint tensors of an integer dtype, cast to floating point: %s", ", ".join(cast))
    report.missing = [name for name in expected if name not in loaded and not _is_tied(model, name)]
    required = [name for name in report.missing if not name.startswith(fresh_prefixes)] if fresh_prefixes else report.missing
    if required and strict:
        raise CheckpointError(
            f"the checkpoint lacks {len(required)} tensor(s) the model needs: {summarize_names(required)}"
            " (pass strict=False to initialise them freshly)"
        )
    model.load_state_dict(loaded, strict=False, assign=True)
    if report.unused:
        logger.warning("Checkpoint tensors not used by %s: %s", type(model).__name__, summarize_names(report.unused))
    if report.missing:
        logger.warning("Not in the checkpoint, freshly initialised: %s", summarize_names(report.missing))
    return report


def _is_tied(model: torch.nn.Module, name: str) -> bool:
    """Parameters a model declares as tied to another (an MLM decoder to the word embeddings)."""
    return name in getattr(model, "tied_parameter_names", ())


# ---- saving ------------------------------------------------------------------------------


def weights_writer(model: torch.nn.Module, base_prefix: str = "",
                   config_digest: str | None = None) -> Callable[[Path], None]:
    """A function that writes ``model``'s tensors under transformers' names to a safetensors file.

    ``config_digest`` (the sha256 of the config.json saved with it) goes into the file's metadata,
    so that a loader can tell whether the config.json beside it is the one it was saved with.
    The tensors are gathered now, so a name the table lacks fails before any file is touched.
    For ``atomic.save_files``, which decides where the file goes and when it becomes visible.
    """
    tensors = {}
    for name, tensor in model.state_dict().items():
        if _is_tied(model, name):
            continue  # transformers leaves the tied copy out too
        source = minibert_to_checkpoint(name, base_prefix)
        if source is None:
            raise CheckpointError(f"{name} has no checkpoint name in the table (weights.CHECKPOINT_NAMES)")
        tensors[source] = tensor.detach().to("cpu").contiguous()

    def write(path: Path) -> None:
        from safetensors.torch import save_file

        # "pt" is what transformers' loader looks for in the metadata.
        metadata = {"format": "pt"} if config_digest is None else {"format": "pt", CONFIG_DIGEST_KEY: config_digest}
        save_file(tensors, str(path), metadata=metadata)

    return write
