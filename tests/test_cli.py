"""Specification of the `minillm` command: every sub-command runs (MINILLM_SMOKE=1), has --help,
takes options from a JSON file that flags override, and writes a complete run directory."""
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from minillm.cli.main import main, parse_args
from minillm.data import Tokenizer
from minillm.models import T5ForConditionalGeneration

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMANDS = ["quickstart", "train-tokenizer", "pretrain", "finetune", "evaluate", "generate", "convert"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One smoke pretraining run and one full fine-tuning run on it, shared by the tests below."""
    root = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINILLM_SMOKE", "1")
        assert main(["pretrain", "--out", str(root / "pre")]) == 0
        data = root / "data.jsonl"
        data.write_text("\n".join(json.dumps({"prompt": f"What is {a} plus 1?", "completion": str(a + 1)})
                                  for a in range(12)) + "\n")
        assert main(["finetune", "--model", str(root / "pre"), "--data", str(data), "--out", str(root / "ft")]) == 0
    return root


@pytest.fixture
def smoke(monkeypatch):
    monkeypatch.setenv("MINILLM_SMOKE", "1")


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"usage: minillm {command}" in capsys.readouterr().out


def test_python_dash_m_minillm_is_the_same_command():
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "-m", "minillm", "--help"], capture_output=True, text=True, env=env,
                          timeout=60)
    assert done.returncode == 0
    assert all(command in done.stdout for command in COMMANDS)


def test_train_tokenizer_writes_a_t5_style_tokenizer(tmp_path, smoke):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sat on the mat\nthe dog saw the cat\n" * 20)
    assert main(["train-tokenizer", "--input", str(corpus), "--out", str(tmp_path / "tok"),
                 "--vocab-size", "120", "--num-sentinels", "10"]) == 0
    tokenizer = Tokenizer.from_file(str(tmp_path / "tok" / "tokenizer.json"))
    assert tokenizer.num_sentinels == 10 and tokenizer.vocab_size <= 120
    assert tokenizer.encode("the cat")[-1] == tokenizer.eos_token_id


def test_pretrain_writes_a_complete_run_directory(runs):
    for name in ("config.json", "model.safetensors", "tokenizer.json", "run_config.json", "training_args.json",
                 "log.jsonl", "results.json", "checkpoint/trainer_state.json", "best/model.safetensors"):
        assert (runs / "pre" / name).is_file(), name
    results = json.loads((runs / "pre" / "results.json").read_text())
    assert results["global_step"] == 3 and "eval_loss" in results["metrics"]


def test_finetune_on_a_jsonl_file_starts_from_the_pretrained_model(runs):
    results = json.loads((runs / "ft" / "results.json").read_text())
    assert results["global_step"] == 3
    assert "data/exact_match" in results["metrics"]  # user data (task = file name) is scored by exact match
    pre = T5ForConditionalGeneration.from_pretrained(str(runs / "pre"))
    ft = T5ForConditionalGeneration.from_pretrained(str(runs / "ft"))
    assert pre.config.d_model == ft.config.d_model  # same architecture, trained further
    assert not np.array_equal(pre.state_dict()["shared.weight"], ft.state_dict()["shared.weight"])


def test_finetune_with_lora_saves_base_and_adapter(runs, smoke):
    pytest.importorskip("minillm.cli.peft_options")
    out = runs / "lora"
    assert main(["finetune", "--model", str(runs / "pre"), "--method", "lora", "--lora-r", "2", "--copy-base",
                 "--out", str(out)]) == 0
    for name in ("config.json", "model.safetensors", "adapter_config.json", "adapter_model.safetensors"):
        assert (out / name).is_file(), name
    # The base saved beside the adapter is the untouched pretrained model.
    base = T5ForConditionalGeneration.from_pretrained(str(out)).state_dict()
    pre = T5ForConditionalGeneration.from_pretrained(str(runs / "pre")).state_dict()
    assert all(np.array_equal(base[k], pre[k]) for k in pre)
    assert main(["generate", "--model", str(out), "--prompt", "What is 2 plus 1?"]) == 0


def test_evaluate_runs_on_a_run_directory(runs, smoke, capsys):
    assert main(["evaluate", "--model", str(runs / "ft")]) == 0
    assert capsys.readouterr().out.strip()


def test_generate_answers_each_prompt_and_each_stdin_line(runs, smoke, capsys, monkeypatch):
    assert main(["generate", "--model", str(runs / "ft"), "--prompt", "What is 1 plus 1?",
                 "--prompt", "What is 2 plus 1?"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    monkeypatch.setattr(sys, "stdin", io.StringIO("What is 1 plus 1?\nWhat is 3 plus 1?\nWhat is 4 plus 1?\n\n"))
    assert main(["generate", "--model", str(runs / "ft")]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3


def test_convert_round_trips_through_a_hugging_face_folder(runs, tmp_path):
    assert main(["convert", "--to-hf", str(runs / "ft"), "--out", str(tmp_path / "hf")]) == 0
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(os.listdir(tmp_path / "hf"))
    assert main(["convert", "--from-hf", str(tmp_path / "hf"), "--out", str(tmp_path / "back")]) == 0
    original = T5ForConditionalGeneration.from_pretrained(str(runs / "ft")).state_dict()
    back = T5ForConditionalGeneration.from_pretrained(str(tmp_path / "back")).state_dict()
    assert original.keys() == back.keys()
    assert all(np.array_equal(original[k], back[k]) for k in original)
    assert Tokenizer.from_file(str(tmp_path / "back" / "tokenizer.json")).vocab_size == \
        Tokenizer.from_file(str(runs / "ft" / "tokenizer.json")).vocab_size


def test_flags_override_the_config_file(tmp_path):
    config = tmp_path / "cfg.json"
    config.write_text(json.dumps({"max_steps": 7, "learning-rate": 0.5, "method": "full", "batch_size": "3"}))
    args = parse_args(["finetune", "--config", str(config), "--max-steps", "2"])
    assert args.max_steps == 2          # the flag wins
    assert args.learning_rate == 0.5    # the file fills what no flag gave ("learning-rate" == "learning_rate")
    assert args.batch_size == 3         # strings from the file are converted like flag values
    assert parse_args(["finetune"]).learning_rate != 0.5  # and nothing leaks into the next parse


def test_the_config_file_can_supply_a_required_option(tmp_path):
    config = tmp_path / "cfg.json"
    config.write_text(json.dumps({"model": "runs/x", "max_new_tokens": 5}))
    args = parse_args(["generate", "--config", str(config)])
    assert args.model == "runs/x" and args.max_new_tokens == 5


def test_an_unknown_key_in_the_config_file_is_an_error_naming_key_and_file(tmp_path, capsys):
    config = tmp_path / "cfg.json"
    config.write_text(json.dumps({"max_steps": 3, "max_stepz": 4}))
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["pretrain", "--config", str(config)])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "'max_stepz'" in error and str(config) in error


def test_a_run_config_is_accepted_back_by_config(runs):
    args = parse_args(["finetune", "--config", str(runs / "ft" / "run_config.json")])
    assert args.model == str(runs / "pre") and args.out == str(runs / "ft")


def test_bad_data_fails_with_the_file_and_line(tmp_path, smoke, capsys):
    data = tmp_path / "bad.jsonl"
    data.write_text('{"prompt": "a", "completion": "b"}\n{"prompt": "c"}\n')
    assert main(["finetune", "--data", str(data), "--out", str(tmp_path / "ft")]) == 2
    assert f"{data}, line 2: missing field 'completion'" in capsys.readouterr().err


def test_evaluate_data_scores_the_given_file_not_the_built_in_tasks(runs, smoke, tmp_path, capsys):
    data = tmp_path / "mine.jsonl"
    data.write_text(json.dumps({"prompt": "What is 2 plus 1?", "completion": "3"}) + "\n")
    output = tmp_path / "results.json"
    assert main(["evaluate", "--model", str(runs / "ft"), "--data", str(data), "--output", str(output)]) == 0
    results = json.loads(output.read_text())
    assert results["data"] == str(data) and results["num_records"] == 1
    assert {"eval_loss", "mine/exact_match", "score"} <= results["metrics"].keys()  # task = the file's name
    assert "translation" not in capsys.readouterr().out


def test_quickstart_defaults_to_one_blas_thread_and_other_commands_to_the_library_choice():
    from minillm.cli.main import parse_args

    assert parse_args(["quickstart"]).threads == 1
    assert parse_args(["quickstart", "--threads", "2"]).threads == 2
    assert parse_args(["generate", "--model", "run", "--prompt", "hi"]).threads is None
