"""Layer by layer, how far minibert is from transformers on one checkpoint (``python -m minibert parity``).

Both libraries load the same files and run the same batches; each returns its hidden states
(``output_hidden_states=True``: the embeddings, then every layer's output), its pooler output and,
for a checkpoint with a head, the head's logits. No model code is copied: the values come out of
the two forward passes. Only real tokens are compared (padding positions hold no meaning, and
minibert's unpadded path leaves zeros there).

transformers is imported inside ``run_parity`` only: it is the reference, never a dependency.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import torch

from ..loading.config_file import CONFIG_NAME
from ..loading.dtypes import DTYPE_NAMES
from ..loading.hub import resolve_file

# The Hugging Face course's three sentences, then a padded batch of longer ones.
DEFAULT_BATCHES = [
    ["Hello!", "Cool.", "Nice!"],
    ["The quick brown fox jumps over the lazy dog.",
     "BERT reads a sentence in both directions at once, so every token sees its left and its right.",
     "Short one."],
]


@dataclass(frozen=True)
class Tolerance:
    """An element fails when |minibert - transformers| > atol + rtol * |transformers|."""

    atol: float
    rtol: float

    def __str__(self) -> str:
        return "bit-identical" if self.atol == self.rtol == 0 else f"atol {self.atol:g} + rtol {self.rtol:g}"


# minibert against transformers, same path and dtype. Eager runs the same operations in the same
# order as transformers, so anything but equality is a bug. SDPA: minibert runs a padded batch on
# its real tokens only (other kernels, other summation order), so it rounds differently; the bounds
# are a few units in the last place of the dtype at the hidden states' scale (LayerNorm output, ~1).
TOLERANCES: dict[tuple[str, torch.dtype], Tolerance] = {
    ("eager", torch.float64): Tolerance(0.0, 0.0),
    ("eager", torch.float32): Tolerance(0.0, 0.0),
    ("eager", torch.bfloat16): Tolerance(0.0, 0.0),
    ("eager", torch.float16): Tolerance(0.0, 0.0),
    ("sdpa", torch.float64): Tolerance(1e-12, 1e-12),
    ("sdpa", torch.float32): Tolerance(1e-5, 1e-5),
    ("sdpa", torch.bfloat16): Tolerance(0.1, 0.02),
    ("sdpa", torch.float16): Tolerance(1e-2, 5e-3),
}
# --dtypes: each library's error against transformers' float64 eager run. minibert passes when its
# error is at most DTYPE_ERROR_RATIO times transformers' plus DTYPE_ERROR_ULPS units in the last
# place at the stage's largest value: "no worse than the dtype itself makes transformers".
DTYPE_ERROR_RATIO = 2.0
DTYPE_ERROR_ULPS = 4

def short_name(dtype: torch.dtype) -> str:
    return next(name for name, known in DTYPE_NAMES.items() if known == dtype)


@dataclass
class Row:
    """One stage of one comparison; ``exceeded`` is None when the stage was not compared."""

    stage: str
    values: dict[str, Any]
    exceeded: bool | None


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# ---- running one library --------------------------------------------------------------------


def stage_outputs(base: torch.nn.Module, head: torch.nn.Module | None, batches: list[dict[str, torch.Tensor]],
                  skip_pooler: bool) -> dict[str, torch.Tensor]:
    """Stage name -> the values on real tokens of every batch, flattened and concatenated (1-D).

    Works on either library: both take the same arguments and return the same field names.
    """
    per_stage: dict[str, list[torch.Tensor]] = {}
    with torch.no_grad():
        for batch in batches:
            real = batch["attention_mask"].bool()  # (batch, seq)
            out = base(**batch, output_hidden_states=True)
            names = ["embeddings"] + [f"layer {index}" for index in range(1, len(out.hidden_states))]
            for name, hidden in zip(names, out.hidden_states):
                per_stage.setdefault(name, []).append(hidden[real].flatten())  # (tokens * hidden,)
            if out.pooler_output is not None and not skip_pooler:
                per_stage.setdefault("pooler", []).append(out.pooler_output.flatten())
            if head is None:
                continue
            head_out = head(**batch)
            for key in head_out.keys():
                if key.endswith("logits"):
                    logits = head_out[key]
                    per_token = tuple(logits.shape[:2]) == tuple(real.shape)
                    per_stage.setdefault(f"head {key}", []).append((logits[real] if per_token else logits).flatten())
    return {name: torch.cat(parts).cpu() for name, parts in per_stage.items()}


def differences(actual: torch.Tensor, expected: torch.Tensor) -> tuple[float, float, torch.Tensor]:
    """(max |diff|, max |diff| / |expected|, the elementwise |diff| in float64)."""
    difference = (actual.double() - expected.double()).abs()
    scale = expected.double().abs()
    relative = torch.where(difference == 0, 0.0, difference / scale)  # x/0 = inf where only expected is 0
    return float(difference.max()), float(relative.max()), difference


# ---- the comparisons -----------------------------------------------------------------------


def compare_libraries(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor], tolerance: Tolerance,
                      title: str) -> Table:
    """minibert against transformers at one path and dtype: a row per stage."""
    table = Table(title, ["stage", "max |diff|", "max rel diff", "bit-identical"])
    for stage, expected in theirs.items():
        actual = ours[stage]
        max_abs, max_rel, difference = differences(actual, expected)
        bound = tolerance.atol + tolerance.rtol * expected.double().abs()
        identical = torch.equal(actual, expected)
        exceeded = not identical and not bool((difference <= bound).all())  # NaN never passes
        table.rows.append(Row(stage, {"max_abs_diff": max_abs, "max_rel_diff": max_rel,
                                      "bit_identical": identical}, exceeded))
    return table


def compare_to_float64(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor],
                       reference: dict[str, torch.Tensor], dtype: torch.dtype, implementation: str) -> Table:
    """Each library's error against the float64 reference, side by side."""
    table = Table(f"{implementation}, {short_name(dtype)}: error against transformers' float64 eager run "
                  f"(minibert may be {DTYPE_ERROR_RATIO:g}x transformers' error + {DTYPE_ERROR_ULPS} ulp)",
                  ["stage", "minibert", "transformers", "minibert / transformers"])
    unit = torch.finfo(dtype).eps
    for stage in theirs:
        expected = reference[stage]
        ours_error = differences(ours[stage], expected)[0]
        theirs_error = differences(theirs[stage], expected)[0]
        bound = DTYPE_ERROR_RATIO * theirs_error + DTYPE_ERROR_ULPS * unit * float(expected.abs().max())
        ratio = ours_error / theirs_error if theirs_error > 0 else (1.0 if ours_error == 0 else float("inf"))
        table.rows.append(Row(stage, {"minibert_error": ours_error, "transformers_error": theirs_error,
                                      "ratio": ratio}, not ours_error <= bound))
    return table


