"""Command line: ``python -m minibert [walkthrough | fill-mask | encode | attention | inspect | parity | bench | pretrain]``
(also installed as the ``minibert`` command). ``--help`` prints DESCRIPTION and EXAMPLES.

With no subcommand it runs the walkthrough: the Hugging Face course's steps, from a config to the hidden
states of three short sentences. Every subcommand takes --model, --device and --dtype; an error is
one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from ..config import BertConfig
from ..loading.dtypes import parse_dtype
from ..model import BertModel
from ..tokenizer import BertTokenizer
from .arguments import check_device, device_name, dtype_name, implementation_names, positive_int
from .pretrain import add_parser as add_pretrain_parser

DEFAULT_MODEL = "bert-base-cased"
DESCRIPTION = """BERT from scratch in plain PyTorch: run a checkpoint, look inside it, compare it with
transformers, or train one. With no command, walk through the steps from a config to hidden states."""
EXAMPLES = """examples:
  python -m minibert --model bert-base-cased
  python -m minibert fill-mask "Paris is the [MASK] of France." --model bert-base-uncased
  python -m minibert encode "Hello!" "Good morning." -o vectors.npz
  python -m minibert parity bert-base-cased --json report.json
  python -m minibert pretrain --minutes 10 --output my-bert

each command has its own help: python -m minibert encode --help"""
# The Hugging Face course's three sentences (chapter 2), and the ids it shows for them: bert-base-uncased's.
COURSE_SENTENCES = ["Hello!", "Cool.", "Nice!"]
COURSE_IDS = [[101, 7592, 999, 102], [101, 4658, 1012, 102], [101, 3835, 999, 102]]


def load_or_random(args: argparse.Namespace) -> tuple[BertModel, BertTokenizer | None]:
    """The pretrained model and its tokenizer; or, when the default model cannot be loaded (offline,
    not cached), with a one-line notice, seeded random weights of bert-base-cased's shape and no
    tokenizer (the course's ids are used instead). A --model that fails to load is an error."""
    name = args.model
    try:
        model = BertModel.from_pretrained(name, dtype=args.dtype, device=args.device)
    except OSError as error:
        if args.model_given:
            raise
        print(f"note: could not load {name}, so the numbers below come from seeded random weights of the same "
              f"shape and the course's token ids ({str(error).splitlines()[0]})")
        torch.manual_seed(0)
        return BertModel(BertConfig(vocab_size=28996)).to(args.device, args.dtype).eval(), None
    print(f"Loaded {name}: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters")
    print(model.load_report)
    try:
        return model, BertTokenizer.from_pretrained(name)
    except OSError as error:
        print(f"note: no tokenizer for {name} ({str(error).splitlines()[0]}); using the course's token ids")
        return model, None


def walkthrough(args: argparse.Namespace) -> int:
    """Text -> tokens -> ids -> hidden states, the course's steps."""
    config = BertConfig()
    print("A BERT-base configuration (transformers' defaults):")
    print(config)
    model, tokenizer = load_or_random(args)
    if tokenizer is not None:
        for sentence in COURSE_SENTENCES:
            print(f"{sentence!r:10} -> tokens {tokenizer.tokenize(sentence)}")
        batch = tokenizer(COURSE_SENTENCES, padding=True, return_tensors="pt")
    else:
        batch = {"input_ids": torch.tensor(COURSE_IDS)}  # (batch=3, seq=4)
    print("input_ids:", batch["input_ids"].tolist())
    with torch.no_grad():
        output = model(**{key: value.to(args.device) for key, value in batch.items()})
    print("last_hidden_state:", tuple(output.last_hidden_state.shape), "(batch, seq, hidden)")
    print(output.last_hidden_state)
    return 0


def load_with_tokenizer(args: argparse.Namespace, model_class: type = None) -> tuple[torch.nn.Module, BertTokenizer]:
    """``model_class.from_pretrained`` (default BertModel) with --dtype and --device, and its tokenizer."""
    model = (model_class or BertModel).from_pretrained(args.model, dtype=args.dtype, device=args.device)
    return model, BertTokenizer.from_pretrained(args.model)


def fill_mask(args: argparse.Namespace) -> int:
    """Print the top-k tokens for each [MASK] in the text, with their probabilities."""
    from ..loading.auto import AutoModelForMaskedLM

    model, tokenizer = load_with_tokenizer(args, AutoModelForMaskedLM)
    fresh = [name for name in model.load_report.missing if name.startswith("mlm_head.")]
    if fresh:
        raise ValueError(
            f"{args.model} has no masked-LM head (cls.predictions.*, e.g. {fresh[0]} is missing), so its "
            "predictions would come from random weights; use a checkpoint saved with its pre-training head, "
            "such as bert-base-uncased or bert-base-cased"
        )
    input_ids = tokenizer(args.text, return_tensors="pt")["input_ids"]  # (1, seq)
    positions = (input_ids[0] == tokenizer.mask_token_id).nonzero().flatten().tolist()
    if not positions:
        raise ValueError(f"the text has no {tokenizer.mask_token} to fill")
    with torch.no_grad():
        probs = model(input_ids.to(args.device)).logits[0].float().softmax(-1).cpu()  # (seq, vocab)
    for position in positions:
        if len(positions) > 1:
            print(f"{tokenizer.mask_token} at token {position}:")
        top = probs[position].topk(min(args.top_k, probs.size(-1)))
        for score, token_id in zip(top.values.tolist(), top.indices.tolist()):
            filled = input_ids[0].clone()
            filled[position] = token_id
            sentence = tokenizer.decode(filled[1:-1])  # without [CLS] ... [SEP]
            print(f"{score:7.4f}  {tokenizer.convert_ids_to_tokens(token_id):<15} {sentence}")
    return 0


def encode_command(args: argparse.Namespace) -> int:
    """Tokenize, run, summarise; save the arrays (.npz) or print them (JSON) on request."""
    from . import encode as encoding

    model, tokenizer = load_with_tokenizer(args)
    note_truncation(tokenizer, args.texts, model.config.max_position_embeddings)
    encoded = encoding.encode_texts(model, tokenizer, args.texts, args.device)
    if args.json:
        print(encoding.to_json(encoded))
        return 0
    print(encoding.summary(encoded))
    if args.output:
        written = encoding.save_npz(encoded, args.output)
        print(f"saved {', '.join(encoded.arrays())} to {written}")
    return 0


def note_truncation(tokenizer: BertTokenizer, texts: list[str], positions: int) -> None:
    """One line on stderr (stdout may carry JSON) for each text longer than the model's positions."""
    for index, text in enumerate(texts):
        length = len(tokenizer(text)["input_ids"])
        if length > positions:
            print(f"note: text {index + 1} has {length:,} tokens; only its first {positions} are run "
                  f"(the model's max_position_embeddings)", file=sys.stderr)


def attention_command(args: argparse.Namespace) -> int:
    """Heatmap of one head's attention probabilities, or of every head of a layer, as a PNG."""
    from .attention_map import attention_probs, plot_attention

    model, tokenizer = load_with_tokenizer(args)
    note_truncation(tokenizer, [args.text], model.config.max_position_embeddings)
    batch = tokenizer(args.text, truncation=True, max_length=model.config.max_position_embeddings,
                      return_tensors="pt")
    probs = attention_probs(model, {key: value.to(args.device) for key, value in batch.items()}, args.layer)
    tokens = tokenizer.convert_ids_to_tokens(batch["input_ids"][0])
    name = Path(args.model).name if Path(args.model).is_dir() else args.model
    title = f"{name}: layer {args.layer}" + (f", head {args.head}" if args.head else f", {probs.size(0)} heads")
    width, height = plot_attention(probs, tokens, args.output, title, args.head)
    print(f"wrote {args.output} ({width}x{height} px): {title}; rows attend to columns; {len(tokens)} tokens")
    return 0


def inspect_command(args: argparse.Namespace) -> int:
    """Every checkpoint tensor, the parameter it became and the rule that did it; counts; the config."""
    from .. import heads
    from .inspection import format_counts, format_rows, inspect_checkpoint, parameter_counts

    classes = {"BertModel": BertModel, **heads.TASK_MODELS}
    model_class = classes.get(args.model_class)
    if model_class is None:
        raise ValueError(f"unknown --class {args.model_class!r}; the model classes are {', '.join(classes)}")
    model, rows = inspect_checkpoint(args.model, model_class, dtype=args.dtype, device=args.device)
    print(f"{args.model} as {model_class.__name__}: {len(rows)} rows")
    print(format_rows(rows))
    print()
    print(model.load_report)
    print()
    print(format_counts(parameter_counts(model)))
    print()
    print(model.config)
    return 0


def parity_command(args: argparse.Namespace) -> int:
    """Per stage, minibert against transformers (exit 1 when a tolerance is exceeded)."""
    from ..config import BertConfig as Config
    from .parity import make_batches, run_parity
    from .parity_report import first_exceeded, format_tables, tables_to_json, write_json

    texts = list(args.texts)
    if args.target is not None:
        texts.insert(0, args.target)  # --model named the model, so the first word was a text
    tables_out = sys.stderr if args.json == "-" else sys.stdout  # stdout then carries the JSON alone
    batches, note = make_batches(args.model, texts, Config.from_pretrained(args.model).vocab_size)
    if note:
        print(f"note: {note}", file=tables_out)
    dtypes = tuple(parse_dtype(name) for name in args.dtypes.split(",")) if args.dtypes else ()
    tables = run_parity(args.model, batches, dtype=args.dtype or torch.float32, device=args.device,
                        implementations=tuple(args.implementations.split(",")), dtypes=dtypes)
    print(format_tables(tables), file=tables_out)
    if args.json:
        write_json(args.json, tables_to_json(args.model, args.device, tables))
    return 1 if first_exceeded(tables) else 0


def bench(args: argparse.Namespace) -> int:
    """Run benchmarks/run.py (it lives in the source checkout, beside this package) with the given options."""
    import importlib.util

    runner = Path(__file__).resolve().parents[2] / "benchmarks" / "run.py"
    if not runner.is_file():
        print(f"error: {runner} not found; the benchmarks come with a source checkout of minibert", file=sys.stderr)
        return 2
    spec = importlib.util.spec_from_file_location("minibert_benchmarks_run", runner)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(args.options)


def build_parser() -> argparse.ArgumentParser:
    # The options every command takes. SUPPRESS leaves an option given before the command alone.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--model", default=argparse.SUPPRESS,
                        help=f"hub id or local directory (default: {DEFAULT_MODEL})")
    common.add_argument("--device", type=device_name, default=argparse.SUPPRESS, help="cpu (default), cuda, ...")
    common.add_argument("--dtype", type=dtype_name, default=argparse.SUPPRESS,
                        help="fp32 (default), bf16, fp16 or fp64: the dtype the weights are loaded in")
    parser = argparse.ArgumentParser(prog="minibert", description=DESCRIPTION, epilog=EXAMPLES, parents=[common],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(run=walkthrough)
    commands = parser.add_subparsers(title="commands")
    walk = commands.add_parser("walkthrough", parents=[common], help="config -> model -> hidden states (the default)")
    walk.set_defaults(run=walkthrough)
    fill = commands.add_parser("fill-mask", parents=[common], help="the likeliest tokens for [MASK] (masked-LM head)")
    fill.add_argument("text", help='text with one or more [MASK], e.g. "Paris is the [MASK] of France."')
    fill.add_argument("--top-k", type=positive_int, default=5, help="tokens to show per mask (default: %(default)s)")
    fill.set_defaults(run=fill_mask)
    enc = commands.add_parser("encode", parents=[common], help="texts -> last_hidden_state and pooler_output")
    enc.add_argument("texts", nargs="+", metavar="TEXT", help="one or more texts, run as one padded batch")
    saving = enc.add_mutually_exclusive_group()
    saving.add_argument("--output", "-o", metavar="OUT.npz", help="save the arrays with numpy.savez")
    saving.add_argument("--json", action="store_true", help="print tokens and arrays as one JSON document")
    enc.set_defaults(run=encode_command)
    att = commands.add_parser("attention", parents=[common], help="heatmap of attention probabilities (PNG)")
    att.add_argument("text")
    att.add_argument("--layer", type=positive_int, required=True, help="1 = the first layer")
    att.add_argument("--head", type=positive_int, help="1 = the first head (default: every head, as a grid)")
    att.add_argument("--output", "-o", default="attention.png", help="PNG file (default: %(default)s)")
    att.set_defaults(run=attention_command)
    ins = commands.add_parser("inspect", parents=[common], help="each checkpoint tensor, its parameter and rule")
    ins.add_argument("target", nargs="?", metavar="MODEL", help="hub id or local directory (or use --model)")
    ins.set_defaults(target_is_model=True)
    ins.add_argument("--class", dest="model_class", default="BertModel",
                     help="the model class to load into (default: %(default)s; e.g. BertForMaskedLM)")
    ins.set_defaults(run=inspect_command)
    par = commands.add_parser("parity", parents=[common], help="per layer, minibert against transformers")
    par.add_argument("target", nargs="?", metavar="MODEL", help="hub id or local directory (or use --model)")
    par.add_argument("texts", nargs="*", metavar="TEXT", help="texts to run (default: the course's sentences and a "
                                                              "padded batch of longer ones)")
    par.add_argument("--implementations", type=implementation_names, default="eager,sdpa",
                     help="attention paths to compare (default: %(default)s)")
    par.add_argument("--dtypes", help="e.g. fp32,bf16,fp16: each library's error against a float64 run")
    par.add_argument("--json", metavar="PATH", help="write the tables as JSON ('-' prints them)")
    par.set_defaults(run=parity_command)
    # Every option goes on to benchmarks/run.py (try: python -m minibert bench -h); "+" is a prefix
    # no option uses, so that argparse here leaves "--quick" and the rest alone.
    runner = commands.add_parser("bench", help="minibert against transformers: speed, memory, load time",
                                 add_help=False, prefix_chars="+")
    runner.add_argument("options", nargs=argparse.REMAINDER, help="options of benchmarks/run.py")
    runner.set_defaults(run=bench)
    add_pretrain_parser(commands)
    return parser


def one_line(error: BaseException) -> str:
    """An exception as one line: its message's lines joined; the type named unless it is a plain
    input or file error, whose message already says what went wrong."""
    message = "; ".join(line.strip() for line in str(error).splitlines() if line.strip()) or repr(error)
    if isinstance(error, (OSError, ValueError, TypeError, ImportError, KeyError)):
        return message
    return f"{type(error).__name__}: {message}"


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: sys.argv[1:]), run the command, and return its exit status."""
    args = build_parser().parse_args(argv)
    # parity and inspect take the model as their first word too; with --model given, parity's first
    # word is a text and inspect refuses two models.
    if getattr(args, "target", None) is not None and not hasattr(args, "model"):
        args.model, args.target = args.target, None
    if getattr(args, "target", None) is not None and getattr(args, "target_is_model", False):
        print(f"error: two models given: {args.target} and --model {args.model}", file=sys.stderr)
        return 2
    args.model_given = hasattr(args, "model")
    args.model = getattr(args, "model", DEFAULT_MODEL)
    args.device = getattr(args, "device", "cpu")
    args.dtype = getattr(args, "dtype", None)
    try:
        if args.run is not bench:
            check_device(args.device)  # before minutes of loading
        return args.run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # every failure becomes one line; the traceback helps no user of a command
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
