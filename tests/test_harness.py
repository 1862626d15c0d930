"""The evaluation harness: multiple choice by log-likelihood, few-shot prompts, batched
generation, standard errors, and the results table / JSON."""
import json

import numpy as np
import pytest

from minillm.autograd import no_grad
from minillm.data import TASKS, Tokenizer, format_example, shift_right
from minillm.evaluation import (GENERATION, MULTIPLE_CHOICE, EvalTask, TaskOutput,
                                build_prompts, builtin_task, evaluate, results_table,
                                generate_texts, option_log_likelihoods, run_task, score_task,
                                select_shots)
from minillm.metrics import corpus_bleu
from minillm.models import T5Config, T5ForConditionalGeneration


@pytest.fixture(scope="module")
def tokenizer():
    """A small BPE tokenizer trained on a few hundred prompts and answers of the built-in tasks."""
    texts = []
    for name in TASKS:
        for example in TASKS[name].examples("train", 40, seed=0):
            texts += list(format_example(name, example))
    return Tokenizer.train(texts, vocab_size=400, num_sentinels=4)


@pytest.fixture(scope="module")
def model(tokenizer):
    """A tiny random T5 (weights are random: the tests check the computation, not quality)."""
    import minillm
    minillm.manual_seed(0)
    config = T5Config(vocab_size=tokenizer.vocab_size, d_model=32, d_kv=8, d_ff=64, num_layers=1,
                      num_heads=4, dropout_rate=0.0)
    return T5ForConditionalGeneration(config).eval()


def _echo_render(shots, query):
    return "\n".join([s["text"] for s in shots] + [query["text"]]), query["target"]


def _manual_log_likelihood(model, tokenizer, prompt, option):
    """sum_t log p(option[t] | prompt, option[<t]) from one unbatched forward, </s> included."""
    target = np.array([tokenizer.encode(option)])                       # (1, tgt_len), ends in </s>
    with no_grad():
        logits = model(input_ids=np.array([tokenizer.encode(prompt)]),
                       decoder_input_ids=shift_right(target)).logits.data[0].astype(np.float64)
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))  # log-softmax over the vocab
    return float(sum(log_probs[t, token] for t, token in enumerate(target[0])))


# ----------------------------------------------------------------------------- multiple choice
def test_option_scores_equal_summed_token_log_probs_from_the_logits(model, tokenizer):
    prompts = ["The food was great. Is this review positive or negative?",
               "What is 3 plus 4?", "Hi"]
    options = [["positive", "negative"], ["7", "seven", "12"], ["hello there", "bye"]]
    scores = option_log_likelihoods(model, tokenizer, prompts, options, batch_size=2)
    for prompt, opts, got in zip(prompts, options, scores):
        expected = [_manual_log_likelihood(model, tokenizer, prompt, o) for o in opts]
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)


def test_multiple_choice_predicts_the_option_with_the_highest_log_likelihood(model, tokenizer):
    examples = [{"text": f"Review number {i}: it was fine.", "target": "positive"} for i in range(5)]
    options = ["positive", "negative", "so so"]
    task = EvalTask("mc", examples, _echo_render, MULTIPLE_CHOICE, ("accuracy",), options=options)
    output = run_task(model, tokenizer, task, batch_size=2)
    for example, prediction in zip(examples, output.predictions):
        manual = [_manual_log_likelihood(model, tokenizer, example["text"], o) for o in options]
        assert prediction == options[int(np.argmax(manual))]


def test_per_example_options_override_the_task_options(model, tokenizer):
    examples = [{"text": "The man broke his toe. What was the cause?", "target": "He dropped a hammer.",
                 "options": ["He dropped a hammer.", "He got a hole in his sock."]}]
    task = EvalTask("copa", examples, _echo_render, MULTIPLE_CHOICE, ("accuracy",))
    output = run_task(model, tokenizer, task)
    assert output.predictions[0] in examples[0]["options"]
    assert len(output.option_scores[0]) == 2


def test_a_target_outside_the_options_is_an_error(model, tokenizer):
    task = EvalTask("mc", [{"text": "x", "target": "maybe"}], _echo_render, MULTIPLE_CHOICE,
                    ("accuracy",), options=["yes", "no"])
    with pytest.raises(ValueError, match="not one of the options"):
        run_task(model, tokenizer, task)


# ----------------------------------------------------------------------------- prompts
def test_few_shot_selection_is_seeded_and_never_contains_the_query():
    pool = [{"text": f"example {i}", "target": str(i)} for i in range(12)]
    for i, query in enumerate(pool):
        shots = select_shots(pool, query, 3, seed=7, query_index=i)
        assert len(shots) == 3 and query not in shots
        assert shots == select_shots(pool, query, 3, seed=7, query_index=i)
    by_seed = [[tuple(s["text"] for s in select_shots(pool, q, 3, seed, i)) for i, q in enumerate(pool)]
               for seed in (0, 1)]
    assert by_seed[0] != by_seed[1]


def test_asking_for_more_shots_than_the_pool_has_is_an_error():
    pool = [{"text": "a", "target": "1"}, {"text": "b", "target": "2"}]
    with pytest.raises(ValueError, match="only 1"):
        select_shots(pool, pool[0], 2, seed=0, query_index=0)


