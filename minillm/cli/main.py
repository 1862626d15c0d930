"""The ``minillm`` command: one sub-command per step of the course.

    minillm quickstart                          tokenizer + toy T5 + multitask tuning, before/after table
    minillm train-tokenizer --out tok/          a BPE/Unigram tokenizer with T5's special ids
    minillm pretrain --out runs/base            span corruption on the built-in corpus or --text FILE
    minillm finetune --model runs/base --data my.jsonl --out runs/ft [--method lora ...]
    minillm evaluate --model runs/ft            metrics on held-out data
    minillm generate --model runs/ft --prompt "Translate to Zorbish: the dog saw the cat"
    minillm convert --to-hf runs/ft --out hf/   (or --from-hf hf/ --out runs/x)

Options come from flags or from a JSON file (``--config cfg.json``): the file's keys are the flag
names (``"max_steps": 100`` or ``"max-steps": 100``), flags given on the command line win over the
file, and a key that is not an option of the sub-command is an error naming the key and the file.
Every run writes ``run_config.json`` to its run directory, which ``--config`` accepts back.

``MINILLM_SMOKE=1`` makes every command run in seconds (tiny model, few steps and examples).
This file builds the parsers and checks what they read; the commands live in one module per
group: ``train.py`` (quickstart, train-tokenizer, pretrain, finetune), ``evaluate.py``,
``generate.py``, ``convert.py``.

The command line means what it says: no parser accepts an abbreviated flag (``--data`` is never
taken for ``--data-dir``), every number must be finite and in its range (``RANGES``), a value
of the wrong type in a ``--config`` file is an error naming the key, and a bad option or file
ends with ``minillm COMMAND: error: ...`` and exit code 2, never a traceback.
"""
from __future__ import annotations

import argparse
import dataclasses
import errno
import math
import re
import sys

from . import convert, generate, train
from ..data import DEFAULT_MIXTURE
from ..distributed.trainer_hooks import run_command
from ..files import read_json
from ..fast.threads import set_num_threads
from ..optim import SCHEDULE_NAMES
from .evaluate import add_evaluate_arguments, run_evaluate
from .peft_options import add_peft_arguments
from .quickstart import QuickstartConfig
from ..training.arguments import OPTIMIZERS, NonFiniteLossError, TrainingArguments

# TrainingArguments fields that a command sets itself rather than taking from a flag.
_NOT_FLAGS = {"output_dir", "progress"}


