"""Easier levels of the built-in tasks, for a model that trains for a few minutes (the quickstart).

A task is ill-posed *for a model size* when that model cannot learn it in the time it has. The
quickstart's T5 has about a million parameters and five minutes on two cores: it learns the
words of a review long before it learns that "not" flips them and that the clause after "but"
decides, and it cannot learn the 441 sums of two numbers up to 20 from a few examples of each.
A level keeps the task (its name, instruction templates, answer options and metric) and narrows
what the generator draws, so the table can say exactly which task was learned:

    sentiment  "plain"        no "the X was not <adjective>", no "..., but ...": the words decide
    paraphrase "all_changed"  a "no" pair describes another plan (a name, the place, the day and
                              the activity all differ), where the full task changes one detail
    arithmetic "word_small"   only the word problems ("Anna has 7 eggs and buys 2 more. How many
                              eggs does Anna have now?", or gives 2 away), numbers up to 10

Why paraphrase at "all_changed": the full task is built like PAWS (Zhang et al. 2019, "PAWS:
Paraphrase Adversaries from Word Scrambling"): the two sentences share nearly every word, so
only matching each detail of one against the other decides. Trained on paraphrase alone for 600
steps (96 test examples), the quickstart's model scored 0.500 with one detail changed, 0.531
with two and 0.958 with all four; before the tokenizer cut punctuation from words, all four
scored 0.604 (a word then had other ids before a full stop than before a space).

Why word problems only: the direct questions ("What is 3 plus 4?") number only 121 + 66 + 25 at
this size, so a pool of distinct training examples runs out of them (2% of 8,000) while the
first 32 test draws are 44% direct; the model hardly learned those (1 to 5 of 22 in the
mixtures tried).

The full tasks stay the default everywhere else (tutorials, benchmarks, the mixture); asking for
a level is explicit (``task_variant``) and the quickstart prints the level beside the metric.
"""
from __future__ import annotations

import functools

from .tasks import Task, get_task, make_arithmetic, make_paraphrase, make_review

# (task, level) -> (generator keyword arguments, what the level leaves out)
LEVELS: dict[tuple[str, str], tuple[dict, str]] = {
    ("sentiment", "plain"): (dict(negation=False, contrast=False),
                              "no 'was not <adjective>' clauses, no '..., but ...' contrast"),
    ("paraphrase", "all_changed"): (dict(changes=4),
                                    "a 'no' pair differs in every detail (a name, place, day, activity)"),
    ("arithmetic", "word_small"): (dict(largest=10, kinds=(3, 4)),
                                   "word problems only ('has 7 and buys 2 more', 'gives 2 away'), numbers up to 10"),
}
_GENERATORS = {"sentiment": make_review, "paraphrase": make_paraphrase, "arithmetic": make_arithmetic}


def task_variant(name: str, level: str | None = None) -> Task:
    """Task ``name`` at ``level`` (None or "full": the task itself).

    The variant has the same name, fields, options and metric as the task, so it uses the same
    instruction templates and scoring; only its generator draws from a narrower set. Its
    ``level`` attribute and description say which.
    """
    task = get_task(name)
    if level in (None, "full"):
        return task
    if (name, level) not in LEVELS:
        known = ", ".join(f"{t}={lv}" for t, lv in LEVELS) or "none"
        raise KeyError(f"task {name!r} has no level {level!r}; known levels: {known}")
    kwargs, note = LEVELS[(name, level)]
    variant = Task(name, task.metric, task.fields, functools.partial(_GENERATORS[name], **kwargs),
                   options=task.options, description=f"{task.description} (level {level}: {note})")
    variant.level = level
    return variant


def parse_levels(text: str) -> dict[str, str]:
    """ "task=level,task=level" -> {task: level}; a ValueError names an unknown task or level."""
    levels = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, level = (s.strip() for s in item.partition("="))
        if not sep:
            raise ValueError(f"task levels: expected 'task=level', got {item!r}")
        try:
            task_variant(name, level)
        except KeyError as err:
            raise ValueError(f"task levels: {err.args[0]}") from None
        levels[name] = level
    return levels
