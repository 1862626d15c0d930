"""Easier task levels (minillm/data/task_levels.py): each draws only what its description says,
keeps the task's name, fields, options and metric, and leaves the full task unchanged."""
import re

import pytest

from minillm.data import build_mixture
from minillm.data.task_levels import LEVELS, parse_levels, task_variant
from minillm.data.tasks import SPLITS, TASKS
from minillm.data.templates import format_example


def answer(question: str) -> int:
    """An independent oracle for the arithmetic questions: parse the numbers and the operation."""
    a, b = (int(n) for n in re.findall(r"\d+", question))
    if "plus" in question or "buys" in question:
        return a + b
    if "minus" in question or "gives" in question:
        return a - b
    assert "times" in question, question
    return a * b


def test_plain_sentiment_has_no_negation_and_no_contrast_but_the_full_task_does():
    plain = task_variant("sentiment", "plain").examples("train", 400, seed=0)
    assert not any(" was not " in ex["review"] or " but " in ex["review"] for ex in plain)
    assert {ex["target"] for ex in plain} == {"positive", "negative"}
    full = TASKS["sentiment"].examples("train", 400, seed=0)
    assert any(" was not " in ex["review"] for ex in full) and any(" but " in ex["review"] for ex in full)


def test_small_word_problems_stay_within_their_numbers_and_are_correct():
    examples = task_variant("arithmetic", "word_small").examples("train", 500, seed=0)
    kinds = set()
    for ex in examples:
        q = ex["question"]
        assert max(int(n) for n in re.findall(r"\d+", q)) <= 10, q
        assert ex["target"] == str(answer(q)), q
        kinds.add(next(k for k in ("plus", "minus", "times", "buys", "gives") if k in q))
    assert kinds == {"buys", "gives"}
    full = TASKS["arithmetic"].examples("train", 200, seed=0)
    assert any(max(int(n) for n in re.findall(r"\d+", ex["question"])) > 10 for ex in full)
    assert any("plus" in ex["question"] for ex in full)


@pytest.mark.parametrize("name,level", sorted(LEVELS))
def test_a_level_keeps_the_task_interface_and_disjoint_splits(name, level):
    task, full = task_variant(name, level), TASKS[name]
    assert (task.name, task.fields, task.options, task.metric) == (full.name, full.fields, full.options, full.metric)
    assert task.level == level and level in task.description
    keys = [{task.key(ex) for ex in task.examples(split, 60, seed=1)} for split in SPLITS]
    assert not (keys[0] & keys[1] or keys[0] & keys[2] or keys[1] & keys[2])
    prompt, completion = format_example(task, task.examples("test", 1)[0], template_id=0)
    assert completion and prompt


def test_full_level_is_the_registered_task_and_unknown_levels_are_named():
    assert task_variant("sentiment") is TASKS["sentiment"] and task_variant("sentiment", "full") is TASKS["sentiment"]
    with pytest.raises(KeyError, match="sentiment=plain"):
        task_variant("sentiment", "easy")
    with pytest.raises(ValueError, match="task=level"):
        parse_levels("sentiment")
    with pytest.raises(ValueError, match="'easy'"):
        parse_levels("sentiment=easy")
    assert parse_levels(" sentiment=plain , arithmetic=word_small") == {"sentiment": "plain",
                                                                          "arithmetic": "word_small"}


def test_a_mixture_takes_task_objects_and_records_carry_the_task_name():
    records = build_mixture(["translation", task_variant("sentiment", "plain")], 30, seed=0)
    assert {r.task for r in records} == {"translation", "sentiment"}
    assert not any(" but " in r.prompt for r in records if r.task == "sentiment")