# ---- loading and orchestration -------------------------------------------------------------


def head_class_name(model: str) -> str | None:
    """The checkpoint's task class (config.json's architectures) when both libraries have it, else None."""
    values = json.loads(resolve_file(model, CONFIG_NAME).read_text(encoding="utf-8"))
    architectures = values.get("architectures") or []
    name = architectures[0] if architectures else None
    return None if name in (None, "BertModel") else name


class _Runner:
    """Loads ``model`` in both libraries for one path and dtype at a time and collects their stages."""

    def __init__(self, model: str, batches: list[dict[str, torch.Tensor]], device: str, transformers: Any) -> None:
        from .. import heads

        self.model, self.device, self.transformers, self.heads = model, device, transformers, heads
        self.batches = [{key: value.to(device) for key, value in batch.items()} for batch in batches]
        self.head_name = head_class_name(model)
        self.notes: list[str] = []
        if self.head_name is not None and not (hasattr(heads, self.head_name) and hasattr(transformers, self.head_name)):
            self.notes.append(f"no head rows: {self.head_name} is not a class of both libraries")
            self.head_name = None
        self.skip_pooler = False

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def ours(self, implementation: str, dtype: torch.dtype) -> dict[str, torch.Tensor]:
        from ..model import BertModel

        options = dict(attn_implementation=implementation, dtype=dtype, device=self.device)
        base = BertModel.from_pretrained(self.model, **options)
        # A checkpoint without a pooler (masked-LM only) gets a freshly drawn one in each library.
        if any(name.startswith("pooler.") for name in base.load_report.missing):
            self.skip_pooler = True
            self.note("no pooler row: the checkpoint has no pooler")
        head = None
        if self.head_name is not None:
            head = getattr(self.heads, self.head_name).from_pretrained(self.model, strict=False, **options)
            fresh = [name for name in head.load_report.missing if not name.startswith("bert.pooler.")]
            if fresh:
                self.note(f"no head rows: the checkpoint lacks {self.head_name}'s head ({fresh[0]}, ...)")
                self.head_name, head = None, None
        return stage_outputs(base, head, self.batches, self.skip_pooler)

    def theirs(self, implementation: str, dtype: torch.dtype) -> dict[str, torch.Tensor]:
        options = dict(attn_implementation=implementation, dtype=dtype)
        base = self.transformers.BertModel.from_pretrained(str(self.model), **options).to(self.device).eval()
        head = None
        if self.head_name is not None:
            head = getattr(self.transformers, self.head_name).from_pretrained(str(self.model), **options)
            head = head.to(self.device).eval()
        return stage_outputs(base, head, self.batches, self.skip_pooler)


