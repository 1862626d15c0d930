"""Specification of `minillm quickstart`: in smoke mode it runs in seconds, prints the before/after
table on held-out data plus sample generations, and leaves a complete run directory."""
import json
import sys

import pytest

from minillm.cli.main import main
from minillm.data import DEFAULT_MIXTURE, build_mixture
from minillm.cli.quickstart import QuickstartConfig, format_table, held_out_records

TABLE_LABELS = ["summarization ROUGE-1", "summarization ROUGE-2", "summarization ROUGE-L", "translation BLEU",
                "sentiment accuracy", "paraphrase accuracy", "arithmetic exact match"]


RUN_FILES = ("results.json", "quickstart_config.json", "run_config.json", "log.jsonl", "config.json",
             "model.safetensors", "tokenizer.json", "training_args.json")


def _has_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


def test_quickstart_smoke_prints_the_table_and_writes_a_run_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MINILLM_SMOKE", "1")
    out = tmp_path / "qs"
    assert main(["quickstart", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| before | after |" in printed
    for label in TABLE_LABELS:
        assert label in printed, label
    assert printed.count("prediction:") == QuickstartConfig.smoke().num_samples
    for name in RUN_FILES:
        assert (out / name).is_file(), name
    # The plot needs matplotlib, an optional dependency: drawn when it is there, skipped when not.
    assert (out / "loss_curve.png").is_file() == _has_matplotlib()
    results = json.loads((out / "results.json").read_text())
    assert results["steps"] == QuickstartConfig.smoke().max_steps
    assert results["table"] in printed and results["verdict"] in printed
    assert {"translation/bleu", "dialogue_summary/rougeL", "arithmetic/accuracy"} <= results["after"].keys()


def test_quickstart_without_matplotlib_still_completes_without_the_plot(tmp_path, monkeypatch, capsys):
    # Simulate an install without matplotlib: importing it (or any submodule) raises ImportError.
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")] + [
            "matplotlib", "matplotlib.pyplot", "matplotlib.figure", "matplotlib.backends.backend_agg"]:
        monkeypatch.setitem(sys.modules, name, None)
    assert not _has_matplotlib()
    monkeypatch.setenv("MINILLM_SMOKE", "1")
    out = tmp_path / "qs"
    assert main(["quickstart", "--out", str(out)]) == 0
    assert "| before | after |" in capsys.readouterr().out
    for name in RUN_FILES:
        assert (out / name).is_file(), name
    assert not (out / "loss_curve.png").exists()


def test_quickstart_scores_on_examples_never_seen_in_training():
    config = QuickstartConfig.smoke()
    test = held_out_records(config)
    assert len(test) == config.test_examples_per_task * len(DEFAULT_MIXTURE)
    train_prompts = {r.prompt for r in build_mixture(DEFAULT_MIXTURE, 400, split="train", seed=config.seed)}
    assert not train_prompts & {r.prompt for r in test}


def test_table_shows_fractions_and_bleu_on_its_own_scale():
    before = {"dialogue_summary/rougeL": 0.01, "translation/bleu": 0.4}
    after = {"dialogue_summary/rougeL": 0.625, "translation/bleu": 41.27}
    table = format_table(before, after)
    assert "| summarization ROUGE-L        | 0.010 | 0.625 |" in table
    assert "| translation BLEU             | 0.4 | 41.3 |" in table
    assert "sentiment" not in table  # rows without results are left out


def test_constant_answer_column_is_the_majority_class_and_the_weights_scale_the_tasks():
    from minillm.cli.quickstart import constant_baseline, task_sizes  # noqa: PLC0415
    from minillm.data import Record  # noqa: PLC0415

    train = [Record("p", "yes", "paraphrase")] * 3 + [Record("p", "no", "paraphrase")]
    test = [Record("q", answer, "paraphrase") for answer in ("yes", "no", "no", "no", "yes")]
    assert constant_baseline(train, test)["paraphrase/accuracy"] == 2 / 5  # always "yes": 2 of 5 right
    table = format_table({"paraphrase/accuracy": 0.0}, {"paraphrase/accuracy": 0.9}, {"paraphrase/accuracy": 0.4})
    assert "| paraphrase accuracy          | 0.400 | 0.000 | 0.900 |" in table and "constant answer" in table
    sizes = task_sizes(QuickstartConfig(examples_per_task=100, mixture_weights="translation=3, sentiment=0.5"))
    assert sizes == {"dialogue_summary": 100, "translation": 300, "sentiment": 50, "paraphrase": 100, "arithmetic": 100}
    with pytest.raises(ValueError, match="translaton"):
        task_sizes(QuickstartConfig(mixture_weights="translaton=3"))


def test_easier_task_levels_are_trained_scored_and_named_in_the_table():
    from minillm.cli.quickstart import mixture_tasks  # noqa: PLC0415

    config = QuickstartConfig.smoke(task_levels="sentiment=plain", test_examples_per_task=40)
    reviews = [r.prompt for r in held_out_records(config, mixture_tasks(config)) if r.task == "sentiment"]
    assert len(reviews) == 40 and not any(" but " in p or " was not " in p for p in reviews)
    full = [r.prompt for r in held_out_records(config) if r.task == "sentiment"]  # default: the full tasks
    assert any(" but " in p or " was not " in p for p in full)
    assert [t.name for t in mixture_tasks(config)] == DEFAULT_MIXTURE
    table = format_table({"sentiment/accuracy": 0.5}, {"sentiment/accuracy": 0.9}, levels={"sentiment": "plain"})
    assert "| sentiment accuracy (plain)   | 0.500 | 0.900 |" in table
    with pytest.raises(ValueError, match="antonym"):
        mixture_tasks(QuickstartConfig(task_levels="antonym=plain"))


def test_verdict_judges_by_the_model_cards_rule_on_the_test_predictions():
    from minillm.cli.quickstart import verdict  # noqa: PLC0415
    from minillm.data import Record  # noqa: PLC0415

    train = [Record("p", c, "sentiment") for c in ("negative", "negative", "positive")]
    train += [Record("p", c, "paraphrase") for c in ("yes", "yes", "no")]
    test = [Record("p", c, "sentiment") for c in ["positive"] * 10 + ["negative"] * 10]
    test += [Record("p", c, "paraphrase") for c in ["yes", "no"] * 10]
    # sentiment: every answer right; the constant "negative" is right on the last 10. Paired
    # differences: ten 1s, ten 0s: mean 0.5, sd sqrt(5/19) = 0.513, se 0.115; 0.5 > 2 x 0.115.
    # paraphrase: always "yes" but one "no" right: 11/20 against the constant "yes"'s 10/20;
    # differences: one 1, nineteen 0s: mean 0.05, sd sqrt(0.95/19) = 0.2236, se 0.05; 0.05 < 0.1.
    predictions = ["positive"] * 10 + ["negative"] * 10 + ["yes", "no"] + ["yes"] * 18
    text = verdict(train, test, predictions)
    assert text == ("Better than the constant answer on 1 of 2 tasks (by more than two standard errors of the "
                    "difference): sentiment; not on paraphrase (0.55 against 0.5, margin 0.05 ± 0.05).")
    predictions[11] = "yes"  # one sentiment answer wrong: margin 0.45, still learned
    assert ": sentiment;" in verdict(train, test, predictions)
    # Every answer right: paraphrase's differences are ten 1s (the "no"s) and ten 0s, as sentiment's.
    assert verdict(train, test, [r.completion for r in test]).endswith("of the difference): sentiment, paraphrase.")
    # Every answer the constant: margins 0 with no error, neither task counts.
    constants = ["negative"] * 20 + ["yes"] * 20
    assert verdict(train, test, constants).endswith(
        "; not on sentiment (0.5 against 0.5, margin 0 ± 0), paraphrase (0.5 against 0.5, margin 0 ± 0).")
