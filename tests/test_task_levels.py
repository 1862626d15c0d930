"""Easier task levels (minillm/data/task_levels.py): each draws only what its description says,
keeps the task's name, fields, options and metric, and leaves the full task unchanged."""
import re

import pytest

from minillm.data import build_mixture
from minillm.data.task_levels import LEVELS, parse_levels, task_variant
from minillm.data import tasks_lexicon as L
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


def plan(sentence: str) -> tuple:
    """An independent oracle for a paraphrase sentence: its names, place, day and activity,
    found by searching the lexicon (each sentence has two names and one of each other slot)."""
    def found(words):
        return [w for w in words if re.search(rf"\b{w}\b", sentence)]
    names, (place,), (day,), (act,) = found(L.NAMES), found(L.PLACES), found(L.DAYS), found(L.ACTIVITIES)
    assert len(names) == 2, sentence
    return set(names), place, day, act


def differing_details(s1: str, s2: str) -> int:
    (names1, *rest1), (names2, *rest2) = plan(s1), plan(s2)
    return len(names1 - names2) + sum(a != b for a, b in zip(rest1, rest2))


@pytest.mark.parametrize("level,changed", [("full", 1), ("all_changed", 4)])
def test_paraphrase_levels_change_the_stated_number_of_details(level, changed):
    examples = task_variant("paraphrase", level).examples("train", 300, seed=0)
    for ex in examples:
        expected = 0 if ex["target"] == "yes" else changed
        assert differing_details(ex["sentence1"], ex["sentence2"]) == expected, ex
    assert 100 < sum(ex["target"] == "yes" for ex in examples) < 200


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
