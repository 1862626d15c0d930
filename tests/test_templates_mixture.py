"""Specification of FLAN-style templates and multitask mixtures."""
import math
import random
from collections import Counter

import pytest

from minillm.data.collate import Record
from minillm.data.mixture import allocate, build_mixture, mixture_rates
from minillm.data.tasks import DEFAULT_MIXTURE, TASKS, split_of
from minillm.data.templates import (TEMPLATES, few_shot_prompt, format_example, num_templates,
                                    options_block)


@pytest.mark.parametrize("name", list(TASKS))
def test_every_task_has_three_templates_that_use_every_field(name):
    task = TASKS[name]
    assert num_templates(name) >= 3
    ex = task.examples("train", 1, seed=0)[0]
    for template_id in range(num_templates(name)):
        prompt, completion = format_example(name, ex, template_id)
        assert completion == ex["target"]
        assert all(ex[f] in prompt for f in task.fields)
        assert ("OPTIONS:" in prompt) == (task.options is not None)
        assert "{" not in prompt  # no unfilled placeholder


def test_options_are_listed_like_flan():
    assert options_block(["positive", "negative"]) == "OPTIONS:\n- positive\n- negative"
    ex = {"review": "The food was great.", "target": "positive"}
    prompt, _ = format_example("sentiment", ex, template_id=0)
    assert prompt.endswith("OPTIONS:\n- positive\n- negative")


def test_template_choice_is_random_with_rng_and_fixed_without():
    ex = TASKS["arithmetic"].examples("train", 1)[0]
    assert format_example("arithmetic", ex) == format_example("arithmetic", ex, template_id=0)
    rng = random.Random(0)
    prompts = {format_example("arithmetic", ex, rng=rng)[0] for _ in range(40)}
    assert len(prompts) == num_templates("arithmetic")
    again = [format_example("arithmetic", ex, rng=random.Random(5))[0] for _ in range(2)]
    assert again[0] == again[1]


def test_few_shot_prompt_puts_solved_shots_before_the_query():
    shots = [{"question": "What is 1 plus 1?", "target": "2"},
             {"question": "What is 5 minus 3?", "target": "2"}]
    query = {"question": "What is 4 times 2?", "target": "8"}
    prompt, completion = few_shot_prompt("arithmetic", shots, query, template_id=2)
    assert completion == "8"
    assert prompt == ("Question: What is 1 plus 1?\nAnswer:\n2\n\n"
                      "Question: What is 5 minus 3?\nAnswer:\n2\n\n"
                      "Question: What is 4 times 2?\nAnswer:")


def test_rates_are_examples_proportional_with_a_cap():
    rates = mixture_rates({"a": 100, "b": 1000, "c": 10}, cap=500)
    # capped sizes 100, 500, 10 -> total 610
    assert rates == pytest.approx({"a": 100 / 610, "b": 500 / 610, "c": 10 / 610})
    assert mixture_rates({"a": 100, "b": 300}) == pytest.approx({"a": 0.25, "b": 0.75})


def test_temperature_flattens_the_rates():
    rates = mixture_rates({"a": 100, "b": 400}, temperature=2.0)
    # sqrt: 10 and 20 -> 1/3 and 2/3
    assert rates == pytest.approx({"a": 1 / 3, "b": 2 / 3})
    hot = mixture_rates({"a": 100, "b": 400}, temperature=1000.0)
    assert hot["a"] == pytest.approx(0.5, abs=0.01)
    with pytest.raises(ValueError):
        mixture_rates({"a": 1}, temperature=0)


def test_allocate_rounds_by_largest_remainder():
    # 7 * (0.5, 0.3, 0.2) = 3.5, 2.1, 1.4 -> floors 3, 2, 1; the spare one goes to a (0.5)
    assert allocate({"a": 0.5, "b": 0.3, "c": 0.2}, 7) == {"a": 4, "b": 2, "c": 1}
    assert sum(allocate({"x": 1 / 3, "y": 1 / 3, "z": 1 / 3}, 100).values()) == 100


def test_mixture_counts_follow_the_capped_rates():
    sizes = {"sentiment": 300, "arithmetic": 100, "translation": 50}
    records = build_mixture(list(sizes), examples_per_task=sizes, cap=200, seed=0)
    # capped sizes 200, 100, 50: one pass over the capped data is 350 records
    assert len(records) == 350
    assert Counter(r.task for r in records) == {"sentiment": 200, "arithmetic": 100, "translation": 50}
    assert all(isinstance(r, Record) for r in records)


def test_mixture_total_and_repetition_of_small_pools():
    records = build_mixture(["arithmetic"], examples_per_task=10, total=25, template_id=1, seed=0)
    counts = Counter(r.prompt for r in records)
    assert len(records) == 25 and len(counts) == 10  # every example used 2-3 times
    assert max(counts.values()) - min(counts.values()) <= 1


def test_mixture_is_deterministic_by_seed_and_shuffled():
    a = build_mixture(examples_per_task=40, seed=1)
    assert a == build_mixture(examples_per_task=40, seed=1)
    assert a != build_mixture(examples_per_task=40, seed=2)
    changes = sum(x.task != y.task for x, y in zip(a, a[1:]))
    assert changes > 2 * len(DEFAULT_MIXTURE)  # interleaved, not one block per task
    assert {r.task for r in a} == set(DEFAULT_MIXTURE)


def test_mixture_uses_only_the_requested_split():
    # arithmetic template 1 is just "{question}", so the prompt is the example's key
    records = build_mixture(["arithmetic"], examples_per_task=100, split="test", template_id=1)
    assert all(split_of(r.prompt) == "test" for r in records)


def test_few_shot_fraction_renders_few_shot_prompts():
    records = build_mixture(["arithmetic"], examples_per_task=50, few_shot_fraction=1.0,
                            num_shots=2, template_id=0, seed=0)
    instruction = "Answer the question with a number."
    assert all(r.prompt.count(instruction) == 3 for r in records)
    none = build_mixture(["arithmetic"], examples_per_task=50, template_id=0, seed=0)
    assert all(r.prompt.count(instruction) == 1 for r in none)


def test_templates_cover_exactly_the_registered_tasks():
    assert set(TEMPLATES) == set(TASKS)
    assert math.isclose(sum(mixture_rates({"a": 3, "b": 5, "c": 0}).values()), 1.0)
