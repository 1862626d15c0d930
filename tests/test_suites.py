"""Suites: mini-GLUE and GLUE averaging, loaders for real GLUE/SuperGLUE files, HELM-style
perturbations and calibration."""
import random

import numpy as np
import pytest

from minillm.data import DataError
from minillm.evaluation import (MetricResult, build_prompts, calibration_error, glue_average,
                                helm_report, label_probabilities, load_glue_task, mini_glue_tasks,
                                perturb_examples, perturb_text)
from minillm.models import T5Config, T5ForConditionalGeneration


# ----------------------------------------------------------------------------- mini-GLUE
def test_glue_average_averages_within_a_task_before_across_tasks():
    results = [MetricResult("mrpc", 0, "accuracy", 80.0, 0, 10), MetricResult("mrpc", 0, "f1", 60.0, 0, 10),
               MetricResult("sst2", 0, "accuracy", 40.0, 0, 10)]
    glue = glue_average(results)
    assert glue.per_task == {"mrpc": 70.0, "sst2": 40.0}
    assert glue.score == 55.0  # not (80 + 60 + 40) / 3 = 60: a two-metric task counts once


def test_mini_glue_casts_builtin_tasks_with_t5_prefixes():
    tasks = {t.name: t for t in mini_glue_tasks(n=3)}
    assert set(tasks) == {"sentiment", "paraphrase", "arithmetic", "translation", "dialogue_summary"}
    assert tasks["paraphrase"].metrics == ("accuracy", "f1")
    prompts, targets = build_prompts(tasks["sentiment"])
    example = tasks["sentiment"].examples[0]
    assert prompts[0] == f"sentiment review: {example['review']}"
    assert targets[0] in ("positive", "negative")
    flan = mini_glue_tasks(n=3, prompt_style="flan", tasks=["sentiment"])[0]
    assert "OPTIONS:" in build_prompts(flan)[0][0]


# ----------------------------------------------------------------------------- loaders
def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_sst2_tsv_in_the_glue_layout_becomes_a_multiple_choice_task(tmp_path):
    _write(tmp_path / "SST-2" / "dev.tsv", "sentence\tlabel\nit 's a charming journey . \t1\n"
                                           "a dull , \"boring\" film\t0\n")
    _write(tmp_path / "SST-2" / "train.tsv", "sentence\tlabel\na fine film\t1\nawful\t0\n")
    task = load_glue_task("sst2", str(tmp_path))
    assert [ex["target"] for ex in task.examples] == ["positive", "negative"]
    # quoting is off, as in GLUE's own readers: the stray quotes stay part of the sentence
    assert task.examples[1]["sentence"] == 'a dull , "boring" film'
    assert build_prompts(task)[0][0] == "sst2 sentence: it 's a charming journey . "
    assert task.options == ["negative", "positive"]
    assert [ex["sentence"] for ex in task.shot_pool] == ["a fine film", "awful"]  # from train.tsv


def test_task_files_can_also_sit_directly_in_the_folder(tmp_path):
    _write(tmp_path / "dev.tsv", "index\tsentence1\tsentence2\tlabel\n0\tA cat sat.\tA cat is sitting.\tentailment\n")
    task = load_glue_task("rte", str(tmp_path))
    assert task.examples == [{"sentence1": "A cat sat.", "sentence2": "A cat is sitting.",
                              "target": "entailment"}]
    assert task.shot_pool is None  # no train.tsv: shots come from dev, minus the query


def test_mrpc_and_headerless_cola(tmp_path):
    _write(tmp_path / "MRPC" / "dev.tsv", "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
                                          "1\t1\t2\tHe said hi.\tHe greeted us.\n0\t3\t4\tIt rains.\tIt is sunny.\n")
    mrpc = load_glue_task("mrpc", str(tmp_path))
    assert [ex["target"] for ex in mrpc.examples] == ["equivalent", "not_equivalent"]
    assert mrpc.metrics == ("accuracy", "f1") and mrpc.positive_option == "equivalent"
    _write(tmp_path / "CoLA" / "dev.tsv", "gj04\t1\t\tThe book was read.\ngj04\t0\t*\tBook the read was.\n")
    cola = load_glue_task("cola", str(tmp_path))
    assert [(ex["sentence"], ex["target"]) for ex in cola.examples] == [
        ("The book was read.", "acceptable"), ("Book the read was.", "unacceptable")]


def test_superglue_jsonl_boolq_cb_and_copa(tmp_path):
    _write(tmp_path / "BoolQ" / "val.jsonl",
           '{"question": "is the sky blue", "passage": "The sky is blue.", "idx": 0, "label": true}\n\n'
           '{"question": "is ice hot", "passage": "Ice is cold.", "idx": 1, "label": false}\n')
    boolq = load_glue_task("boolq", str(tmp_path))
    assert [ex["target"] for ex in boolq.examples] == ["True", "False"]  # blank line skipped
    assert build_prompts(boolq)[0][0] == "boolq passage: The sky is blue. question: is the sky blue"
    _write(tmp_path / "CB" / "val.jsonl", '{"premise": "p", "hypothesis": "h", "label": "neutral"}\n')
    assert load_glue_task("cb", str(tmp_path)).examples[0]["target"] == "neutral"
    _write(tmp_path / "COPA" / "val.jsonl",
           '{"premise": "The man broke his toe.", "choice1": "He dropped a hammer on his foot.", '
           '"choice2": "He got a hole in his sock.", "question": "cause", "label": 0, "idx": 0}\n')
    copa = load_glue_task("copa", str(tmp_path))
    example = copa.examples[0]
    assert example["options"] == ["He dropped a hammer on his foot.", "He got a hole in his sock."]
    assert example["target"] == "He dropped a hammer on his foot."