def test_zero_shot_prompt_is_the_template_and_k_shot_prepends_k_solved_examples():
    task = builtin_task("sentiment", n=4)
    zero, targets = build_prompts(task, shots=0)
    assert zero[0] == format_example("sentiment", task.examples[0], 0)[0]
    assert targets == [ex["target"] for ex in task.examples]
    two, _ = build_prompts(task, shots=2, seed=3)
    for prompt, example in zip(two, task.examples):
        assert prompt.count("OPTIONS:") == 3          # two demonstrations + the query
        assert prompt.endswith(zero[task.examples.index(example)])
        assert prompt.count(example["review"]) == 1   # the query is not also a demonstration


def test_builtin_tasks_pick_output_type_and_metrics_from_the_task():
    assert builtin_task("sentiment", n=2).output_type == MULTIPLE_CHOICE
    assert builtin_task("translation", n=2).metrics == ("bleu", "chrf")
    arithmetic = builtin_task("arithmetic", n=2)
    assert arithmetic.output_type == GENERATION and arithmetic.metrics == ("exact_match",)
    # shots come from the train split, which never shares an input with the test split
    assert not {ex["question"] for ex in arithmetic.shot_pool} & {ex["question"] for ex in arithmetic.examples}


# ----------------------------------------------------------------------------- generation
def test_batched_generation_matches_one_by_one_generation_in_the_original_order(model, tokenizer):
    prompts = ["What is 3 plus 4?", "Translate to Zorbish:\n\nthe big dog saw the cats in the park",
               "Hi", "Solve this: What is 12 minus 5?", "Review: The food was great."]
    batched = generate_texts(model, tokenizer, prompts, batch_size=3, max_new_tokens=6)
    n_batched = batched.num_tokens
    single = [generate_texts(model, tokenizer, [p], batch_size=1, max_new_tokens=6)[0] for p in prompts]
    assert batched == single
    assert 0 < n_batched <= 6 * len(prompts)


# ----------------------------------------------------------------------------- scoring
def _scored(metrics, predictions, targets, seed=0):
    task = EvalTask("t", [{"target": t} for t in targets], _echo_render, GENERATION, metrics)
    return score_task(task, TaskOutput([""] * len(targets), targets, predictions), seed=seed)


def test_per_example_stderr_is_the_standard_error_of_the_mean():
    (result,) = _scored(("exact_match",), ["a", "x", "c", "y"], ["a", "b", "c", "d"])
    assert result.value == 50.0
    # scores 100, 0, 100, 0: sample std 57.735..., divided by sqrt(4)
    assert result.stderr == pytest.approx(np.std([100, 0, 100, 0], ddof=1) / 2)
    assert result.num_examples == 4


def test_corpus_metric_stderr_is_a_seeded_bootstrap():
    targets = ["the dog saw the cat", "a big red house", "the cats ran in the park", "my friend is here",
               "we eat bread", "the bird sings"]
    predictions = ["the dog saw a cat", "a red house", "the cats ran in park", "my friend here",
                   "we eat bread", "bird sings"]
    (bleu,) = _scored(("bleu",), predictions, targets, seed=0)
    assert bleu.value == pytest.approx(corpus_bleu(predictions, [targets]).score)
    assert bleu.stderr > 0
    assert _scored(("bleu",), predictions, targets, seed=0)[0].stderr == bleu.stderr
    assert _scored(("bleu",), predictions, targets, seed=1)[0].stderr != bleu.stderr


def test_f1_counts_the_positive_option():
    task = EvalTask("p", [{"target": t} for t in ["yes", "yes", "no", "no"]], _echo_render,
                    MULTIPLE_CHOICE, ("f1",), options=["yes", "no"])
    output = TaskOutput([""] * 4, ["yes", "yes", "no", "no"], ["yes", "no", "yes", "no"])
    (f1,) = score_task(task, output)
    assert f1.value == pytest.approx(50.0)  # TP 1, FP 1, FN 1: 2 / (2 + 1 + 1)


def test_unknown_metrics_are_rejected_when_the_task_is_built():
    with pytest.raises(ValueError, match="unknown metrics"):
        EvalTask("t", [], _echo_render, GENERATION, ("bleurt",))


# ----------------------------------------------------------------------------- reports
def test_results_table_has_the_documented_columns_and_aligned_rows():
    results = _scored(("exact_match",), ["a", "b"], ["a", "c"])
    lines = results_table(results).splitlines()
    assert [c.strip() for c in lines[0].strip("|").split("|")] == ["Task", "n-shot", "Metric", "Value", "± stderr"]
    assert set(lines[1]) <= {"|", "-", ":"}
    assert [c.strip() for c in lines[2].strip("|").split("|")] == ["t", "0", "exact_match", "50.00", "50.00"]
    assert len({len(line) for line in lines}) == 1  # every line has the same width


def test_evaluate_reports_every_metric_and_writes_json(model, tokenizer, tmp_path):
    tasks = [builtin_task("sentiment", n=6), builtin_task("arithmetic", n=6)]
    for t in tasks:
        t.max_new_tokens = 4
    report = evaluate(model, tokenizer, tasks, shots=1, batch_size=4, n_bootstrap=10)
    assert [(r.task, r.metric, r.n_shot) for r in report.results] == [
        ("sentiment", "accuracy", 1), ("arithmetic", "exact_match", 1)]
    path = tmp_path / "results.json"
    data = json.loads(report.to_json(str(path)))
    assert data == json.loads(path.read_text())
    assert set(data["results"][0]) == {"task", "n_shot", "metric", "value", "stderr", "num_examples"}
    assert data["config"]["shots"] == 1
    assert report.value("sentiment", "accuracy") == data["results"][0]["value"]
    assert "sentiment" in report.table()
