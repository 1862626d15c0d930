"""Specification of the built-in tasks: deterministic, disjoint splits, not copies, correct."""
import re
from collections import Counter

import pytest

from minillm.data import tasks_lexicon as L
from minillm.data.corpus import pretraining_corpus
from minillm.data.tasks import DEFAULT_MIXTURE, HELD_OUT_TASKS, TASKS, get_task, split_of, to_zorbish

GENERATION = ["dialogue_summary", "translation", "arithmetic", "antonym", "reverse_words"]


def test_registry_is_consistent():
    assert set(DEFAULT_MIXTURE) | set(HELD_OUT_TASKS) <= set(TASKS)
    assert not set(DEFAULT_MIXTURE) & set(HELD_OUT_TASKS)
    assert HELD_OUT_TASKS
    for name, task in TASKS.items():
        assert task.name == name and get_task(name) is task and get_task(task) is task
        assert task.metric in {"rouge", "bleu", "accuracy"}
    assert TASKS["dialogue_summary"].metric == "rouge"
    assert TASKS["translation"].metric == "bleu"
    assert TASKS["sentiment"].options == ["positive", "negative"]
    assert TASKS["paraphrase"].options == ["yes", "no"]
    assert TASKS["arithmetic"].options is None


def test_unknown_task_names_the_known_ones():
    with pytest.raises(KeyError, match="sentiment"):
        get_task("sentimnet")


@pytest.mark.parametrize("name", list(TASKS))
def test_examples_have_the_task_fields_and_a_target(name):
    task = TASKS[name]
    for ex in task.examples("train", 50, seed=0):
        assert set(ex) == set(task.fields) | {"target"}
        assert all(isinstance(v, str) and v.strip() for v in ex.values())
        if task.options:
            assert ex["target"] in task.options


@pytest.mark.parametrize("name", list(TASKS))
def test_examples_are_deterministic_by_seed_and_distinct(name):
    task = TASKS[name]
    a, b = task.examples("train", 100, seed=3), task.examples("train", 100, seed=3)
    assert a == b
    assert a != task.examples("train", 100, seed=4)
    assert len({task.key(ex) for ex in a}) == 100


@pytest.mark.parametrize("name", list(TASKS))
def test_splits_are_disjoint_for_any_seeds(name):
    task = TASKS[name]
    keys = {split: {task.key(ex) for seed in (0, 1) for ex in task.examples(split, 150, seed)}
            for split in ("train", "validation", "test")}
    assert not keys["train"] & keys["validation"]
    assert not keys["train"] & keys["test"]
    assert not keys["validation"] & keys["test"]


def test_unknown_split_is_rejected():
    with pytest.raises(ValueError, match="split"):
        TASKS["sentiment"].examples("dev", 5)


@pytest.mark.parametrize("name", GENERATION)
def test_generation_targets_are_not_copies_of_the_input(name):
    task = TASKS[name]
    for ex in task.examples("validation", 100, seed=0):
        source = task.key(ex)
        assert ex["target"] != source
        if name in ("dialogue_summary", "translation"):
            assert ex["target"] not in source


@pytest.mark.parametrize("name", ["sentiment", "paraphrase"])
def test_classification_labels_are_balanced(name):
    counts = Counter(ex["target"] for ex in TASKS[name].examples("train", 600, seed=0))
    assert set(counts) == set(TASKS[name].options)
    assert all(0.4 < c / 600 < 0.6 for c in counts.values())


def test_zorbish_follows_its_three_rules():
    # SOV, adjective after noun, plural -li, past -ta, object marker ka, locative ne.
    assert to_zorbish("the big dog saw the cats in the park") == "vasku bora parel ne miroli ka vimta"
    assert to_zorbish("the children like the old king") == "neloli roval garo ka amo"
    assert to_zorbish("the fox chases the birds") == "pelu tupili ka kasu"


def test_translation_examples_agree_with_the_translator():
    for ex in TASKS["translation"].examples("train", 50, seed=0):
        assert ex["target"] == to_zorbish(ex["english"])
        assert ex["target"].split()[-2] == "ka"


def test_arithmetic_answers_are_correct_digits():
    patterns = [(r"What is (\d+) plus (\d+)\?", lambda a, b: a + b),
                (r"What is (\d+) minus (\d+)\?", lambda a, b: a - b),
                (r"What is (\d+) times (\d+)\?", lambda a, b: a * b),
                (r"has (\d+) \w+ and buys (\d+) more", lambda a, b: a + b),
                (r"has (\d+) \w+ and gives (\d+) to", lambda a, b: a - b)]
    seen = set()
    for ex in TASKS["arithmetic"].examples("train", 300, seed=0):
        for i, (pattern, op) in enumerate(patterns):
            m = re.search(pattern, ex["question"])
            if m:
                assert ex["target"] == str(op(int(m[1]), int(m[2])))
                seen.add(i)
                break
        else:
            pytest.fail(f"unrecognised question {ex['question']!r}")
    assert seen == set(range(5))


FUNCTION_WORDS = {"will", "with", "and", "at", "the", "on", "are", "going", "to"}


def _content(sentence):
    return Counter(w for w in re.findall(r"\w+", sentence) if w.lower() not in FUNCTION_WORDS)


def test_paraphrase_yes_means_same_details_and_no_means_one_changed():
    for ex in TASKS["paraphrase"].examples("train", 200, seed=0):
        same = _content(ex["sentence1"]) == _content(ex["sentence2"])
        assert same == (ex["target"] == "yes")
        assert ex["sentence1"] != ex["sentence2"]


def test_dialogue_summaries_mention_both_speakers_in_one_sentence():
    for ex in TASKS["dialogue_summary"].examples("train", 100, seed=0):
        speakers = {line.split(":")[0] for line in ex["dialogue"].splitlines()}
        assert len(speakers) == 2 and all(s in ex["target"] for s in speakers)
        assert ex["target"].endswith(".") and ex["target"].count(".") == 1


def test_antonym_changes_exactly_one_word_to_its_opposite():
    for ex in TASKS["antonym"].examples("train", 100, seed=0):
        before, after = ex["sentence"].split(), ex["target"].split()
        changed = [(a, b) for a, b in zip(before, after) if a != b]
        assert len(before) == len(after) and len(changed) == 1
        assert L.ANTONYMS[changed[0][0]] == changed[0][1]


def test_reverse_words_reverses():
    for ex in TASKS["reverse_words"].examples("train", 20, seed=0):
        assert ex["target"].split() == ex["sentence"].split()[::-1]


def test_split_assignment_is_roughly_80_10_10():
    counts = Counter(split_of(f"example {i}") for i in range(5000))
    assert 0.77 < counts["train"] / 5000 < 0.83
    assert 0.08 < counts["test"] / 5000 < 0.12


def test_pretraining_corpus_is_deterministic_and_covers_the_task_vocabulary():
    corpus = pretraining_corpus(1500, seed=0)
    assert len(corpus) == 1500 and corpus == pretraining_corpus(1500, seed=0)
    assert corpus != pretraining_corpus(1500, seed=1)
    words = set(re.findall(r"[A-Za-z]+", " ".join(corpus)))
    for vocabulary in (L.NAMES, L.PLACES, [z for _, z in L.NOUNS.values()], list(L.ADJECTIVES)):
        assert set(vocabulary) <= words