def run_parity(model: str, batches: list[dict[str, torch.Tensor]], *, dtype: torch.dtype = torch.float32,
               device: str = "cpu", implementations: tuple[str, ...] = ("eager", "sdpa"),
               dtypes: tuple[torch.dtype, ...] = ()) -> list[Table]:
    """Load ``model`` in both libraries per path and dtype, run ``batches``, and compare every stage.

    Returns the tables: one per path at ``dtype`` (minibert vs transformers), then with ``dtypes`` one
    per dtype and path (each library's error against transformers' float64 eager run).
    """
    # The load messages of both libraries (and of optional packages transformers imports) would bury
    # the table; what matters from them becomes a note under it.
    for name in ("minibert", "torchao", "torch.utils._pytree", "transformers"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        import transformers
    except ImportError:
        raise ImportError("parity needs transformers (the reference): pip install transformers") from None
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    runner = _Runner(model, batches, device, transformers)
    tables = []
    for implementation in implementations:
        tolerance = TOLERANCES[(implementation, dtype)]
        ours = runner.ours(implementation, dtype)
        tables.append(compare_libraries(ours, runner.theirs(implementation, dtype), tolerance,
                                        f"minibert vs transformers, {implementation}, {short_name(dtype)} "
                                        f"(tolerance: {tolerance})"))
    reference = runner.theirs("eager", torch.float64) if dtypes else {}
    for run_dtype in dtypes:
        for implementation in implementations:
            try:
                ours, theirs = runner.ours(implementation, run_dtype), runner.theirs(implementation, run_dtype)
            except (RuntimeError, NotImplementedError) as error:  # e.g. a kernel missing for fp16 on a CPU
                table = Table(f"{implementation}, {short_name(run_dtype)}: not run", [])
                table.notes.append(f"{short_name(run_dtype)} on {device} failed: {str(error).splitlines()[0]}")
                tables.append(table)
                continue
            tables.append(compare_to_float64(ours, theirs, reference, run_dtype, implementation))
    tables[0].notes.extend(runner.notes)
    return tables


def make_batches(model: str, texts: list[str], vocab_size: int) -> tuple[list[dict[str, torch.Tensor]], str | None]:
    """The texts (or DEFAULT_BATCHES) tokenized by minibert's tokenizer, as padded batches.

    A checkpoint without vocab.txt gets seeded random ids of the same shapes, with a note; given
    texts then need a tokenizer, so that is an error.
    """
    from ..tokenizer import BertTokenizer

    groups = [texts] if texts else DEFAULT_BATCHES
    try:
        tokenizer = BertTokenizer.from_pretrained(model)
    except OSError as error:
        if texts:
            raise OSError(f"cannot tokenize the texts: {str(error).splitlines()[0]}") from None
        generator = torch.Generator().manual_seed(0)
        batches = []
        for lengths in ([4, 4, 4], [12, 25, 5]):
            ids = torch.randint(0, vocab_size, (len(lengths), max(lengths)), generator=generator)  # (batch, seq)
            mask = (torch.arange(max(lengths))[None] < torch.tensor(lengths)[:, None]).long()  # (batch, seq)
            batches.append({"input_ids": ids * mask, "attention_mask": mask})
        return batches, f"{model} has no tokenizer files, so the batches are seeded random ids (lengths 4,4,4 and 12,25,5)"
    return [dict(tokenizer(group, padding=True, return_tensors="pt")) for group in groups], None
