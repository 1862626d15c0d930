"""``--config FILE``: a command's options read from a JSON file.

The file's keys are the flag names (``"max_steps": 100`` or ``"max-steps": 100``); flags given on
the command line win over the file; a key that is not an option of the command is an error naming
the key and the file. Every run writes ``run_config.json`` to its run directory, which ``--config``
accepts back.

How precedence works: the file's values become the sub-parser's *defaults* (``set_defaults``),
then the command line is parsed, so any flag on the command line replaces the file's value. The
keys are checked against the options the sub-parser recorded as they were declared
(``CommandParser.options``), and each value is converted and checked as the flag's text would be.
"""
from __future__ import annotations

import argparse

from ..files import read_json
from .options import CommandParser, finite_float

_KIND_NAMES = {int: "an integer", finite_float: "a finite number", str: "a string"}


def apply_config_file(parser: CommandParser, argv: list[str]) -> None:
    """If ``argv`` names a sub-command and ``--config FILE``, make the file's options its defaults.

    Options the file supplies are no longer required on the command line. Nothing happens for
    ``--help``, or when the command is unknown (the parse that follows reports it).
    """
    command, path = _prescan(argv)
    if not path or command not in parser.commands or "-h" in argv or "--help" in argv:
        return
    subparser = parser.commands[command]
    options = load_config_file(path, subparser)
    for dest in options:
        subparser.options[dest].required = False  # supplied by the file
    subparser.set_defaults(**options)


def load_config_file(path: str, subparser: CommandParser) -> dict:
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
    options = {}
    for key, value in values.items():
        dest = key.lstrip("-").replace("-", "_")
        if dest not in subparser.options or dest == "config":
            subparser.error(f"--config {path}: unknown key {key!r} (not an option of "
                            f"'minillm {subparser.prog.split()[-1]}'; see --help)")
        try:
            options[dest] = _config_value(subparser.options[dest], dest in subparser.list_options, value)
        except (TypeError, ValueError, argparse.ArgumentTypeError) as err:
            subparser.error(f"--config {path}: key {key!r}: {err}")
    return options


def _config_value(action: argparse.Action, takes_list: bool, value):
    """``value`` from a config file, converted like the flag's text would be; raises on a wrong type."""
    if action.nargs == 0 or isinstance(action, argparse.BooleanOptionalAction):  # a switch
        if not isinstance(value, bool):
            raise TypeError(f"must be true or false, got {value!r}")
        return value
    if value is None and action.default is None:
        return None
    kind = action.type or str
    if takes_list:
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
    if kind is str and not isinstance(value, str):
        raise TypeError(f"must be a string, got {value!r}")
    try:
        return kind(str(value))
    except (ValueError, argparse.ArgumentTypeError):
        raise ValueError(f"must be {what}, got {value!r}") from None


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
