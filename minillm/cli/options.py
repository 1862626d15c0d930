"""How a ``minillm`` flag is declared and checked: the parser class, number types and ranges, and
the option groups that several commands share (the model's size, the training arguments).

Every flag is declared with its help text beside it. ``CommandParser`` remembers the options it
declares (``parser.options``), which is how a ``--config`` file's keys are checked
(``config_file.py``) without reaching into argparse's internals.
"""
from __future__ import annotations

import argparse
import dataclasses
import math

from ..optim import SCHEDULE_NAMES
from ..training.arguments import OPTIMIZERS, TrainingArguments


class CommandParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that takes no abbreviated flag and records the options it declares.

    ``allow_abbrev`` is False by default: ``--data`` must never be taken for ``--data-dir``.

    Attributes:
        options: ``{dest: Action}`` for every option declared on the parser or on one of its
            groups (``add_argument`` returns the Action; it is kept here).
        list_options: the dests that take several values (``nargs="*"``/``"+"`` or ``action="append"``).
        commands: the sub-parsers by command name, once ``add_subparsers`` was called.
    """

    def __init__(self, *args, allow_abbrev: bool = False, **kwargs):
        self.options, self.list_options, self.commands = {}, set(), {}
        super().__init__(*args, allow_abbrev=allow_abbrev, **kwargs)

    def add_argument(self, *args, **kwargs):
        """``ArgumentParser.add_argument``, remembering the option."""
        return self._record(super().add_argument(*args, **kwargs), kwargs)

    def add_argument_group(self, *args, **kwargs):
        """``ArgumentParser.add_argument_group``, whose options are remembered here too."""
        return self._recording(super().add_argument_group(*args, **kwargs))

    def add_mutually_exclusive_group(self, **kwargs):
        """``ArgumentParser.add_mutually_exclusive_group``, whose options are remembered here too."""
        return self._recording(super().add_mutually_exclusive_group(**kwargs))

    def add_subparsers(self, **kwargs):
        """``ArgumentParser.add_subparsers``; each sub-parser it adds is kept in ``commands``."""
        subparsers = super().add_subparsers(**kwargs)
        add_parser = subparsers.add_parser

        def add_command(name, **parser_kwargs):
            self.commands[name] = add_parser(name, **parser_kwargs)
            return self.commands[name]

        subparsers.add_parser = add_command
        return subparsers

    def _recording(self, group):
        declare = group.add_argument
        group.add_argument = lambda *args, **kwargs: self._record(declare(*args, **kwargs), kwargs)
        return group

    def _record(self, action: argparse.Action, kwargs: dict) -> argparse.Action:
        if action.dest != "help":
            self.options[action.dest] = action
            if action.nargs in ("*", "+") or kwargs.get("action") in ("append", "extend"):
                self.list_options.add(action.dest)
        return action


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


def check_ranges(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """``parser.error`` (exit code 2) naming the first option whose value is out of its range."""
    for name, (test, what) in RANGES.items():
        if getattr(args, name, None) is not None and not test(getattr(args, name)):
            parser.error(f"--{name.replace('_', '-')} must be {what}, got {getattr(args, name)}")


# ---------------------------------------------------------------------------------- shared groups
def add_common_arguments(parser: argparse.ArgumentParser, out_default: str | None) -> None:
    """``--config`` and ``--threads`` (every command), and ``--out`` when the command has a default."""
    parser.add_argument("--config", metavar="FILE", help="JSON file of options; flags override it")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="CPU threads minillm computes with (default: 1 for quickstart; otherwise NumPy's "
                             "BLAS decides, usually all cores). 1 is often fastest for toy models or on a busy "
                             "machine")
    if out_default is not None:
        parser.add_argument("--out", default=out_default, metavar="DIR",
                            help=f"run directory to write (default: {out_default})")


def add_resume_arguments(parser: argparse.ArgumentParser) -> None:
    """``--resume DIR`` and ``--overwrite``: what to do with a run directory that holds a run."""
    parser.add_argument("--resume", metavar="DIR", help="continue the run whose checkpoint directory this is "
                        "(options that differ from the checkpoint's are applied and reported, or refused)")
    parser.add_argument("--overwrite", action="store_true", help="replace a run already in --out")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
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


# One flag per TrainingArguments field (``max_steps`` -> ``--max-steps``), typed like the field,
# with its help. ``output_dir`` and ``progress`` are set by the command, not by a flag.
TRAINING_FLAGS = {
    "max_steps": "optimizer steps to take; 0 means use --num-epochs",
    "num_epochs": "passes over the training data (may be fractional) when --max-steps is 0",
    "batch_size": "examples per micro-batch (under mpiexec: over all ranks)",
    "gradient_accumulation_steps": "micro-batches per optimizer step (effective batch = batch size x this)",
    "learning_rate": "the peak learning rate, reached after warmup",
    "weight_decay": "decoupled weight decay; norms and biases are never decayed",
    "optimizer": "adamw, or adafactor (with a fixed lr, as Hugging Face recommends for T5)",
    "lr_schedule": "how the learning rate changes over the steps",
    "warmup_steps": "steps of linear warmup from lr 0",
    "warmup_ratio": "warmup as a share of the run's steps, in [0, 1); when > 0 it replaces --warmup-steps",
    "max_grad_norm": "clip the global gradient norm to this; 0 disables clipping",
    "eval_every": "optimizer steps between evaluations; 0 means only at the end",
    "save_every": "optimizer steps between checkpoints; 0 means only at the end",
    "log_every": "optimizer steps between log lines; 0 means only at the end",
    "seed": "seeds dropout and the data order",
    "max_source_length": "prompt tokens kept (longer prompts are cut, and counted)",
    "max_target_length": "completion tokens kept (longer completions are cut, and counted)",
    "eval_max_new_tokens": "generation length when evaluating",
    "eval_num_examples": "eval records scored (generation is the slow part)",
    "eval_batch_size": "examples per batch when evaluating",
    "metric_for_best": "eval_loss (lower is better) or a metric such as score or translation/bleu (higher is "
                       "better); decides which model is kept in best/",
    "shard_optimizer": "under mpiexec -n N, keep each rank's share of the optimizer state only (ZeRO-1)",
}
CHOICES = {"optimizer": OPTIMIZERS, "lr_schedule": SCHEDULE_NAMES}


def add_training_arguments(parser: argparse.ArgumentParser, title: str = "training", names=TRAINING_FLAGS,
                           **defaults) -> None:
    """The TrainingArguments fields ``names`` as flags; ``defaults`` replaces some field defaults."""
    group = parser.add_argument_group(title)
    fields = {f.name: f.default for f in dataclasses.fields(TrainingArguments)}
    for name in names:
        add_field_flag(group, name, defaults.get(name, fields[name]), TRAINING_FLAGS[name])


def add_field_flag(group, name: str, default, text: str) -> None:
    """``--name-with-dashes``, typed like ``default`` (a bool is a ``--x/--no-x`` switch)."""
    flag = "--" + name.replace("_", "-")
    if isinstance(default, bool):
        group.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=text)
        return
    kind = finite_float if isinstance(default, float) else type(default) if default is not None else str
    group.add_argument(flag, type=kind, default=default, choices=CHOICES.get(name), help=f"{text} (default: {default})")
