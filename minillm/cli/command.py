"""From a command line to an exit code: parse (with ``--config``), check ranges, run the command.

The command line means what it says: no parser accepts an abbreviated flag, every number must be
finite and in its range (``options.RANGES``), and a bad option or file ends with
``minillm COMMAND: error: ...`` and exit code 2, never a traceback.

Each command module has ``add_parser(subparsers)``, which declares the command's flags and sets
``func`` (the function that runs it); ``new_parser`` puts such modules under one ``minillm`` parser.
"""
from __future__ import annotations

import argparse
import errno
import sys

from .. import runlock
from ..distributed.trainer_hooks import run_command
from .. import set_num_threads  # the public switch (minillm/__init__), not the fast layer
from ..training.arguments import NonFiniteLossError
from .config_file import apply_config_file
from .folders import undo_failed_start
from .options import CommandParser, check_ranges


def new_parser(commands, description: str | None = None) -> CommandParser:
    """The ``minillm`` parser with one sub-command per module of ``commands`` (each has ``add_parser``)."""
    parser = CommandParser(prog="minillm", description=description,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in commands:
        module.add_parser(subparsers)
    return parser


def parse_args(parser: CommandParser, argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line, filling options from ``--config FILE`` where no flag was given,
    then check every number against its range."""
    argv = list(sys.argv[1:] if argv is None else argv)
    apply_config_file(parser, argv)
    args = parser.parse_args(argv)
    check_ranges(args, parser.commands[args.command])
    return args


def run(parser: CommandParser, argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run its command; returns the exit code.

    Exit codes: 0 done, 1 training stopped on a nan/inf (the message says how to resume), 2 a
    bad option, a bad file, or a file that could not be written (the message names it).
    """
    args = parse_args(parser, argv)
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
    except KeyboardInterrupt:  # Ctrl-C outside the training loop (which saves and stops by itself)
        print(f"\nminillm {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        undo_failed_start()  # what a start that failed wrote (folders.begin_run)
        runlock.release_all()  # the run folder's lock (folders.lock_run_dir), however the command ended


def _os_error_text(err: OSError) -> str:
    """``could not write FILE: reason``, with advice for a full disk."""
    where = f"could not write {err.filename}: " if err.filename else ""
    text = f"{where}{err.strerror or err}"
    if err.errno == errno.ENOSPC:
        text += " (free some space or choose another --out; a checkpoint already saved is intact)"
    return text