def finite_float(text: str) -> float:
    """argparse type: a float that is not nan or inf."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


# Ranges of the options that are not TrainingArguments fields (TrainingArguments checks its own):
# option -> (test, what the message says).
RANGES = {
    "dropout": (lambda v: 0 <= v < 1, "in [0, 1)"), "lora_dropout": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "eval_fraction": (lambda v: 0 <= v < 1, "in [0, 1)"), "noise_density": (lambda v: 0 < v < 1, "in (0, 1)"),
    "mean_span_length": (lambda v: v >= 1, ">= 1"), "top_p": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "temperature": (lambda v: v > 0, "> 0"), "top_k": (lambda v: v >= 0, ">= 0"),
    "num_beams": (lambda v: v >= 1, ">= 1"), "max_new_tokens": (lambda v: v >= 1, ">= 1"),
    "threads": (lambda v: v >= 1, ">= 1"), "shots": (lambda v: v >= 0, ">= 0"),
    "chunk_length": (lambda v: v >= 2, ">= 2"), "num_sentinels": (lambda v: v >= 0, ">= 0"),
    **{name: (lambda v: v >= 1, ">= 1") for name in (
        "vocab_size", "d_model", "d_ff", "num_layers", "num_heads", "num_documents", "examples_per_task",
        "num_examples", "lora_r", "adapter_size", "num_virtual_tokens", "test_examples_per_task")},
}


def check_ranges(args, parser: argparse.ArgumentParser) -> None:
    """``parser.error`` (exit code 2) naming the first option whose value is out of its range."""
    for name, (test, what) in RANGES.items():
        if getattr(args, name, None) is not None and not test(getattr(args, name)):
            parser.error(f"--{name.replace('_', '-')} must be {what}, got {getattr(args, name)}")


def _field_help(cls) -> dict[str, str]:
    """Help text for each dataclass field, read from the "Args:" section of its docstring."""
    helps, names = {}, []
    for line in (cls.__doc__ or "").splitlines():
        match = re.match(r"^ {8}([\w /,]+): (.*)$", line)
        if match:
            names = [n.strip() for n in re.split(r"[/,]", match.group(1)) if n.strip()]
            for name in names:
                helps[name] = match.group(2)
        elif names and line.startswith(" " * 12):
            for name in names:
                helps[name] += " " + line.strip()
        else:
            names = []
    return helps


def add_dataclass_arguments(parser, cls, skip=(), group_title: str | None = None,
                            defaults: dict | None = None) -> None:
    """One flag per field of dataclass ``cls`` (``max_steps`` -> ``--max-steps``), typed like the field.

    ``defaults`` replaces some of the dataclass's defaults for this command (and in its help).
    """
    group = parser.add_argument_group(group_title) if group_title else parser
    helps = _field_help(cls)
    defaults = defaults or {}
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        default = defaults.get(f.name, f.default)
        text = helps.get(f.name, "")
        if isinstance(default, bool):
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=text)
            continue
        kind = type(default) if default is not None else str
        kind = finite_float if kind is float else kind
        choices = {"optimizer": OPTIMIZERS, "lr_schedule": SCHEDULE_NAMES}.get(f.name)
        group.add_argument(flag, type=kind, default=default, choices=choices,
                           help=f"{text} (default: {default})")


def add_model_arguments(parser) -> None:
    """Where the model and tokenizer come from, and the size of a new model."""
    g = parser.add_argument_group("model")
    g.add_argument("--model", metavar="DIR", help="start from this run directory or Hugging Face T5 "
                   "folder (config.json + model.safetensors); default: a new toy T5")
    g.add_argument("--tokenizer", metavar="PATH", help="tokenizer.json or a folder holding one; default: "
                   "the model's, or a new one trained on the data")
    g.add_argument("--vocab-size", type=int, default=1000, help="size of a newly trained tokenizer (default: 1000)")
    g.add_argument("--d-model", type=int, default=128, help="width of a new model (default: 128)")
    g.add_argument("--d-ff", type=int, default=512, help="feed-forward width of a new model (default: 512)")
    g.add_argument("--num-layers", type=int, default=2, help="encoder and decoder blocks (default: 2)")
    g.add_argument("--num-heads", type=int, default=4, help="attention heads (default: 4)")
    g.add_argument("--dropout", type=finite_float, default=0.1, help="dropout rate of a new model (default: 0.1)")


def _common(parser, out_default: str | None) -> None:
    parser.add_argument("--config", metavar="FILE", help="JSON file of options; flags override it")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="CPU threads minillm computes with (default: 1 for quickstart; otherwise NumPy's "
                             "BLAS decides, usually all cores). 1 is often fastest for toy models or on a busy "
                             "machine")
    if out_default is not None:
        parser.add_argument("--out", default=out_default, metavar="DIR",
                            help=f"run directory to write (default: {out_default})")


def _resume_arguments(parser) -> None:
    parser.add_argument("--resume", metavar="DIR", help="continue the run whose checkpoint directory this is "
                        "(options that differ from the checkpoint's are applied and reported, or refused)")
    parser.add_argument("--overwrite", action="store_true", help="replace a run already in --out")


def build_parser() -> argparse.ArgumentParser:
    """The ``minillm`` parser with every sub-command."""
    parser = argparse.ArgumentParser(prog="minillm", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    # allow_abbrev=False everywhere: "--data" must never be taken for "--data-dir".

    p = sub.add_parser("quickstart", allow_abbrev=False, help="train a tokenizer and a toy T5 on the built-in "
                       "instruction mixture; print a before/after table")
    _common(p, "runs/quickstart")
    p.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    add_dataclass_arguments(p, QuickstartConfig, skip={"output_dir"}, group_title="quickstart")
    # The quickstart's matrices are small: one thread is about as fast on a quiet machine and many
    # times faster on a busy one.
    p.set_defaults(func=train.quickstart, threads=1)

    p = sub.add_parser("train-tokenizer", allow_abbrev=False,
                       help="train a BPE/Unigram tokenizer with T5's special ids")
    _common(p, "runs/tokenizer")
    p.add_argument("--input", nargs="*", default=[], metavar="FILE",
                   help="text files (one document per line) or .jsonl/.csv prompt/completion files; "
                        "default: the built-in corpus and task mixture")
    p.add_argument("--vocab-size", type=int, default=1000, help="ids in total, sentinels included (default: 1000)")
    p.add_argument("--model-type", choices=("bpe", "unigram"), default="bpe", help="(default: bpe)")
    p.add_argument("--num-sentinels", type=int, default=100, help="<extra_id_N> tokens (default: 100)")
    p.set_defaults(func=train.train_tokenizer)

    p = sub.add_parser("pretrain", allow_abbrev=False,
                       help="span-corruption pretraining on the built-in corpus or a text file")
    _common(p, "runs/pretrain")
    p.add_argument("--text", metavar="FILE", help="plain text, one document per line (default: built-in corpus)")
    p.add_argument("--num-documents", type=int, default=5000, help="built-in corpus size (default: 5000)")
    p.add_argument("--chunk-length", type=int, default=64, help="tokens per pretraining example (default: 64)")
    p.add_argument("--noise-density", type=finite_float, default=0.15, help="fraction of tokens hidden (default: 0.15)")
    p.add_argument("--mean-span-length", type=finite_float, default=3.0, help="average hidden span (default: 3)")
    _resume_arguments(p)
    add_model_arguments(p)
    add_dataclass_arguments(p, TrainingArguments, skip=_NOT_FLAGS, group_title="training",
                            defaults=dict(max_steps=300, learning_rate=2e-3, warmup_steps=30, eval_every=100,
                                          save_every=100, max_source_length=128))
    p.set_defaults(func=train.pretrain)

    p = sub.add_parser("finetune", allow_abbrev=False,
                       help="(instruction) fine-tuning on your JSONL/CSV data or the built-in tasks")
    _common(p, "runs/finetune")
    p.add_argument("--data", metavar="FILE", help="training data: .jsonl/.csv/.tsv with prompt and "
                   "completion (default: the built-in multitask mixture)")
    p.add_argument("--eval-data", metavar="FILE", help="evaluation data (default: --eval-fraction of --data, "
                   "or the built-in validation split)")
    p.add_argument("--eval-fraction", type=finite_float, default=0.05, help="share of --data held out (default: 0.05)")
    p.add_argument("--tasks", default=",".join(DEFAULT_MIXTURE),
                   help="built-in tasks to mix when there is no --data (comma-separated)")
    p.add_argument("--examples-per-task", type=int, default=2000, help="built-in mixture size per task")
    _resume_arguments(p)
    add_model_arguments(p)
    add_dataclass_arguments(p, TrainingArguments, skip=_NOT_FLAGS, group_title="training",
                            defaults=dict(eval_every=200, save_every=200, warmup_steps=30, metric_for_best="score"))
    add_peft_arguments(p)
    p.set_defaults(func=train.finetune)

    p = sub.add_parser("evaluate", allow_abbrev=False,
                       help="score a model on a benchmark suite or on your own --data file")
    _common(p, None)
    add_evaluate_arguments(p)
    p.set_defaults(func=run_evaluate)

    p = sub.add_parser("generate", allow_abbrev=False,
                       help="generate text from a prompt, or interactively from stdin")
    _common(p, None)
    p.add_argument("--model", required=True, metavar="DIR", help="run directory or Hugging Face folder")
    p.add_argument("--tokenizer", metavar="PATH", help="tokenizer.json (default: the model's)")
    p.add_argument("--prompt", action="append", help="a prompt (repeatable); none: read prompts from stdin")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--num-beams", type=int, default=1, help="beam search when > 1")
    p.add_argument("--do-sample", action="store_true", help="sample instead of greedy decoding")
    p.add_argument("--temperature", type=finite_float, default=1.0)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--top-p", type=finite_float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=generate.generate)

    p = sub.add_parser("convert", allow_abbrev=False, help="minillm run directory <-> Hugging Face folder")
    _common(p, None)
    direction = p.add_mutually_exclusive_group()
    direction.add_argument("--to-hf", metavar="RUN_DIR", help="export this run directory")
    direction.add_argument("--from-hf", metavar="HF_DIR", help="import this Hugging Face T5 folder")
    p.add_argument("--out", metavar="DIR", help="where to write (required)")
    p.add_argument("--best", action="store_true", help="with --to-hf: export best/ instead of the final model")
    p.set_defaults(func=convert.convert)
    return parser


# ---------------------------------------------------------------------------------- config files
def load_config_file(path: str, subparser: argparse.ArgumentParser) -> dict:
    """Read a JSON options file and check every key and value against the sub-command's options.

    Keys may be written like flags ("max-steps") or like Python names ("max_steps"). Values are
    converted and checked as the flag's would be ("100" -> 100), so ``"max_steps": "ten"`` or
    ``"learning_rate": [1]`` is an error naming the key and the file, not a crash later.

    Raises:
        SystemExit via ``subparser.error``: unreadable file, not an object, an unknown key or a
        value of the wrong type (the message names the key and the file).
    """
    try:
        values = read_json(path, "--config file")
    except OSError as err:
        subparser.error(f"--config {path}: {err.strerror}")
    except ValueError as err:
        subparser.error(f"--config {err}")
    if not isinstance(values, dict):
        subparser.error(f"--config {path}: expected a JSON object of options, got {type(values).__name__}")
    actions = {a.dest: a for a in subparser._actions if a.dest not in ("help", "config")}
    options = {}
    for key, value in values.items():
        dest = key.lstrip("-").replace("-", "_")
        if dest not in actions:
            subparser.error(f"--config {path}: unknown key {key!r} (not an option of "
                            f"'minillm {subparser.prog.split()[-1]}'; see --help)")
        try:
            options[dest] = _config_value(actions[dest], value)
        except (TypeError, ValueError, argparse.ArgumentTypeError) as err:
            subparser.error(f"--config {path}: key {key!r}: {err}")
    return options


_KIND_NAMES = {int: "an integer", finite_float: "a finite number", str: "a string"}


def _config_value(action: argparse.Action, value):
    """``value`` from a config file, converted like the flag's text would be; raises on a wrong type."""
    if action.nargs == 0 or isinstance(action, argparse.BooleanOptionalAction):  # a switch
        if not isinstance(value, bool):
            raise TypeError(f"must be true or false, got {value!r}")
        return value
    if value is None and action.default is None:
        return None
    kind = action.type or str
    if action.nargs in ("*", "+") or isinstance(action, argparse._AppendAction):
        items = value if isinstance(value, list) else [value]
        return [_convert(kind, item) for item in items]
    if isinstance(value, list) and kind not in _KIND_NAMES:  # a comma-list option saved as a JSON list
        if not all(isinstance(item, str) for item in value):
            raise TypeError(f"must be a list of strings, got {value!r}")
        return value
    converted = _convert(kind, value)
    if action.choices is not None and converted not in action.choices:
        raise ValueError(f"must be one of {', '.join(map(str, action.choices))}, got {value!r}")
    return converted