@pytest.mark.parametrize("name, relative, text, message", [
    ("sst2", "SST-2/dev.tsv", "sentence\tlabel\ngood\t1\nbad\t0\textra\n", "line 3: expected 2 tab-separated"),
    ("sst2", "SST-2/dev.tsv", "sentence\tlabel\ngood\t1\nbad\tmaybe\n", "line 3: label 'maybe' is not one of"),
    ("cola", "CoLA/dev.tsv", "gj04\t1\t\tok.\ngj04\t1\n", "line 2: missing column 3"),
    ("boolq", "BoolQ/val.jsonl", '{"question": "q", "passage": "p", "label": true}\n{"question": \n',
     "line 2: not valid JSON"),
    ("boolq", "BoolQ/val.jsonl", '{"question": "q", "label": true}\n', "line 1: missing field 'passage'"),
    ("copa", "COPA/val.jsonl", '{"premise": "p", "choice1": "a", "choice2": "b", "question": "cause", '
     '"label": 2}\n', "line 1: label 2 is not a choice index"),
])
def test_bad_lines_raise_errors_naming_the_file_and_line(tmp_path, name, relative, text, message):
    path = _write(tmp_path / relative, text)
    with pytest.raises(DataError) as info:
        load_glue_task(name, str(tmp_path))
    assert str(path) in str(info.value) and message in str(info.value)


def test_a_missing_file_names_the_paths_that_were_tried(tmp_path):
    with pytest.raises(FileNotFoundError, match="RTE.dev.tsv"):
        load_glue_task("rte", str(tmp_path))


# ----------------------------------------------------------------------------- HELM
SENTENCE = "The food was great and the service was friendly."


@pytest.mark.parametrize("kind", ["typos", "casing", "whitespace"])
def test_perturbations_are_seeded_and_change_the_text(kind):
    first = perturb_text(SENTENCE, kind, random.Random(1))
    assert first != SENTENCE
    assert first == perturb_text(SENTENCE, kind, random.Random(1))
    assert {perturb_text(SENTENCE, kind, random.Random(s)) for s in range(10)} != {first}


def test_each_perturbation_does_what_its_name_says():
    typo = perturb_text(SENTENCE, "typos", random.Random(0))
    assert sorted(typo) == sorted(SENTENCE)                     # letters swapped, none added
    casing = perturb_text(SENTENCE, "casing", random.Random(0))
    assert casing.lower() == SENTENCE.lower()
    spacing = perturb_text(SENTENCE, "whitespace", random.Random(0))
    assert spacing.replace(" ", "") == SENTENCE.replace(" ", "")


def test_perturb_examples_changes_only_the_input_fields():
    examples = [{"review": SENTENCE, "target": "positive"}]
    (copy,) = perturb_examples(examples, ["review"], "casing", seed=0)
    assert copy["review"] != SENTENCE and copy["target"] == "positive"
    assert examples[0]["review"] == SENTENCE  # the originals are untouched


def test_label_probabilities_are_the_softmax_of_option_log_likelihoods():
    (probs,) = label_probabilities([[np.log(0.6) + 5, np.log(0.3) + 5, np.log(0.1) + 5]])
    np.testing.assert_allclose(probs, [0.6, 0.3, 0.1])


def test_calibration_error_on_hand_values():
    scores = [[np.log(0.9), np.log(0.1)],   # confident 0.9, right
              [np.log(0.2), np.log(0.8)]]   # confident 0.8, wrong (the label is option 0)
    labels = [0, 0]
    # one example per bin: (|1 - 0.9| + |0 - 0.8|) / 2
    assert calibration_error(scores, labels) == pytest.approx(0.45)
    # a single bin: |accuracy 0.5 - mean confidence 0.85|
    assert calibration_error(scores, labels, n_bins=1) == pytest.approx(0.35)


def test_helm_report_has_every_axis_for_every_scenario():
    from minillm.data import TASKS, Tokenizer, format_example

    texts = [t for ex in TASKS["sentiment"].examples("train", 60) for t in format_example("sentiment", ex)]
    texts += [t for ex in TASKS["arithmetic"].examples("train", 60) for t in format_example("arithmetic", ex)]
    tokenizer = Tokenizer.train(texts, vocab_size=300, num_sentinels=2)
    model = T5ForConditionalGeneration(T5Config(vocab_size=tokenizer.vocab_size, d_model=16, d_kv=4, d_ff=32,
                                                num_layers=1, num_heads=4, dropout_rate=0.0))
    from minillm.evaluation import builtin_task
    tasks = [builtin_task("sentiment", n=6), builtin_task("arithmetic", n=6)]
    tasks[1].max_new_tokens = 3
    report = helm_report(model, tokenizer, tasks, batch_size=4)
    sentiment, arithmetic = report.rows
    assert 0 <= sentiment.ece <= 1 and arithmetic.ece is None   # calibration needs options
    for row in report.rows:
        assert set(row.perturbed_accuracy) == {"typos", "casing", "whitespace"}
        # worst case over clean + perturbed inputs can be no better than any one of them
        assert row.robustness <= min([row.accuracy, *row.perturbed_accuracy.values()])
        assert row.tokens_per_second > 0
        assert row.trainable_parameters == row.total_parameters == model.num_parameters()
    assert "Robustness" in report.table().splitlines()[0]
