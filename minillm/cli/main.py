"""The ``minillm`` command: one sub-command per step of the course.

    minillm quickstart                          tokenizer + toy T5 + multitask tuning, before/after table
    minillm train-tokenizer --out tok/          a BPE/Unigram tokenizer with T5's special ids
    minillm pretrain --out runs/base            span corruption on the built-in corpus or --text FILE
    minillm finetune --model runs/base --data my.jsonl --out runs/ft [--method lora ...]
    minillm evaluate --model runs/ft            metrics on held-out data
    minillm generate --model runs/ft --prompt "Translate to Zorbish: the dog saw the cat"
    minillm convert --to-hf runs/ft --out hf/   (or --from-hf hf/ --out runs/x)
    minillm base build                          the course base (pretrained, instruction-tuned), cached

Options come from flags or from a JSON file (``--config cfg.json``, see ``config_file.py``): flags
given on the command line win over the file. ``MINILLM_SMOKE=1`` makes every command run in
seconds (tiny model, few steps and examples).

Each command is a module with ``add_parser(subparsers)``, which declares its flags, and the
function that runs it; ``command.py`` parses, checks and runs; ``options.py`` holds the flags that
several commands share.
"""
from __future__ import annotations

import argparse
import sys

from . import base, command, convert, evaluate, finetune, generate, pretrain, quickstart, train_tokenizer

# The sub-commands, in the order ``minillm --help`` lists them.
COMMANDS = (quickstart, train_tokenizer, pretrain, finetune, evaluate, generate, convert, base)


def build_parser() -> argparse.ArgumentParser:
    """The ``minillm`` parser with every sub-command."""
    return command.new_parser(COMMANDS, description=__doc__.split("\n\n")[0])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse a ``minillm`` command line (``--config`` files included; see ``command.parse_args``)."""
    return command.parse_args(build_parser(), argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``minillm`` console script and of ``python -m minillm``; returns the exit code
    (0 done, 1 training stopped on a nan/inf, 2 a bad option or file)."""
    return command.run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
