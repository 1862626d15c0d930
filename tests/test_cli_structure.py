"""The shape of ``minillm/cli``: each command builds its own sub-parser, the modules import one another
without a circle, config files are read through public argparse APIs only, every flag has its help,
and whatever a run writes to run_config.json (lists and switches included) reads back as the same
options."""
import argparse
import ast
import dataclasses
import inspect
import os

import pytest

from minillm.cli import main as cli_main
from minillm.cli.folders import write_run_config
from minillm.cli.options import TRAINING_FLAGS
from minillm.training.arguments import TrainingArguments

CLI = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "minillm", "cli")


def _cli_imports() -> dict[str, set[str]]:
    """{module: the cli modules it imports}, read from the source (relative imports inside the package)."""
    graph = {}
    for file in sorted(os.listdir(CLI)):
        if not file.endswith(".py"):
            continue
        name = file[:-3]
        tree = ast.parse(open(os.path.join(CLI, file), encoding="utf-8").read())
        targets = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                targets |= {node.module} if node.module else {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("minillm.cli"):
                targets.add(node.module.split(".")[2] if node.module.count(".") >= 2 else "__init__")
        graph[name] = {t.split(".")[0] for t in targets}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` as [a, b, ..., a], or None (depth-first search)."""
    state = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return path + [node, nxt]
            if nxt not in state and (found := visit(nxt, path + [node])):
                return found
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [])):
            return found
    return None


def test_the_cli_modules_import_one_another_without_a_circle():
    graph = _cli_imports()
    assert {"main", "command", "config_file", "options", "evaluate", "finetune"} <= graph.keys()
    assert _cycle(graph) is None, f"import circle: {' -> '.join(_cycle(graph))}"
    assert not any("main" in targets for name, targets in graph.items() if name != "__init__")  # main is the top


def test_the_cycle_finder_finds_a_circle():  # the checker itself is not blind
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_cli_module_uses_argparse_private_names():
    for file in sorted(os.listdir(CLI)):
        if file.endswith(".py"):
            tree = ast.parse(open(os.path.join(CLI, file), encoding="utf-8").read())
            for node in ast.walk(tree):
                if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                    owner = ast.unparse(node.value)
                    assert owner in ("self", "super()"), f"{file}:{node.lineno}: {owner}.{node.attr}"


def test_build_parser_is_short_and_each_command_module_adds_its_own_sub_parser():
    assert len(inspect.getsource(cli_main.build_parser).splitlines()) < 40
    parser = cli_main.build_parser()
    for module in cli_main.COMMANDS:
        assert callable(module.add_parser), module.__name__
    assert set(parser.commands) >= {"quickstart", "train-tokenizer", "pretrain", "finetune", "evaluate",
                                    "generate", "convert"}
    assert set(parser.commands) == {command for module in cli_main.COMMANDS
                                    for command in _commands_of(module)}
    for name, sub in parser.commands.items():  # the command runs from the module that declares its flags
        assert sub.get_default("func").__module__ == f"minillm.cli.{name.replace('-', '_')}", name


def _commands_of(module) -> set[str]:
    """The sub-commands ``module.add_parser`` adds."""
    from minillm.cli.options import CommandParser

    parser = CommandParser(prog="x")
    module.add_parser(parser.add_subparsers())
    return set(parser.commands)


# What each command needs on the command line, so that a parse succeeds.
REQUIRED = {"generate": ["--model", "m"], "evaluate": ["--model", "m"], "base": ["path"]}


def _required(name: str) -> list[str]:
    return REQUIRED.get(name, [])


def test_every_option_is_recorded_for_config_files_and_has_help():
    parser = cli_main.build_parser()
    for name, sub in parser.commands.items():
        dests = set(vars(parser.parse_args([name, *_required(name)]))) - {"func", "command"}
        assert dests == set(sub.options), name  # a flag the recorder missed could not come from a file
        for dest, action in sub.options.items():
            assert action.help and action.help.strip(), f"minillm {name} --{dest} has no help"


def test_every_training_argument_but_the_commands_own_is_a_flag():
    fields = {f.name for f in dataclasses.fields(TrainingArguments)} - {"output_dir", "progress"}
    assert set(TRAINING_FLAGS) == fields
    pretrain = cli_main.build_parser().commands["pretrain"]
    assert fields <= set(pretrain.options)


@pytest.mark.parametrize("argv", [
    ["generate", "--model", "run", "--prompt", "a b", "--prompt", "c", "--do-sample", "--top-k", "3"],
    ["train-tokenizer", "--input", "x.txt", "y.jsonl", "--model-type", "unigram"],
    ["finetune", "--method", "lora", "--lora-targets", "q,k,v", "--bitfit", "--shard-optimizer",
     "--adapter-positions", "ffn", "--learning-rate", "0.25", "--tasks", "sentiment"],
    ["quickstart", "--no-progress", "--task-levels", "", "--seed", "3"],
    ["pretrain", "--overwrite", "--noise-density", "0.3", "--resume", "runs/x/checkpoint"],
])
def test_options_written_to_run_config_read_back_the_same(argv, tmp_path):
    args = cli_main.parse_args(argv)
    write_run_config(args, str(tmp_path))
    again = cli_main.parse_args([argv[0], "--config", str(tmp_path / "run_config.json")])
    assert {**vars(again), "config": None} == vars(args)


@pytest.mark.parametrize("key, value, message", [
    ("prompt", [1], "key 'prompt': must be a string, got 1"),
    ("do_sample", "yes", "key 'do_sample': must be true or false, got 'yes'"),
    ("top_k", 2.5, "key 'top_k': must be an integer, got 2.5"),
    ("temprature", 1.0, "unknown key 'temprature'"),
    ("config", "other.json", "unknown key 'config'"),
])
def test_a_bad_key_or_value_in_a_config_file_names_the_key(key, value, message, tmp_path, capsys):
    path = tmp_path / "cfg.json"
    path.write_text(f'{{"model": "run", "{key}": {__import__("json").dumps(value)}}}')
    with pytest.raises(SystemExit) as exit_info:
        cli_main.parse_args(["generate", "--config", str(path)])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_the_recording_parser_sees_options_declared_in_groups():
    from minillm.cli.options import CommandParser

    parser = CommandParser(prog="x")
    parser.add_argument("--a", action="append")
    parser.add_argument_group("g").add_argument("--b", nargs="*")
    parser.add_mutually_exclusive_group().add_argument("--data-dir")
    assert set(parser.options) == {"a", "b", "data_dir"} and parser.list_options == {"a", "b"}
    assert isinstance(parser.options["data_dir"], argparse.Action)
    with pytest.raises(SystemExit):
        parser.parse_args(["--data", "x"])  # no abbreviations: "--data" is not "--data-dir"


def test_no_function_of_the_cli_training_distributed_or_the_mixture_is_over_60_lines():
    root = os.path.dirname(CLI)  # minillm/
    files = [os.path.join(root, "data", "mixture.py")] + [
        os.path.join(root, folder, name) for folder in ("cli", "training", "distributed")
        for name in sorted(os.listdir(os.path.join(root, folder))) if name.endswith(".py")]
    long = []
    for path in files:
        for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([node.lineno] + [d.lineno for d in node.decorator_list])
                if node.end_lineno - start + 1 > 60:
                    long.append(f"{os.path.relpath(path, root)}:{node.lineno} {node.name} "
                                f"({node.end_lineno - start + 1} lines)")
    assert long == []