def _convert(kind, value):
    """``kind(value)`` for a scalar JSON value; a bool, list or object is never a number or a string."""
    what = _KIND_NAMES.get(kind, "a value for this option")
    if isinstance(value, (bool, list, dict)) or value is None:
        raise TypeError(f"must be {what}, got {value!r}")
    if kind is int and isinstance(value, float):
        raise TypeError(f"must be {what}, got {value!r}")
    try:
        return kind(str(value)) if kind is not str or isinstance(value, str) else _not_a_string(value)
    except (ValueError, argparse.ArgumentTypeError):
        raise ValueError(f"must be {what}, got {value!r}") from None


def _not_a_string(value):
    raise TypeError(f"must be a string, got {value!r}")


def _prescan(argv: list[str]) -> tuple[str | None, str | None]:
    """(sub-command, --config value) found in argv before parsing (the file can supply required options)."""
    command = next((a for a in argv if not a.startswith("-")), None)
    config = None
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            config = argv[i + 1]
        elif arg.startswith("--config="):
            config = arg.split("=", 1)[1]
    return command, config


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line, filling options from ``--config FILE`` where no flag was given.

    How precedence works: the file's values become the sub-parser's *defaults*, then the command
    line is parsed, so any flag on the command line replaces the file's value. Then every number
    is checked against its range (``RANGES``).
    """
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    command, config = _prescan(argv)
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if config and command in subparsers.choices and "-h" not in argv and "--help" not in argv:
        subparser = subparsers.choices[command]
        options = load_config_file(config, subparser)
        for action in subparser._actions:
            if action.dest in options:
                action.required = False  # supplied by the file
        subparser.set_defaults(**options)
    args = parser.parse_args(argv)
    check_ranges(args, subparsers.choices[args.command])
    return args


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``minillm`` console script and of ``python -m minillm``; returns the exit code.

    Exit codes: 0 done, 1 training stopped on a nan/inf (the message says how to resume), 2 a
    bad option, a bad file, or a file that could not be written (the message names it).
    """
    args = parse_args(argv)
    try:
        if getattr(args, "threads", None):
            set_num_threads(args.threads)
        return int(run_command(args.func, args) or 0)  # under mpiexec, an error on one rank ends all
    except NonFiniteLossError as err:  # the message names the step and the last good checkpoint
        print(f"minillm {args.command}: {err}", file=sys.stderr)
        return 1
    except (FileNotFoundError, ValueError, KeyError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"minillm {args.command}: error: {message}", file=sys.stderr)
        return 2
    except OSError as err:  # a full disk, a read-only folder, ...
        print(f"minillm {args.command}: error: {_os_error_text(err)}", file=sys.stderr)
        return 2


def _os_error_text(err: OSError) -> str:
    """``could not write FILE: reason``, with advice for a full disk."""
    where = f"could not write {err.filename}: " if err.filename else ""
    text = f"{where}{err.strerror or err}"
    if err.errno == errno.ENOSPC:
        text += " (free some space or choose another --out; a checkpoint already saved is intact)"
    return text


if __name__ == "__main__":
    sys.exit(main())
