"""`minillm evaluate` in smoke mode, on a run folder the test builds."""
import argparse
import json

import pytest

from minillm.data import TASKS, Tokenizer, format_example
from minillm.cli.evaluate import SMOKE_EXAMPLES, add_evaluate_arguments, main, run_evaluate
from minillm.models import T5Config, T5ForConditionalGeneration


@pytest.fixture(scope="module")
def trained_pieces():
    texts = [t for name in TASKS for ex in TASKS[name].examples("train", 30)
             for t in format_example(name, ex)]
    tokenizer = Tokenizer.train(texts, vocab_size=400, num_sentinels=4)
    model = T5ForConditionalGeneration(T5Config(vocab_size=tokenizer.vocab_size, d_model=16, d_kv=4,
                                                d_ff=32, num_layers=1, num_heads=4, dropout_rate=0.0))
    return model, tokenizer


def _run_dir(path, pieces, model_subfolder=False):
    """What the Trainer writes: an HF model folder plus tokenizer.json."""
    model, tokenizer = pieces
    model.save_pretrained(str(path / "model" if model_subfolder else path))
    tokenizer.save(str(path))
    return path


@pytest.fixture(autouse=True)
def smoke(monkeypatch):
    monkeypatch.setenv("MINILLM_SMOKE", "1")


def test_mini_glue_smoke_run_prints_the_table_and_writes_json(tmp_path, trained_pieces, capsys):
    run = _run_dir(tmp_path / "run", trained_pieces)
    out = tmp_path / "results.json"
    assert main(["--suite", "mini-glue", "--model", str(run), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| Task" in printed and "GLUE-style score" in printed
    data = json.loads(out.read_text())
    assert data["suite"] == "mini-glue" and data["smoke"] is True
    assert {r["task"] for r in data["results"]} == {"sentiment", "paraphrase", "arithmetic",
                                                    "translation", "dialogue_summary"}
    assert all(r["num_examples"] == SMOKE_EXAMPLES for r in data["results"])
    assert data["score"] == pytest.approx(sum(data["per_task"].values()) / 5)


def test_helm_smoke_run_on_a_model_subfolder(tmp_path, trained_pieces):
    run = _run_dir(tmp_path / "run", trained_pieces, model_subfolder=True)
    out = tmp_path / "helm.json"
    assert main(["--suite", "helm", "--model", str(run), "--tasks", "sentiment", "--shots", "1",
                 "--output", str(out)]) == 0
    (row,) = json.loads(out.read_text())["scenarios"]
    assert row["scenario"] == "sentiment" and row["ece"] is not None
    assert row["trainable_parameters"] == row["total_parameters"]


def test_an_adapter_is_loaded_on_top_and_counted_as_the_trainable_part(tmp_path, trained_pieces):
    peft = pytest.importorskip("minillm.peft")
    run = _run_dir(tmp_path / "run", trained_pieces)
    lora = peft.get_peft_model(T5ForConditionalGeneration.from_pretrained(str(run)),
                               peft.LoraConfig(r=2, lora_alpha=4, target_modules=["q", "v"]))
    lora.save_pretrained(str(tmp_path / "adapter"))
    out = tmp_path / "helm.json"
    assert main(["--suite", "helm", "--model", str(run), "--adapter", str(tmp_path / "adapter"),
                 "--tasks", "paraphrase", "--output", str(out)]) == 0
    (row,) = json.loads(out.read_text())["scenarios"]
    # only the LoRA matrices are trainable: a small part of the whole model
    assert 0 < row["trainable_parameters"] < row["total_parameters"]


def test_a_missing_run_folder_is_a_clear_error_with_exit_code_2(tmp_path, capsys):
    assert main(["--model", str(tmp_path / "nope")]) == 2
    assert f"{tmp_path / 'nope'}: no such directory" in capsys.readouterr().err


def test_the_arguments_plug_into_a_subcommand_parser(tmp_path, trained_pieces):
    parser = argparse.ArgumentParser(prog="minillm")
    add_evaluate_arguments(parser.add_subparsers(dest="command").add_parser("evaluate"))
    run = _run_dir(tmp_path / "run", trained_pieces)
    args = parser.parse_args(["evaluate", "--model", str(run), "--tasks", "arithmetic",
                              "--batch-size", "2", "--prompt-style", "flan"])
    assert (args.suite, args.shots, args.num_examples) == ("mini-glue", 0, None)  # None: 100 per task
    assert run_evaluate(args) == 0
