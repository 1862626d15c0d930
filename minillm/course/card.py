"""The course base's model card: every task scored against its constant answer, with standard errors.

A task is *known* when the base beats its constant answer by more than two standard errors of the
paired difference: the rule of ``evaluation.constant_answer``, which the quickstart judges by too.
Every number in the card, and every sentence that judges one, is computed here or there;
``render_card`` only formats them.
"""
from __future__ import annotations

import random

from ..data import get_task
from ..data.templates import format_example
from ..evaluation.constant_answer import compare_with_constant, constant_answer  # noqa: F401 (re-exported)

HEADLINE = {"rouge": "rougeL", "bleu": "bleu", "accuracy": "accuracy"}


def test_examples(task_name: str, n: int, seed: int) -> list[tuple[str, str]]:
    """``n`` (prompt, answer) pairs of a task's test split, each with a seeded random template."""
    task = get_task(task_name)
    rng = random.Random(f"course-card|{task_name}|{seed}")
    return [format_example(task, ex, rng=rng) for ex in task.examples("test", n, seed)]


def verdict(rows: list[dict]) -> str:
    """One sentence, computed from the held-in rows: do they all beat their constant answers?"""
    held_in = [r for r in rows if r["role"] == "held in"]
    missed = [r for r in held_in if not r["beats"]]
    if not missed:
        return (f"Every one of the {len(held_in)} held-in tasks beats its constant answer by more than "
                f"two standard errors.")
    names = ", ".join(f"{r['task']} (margin {r['margin']:.3g} ± {r['margin_stderr']:.2g})" for r in missed)
    return (f"{len(held_in) - len(missed)} of {len(held_in)} held-in tasks beat their constant answer by "
            f"more than two standard errors; not: {names}.")


def _fmt(metric: str, value: float) -> str:
    return f"{value:.1f}" if metric == "bleu" else f"{value:.3f}"


def card_table(rows: list[dict]) -> str:
    """The Markdown table of the card: one row per task."""
    lines = ["| task | role | metric | n | base ± se | constant answer ± se | margin ± se | > 2 se |",
             "|---|---|---|---:|---:|---:|---:|:---:|"]
    for r in rows:
        m = r["metric"]
        lines.append(f"| {r['task']} | {r['role']} | {HEADLINE[m]} | {r['n']} | "
                     f"{_fmt(m, r['value'])} ± {_fmt(m, r['stderr'])} | "
                     f"{_fmt(m, r['constant'])} ± {_fmt(m, r['constant_stderr'])} | "
                     f"{_fmt(m, r['margin'])} ± {_fmt(m, r['margin_stderr'])} | {'yes' if r['beats'] else 'no'} |")
    return "\n".join(lines)


def score_tasks(model, tokenizer, recipe, records: list, advance=lambda n: None) -> list[dict]:
    """The card's rows: each held-in task, then the held-out task and the new task, on
    ``recipe.card_examples`` test examples, against its constant answer.

    A held-in task's constant answer is its commonest answer in the instruction mixture
    (``records``); the other two tasks' is the commonest among as many training examples.
    ``advance(n)`` is called after every ``n`` generated answers (the progress bar).
    """
    from ..evaluation.harness import generate_texts  # noqa: PLC0415
    from .recipe import HELD_OUT, NEW_TASK  # noqa: PLC0415

    roles = [(name, "held in") for name in recipe.held_in] + [(HELD_OUT, "held out"), (NEW_TASK, "new task")]
    rows = []
    for name, role in roles:
        pairs = test_examples(name, recipe.card_examples, recipe.seed)
        predictions = []
        for start in range(0, len(pairs), 64):
            chunk = [prompt for prompt, _ in pairs[start:start + 64]]
            predictions += generate_texts(model, tokenizer, chunk, recipe.max_source_length,
                                          recipe.max_target_length, 64)
            advance(len(chunk))
        if role == "held in":
            answers = [r.completion for r in records if r.task == name]
        else:
            answers = [ex["target"] for ex in get_task(name).examples("train", recipe.examples_per_task, recipe.seed)]
        metric = get_task(name).metric
        row = compare_with_constant(metric, predictions, constant_answer(answers), [a for _, a in pairs],
                                    seed=recipe.seed)
        rows.append({"task": name, "role": role, "metric": metric, "n": len(pairs),
                     "constant_text": constant_answer(answers), **row,
                     "examples": [{"prompt": p, "reference": a, "prediction": y}
                                  for (p, a), y in list(zip(pairs, predictions))[:2]]})
    return rows


def _recipe_lines(recipe) -> list[str]:
    fields = recipe.hashed_fields()
    return [f"| `{name}` | {', '.join(value) if isinstance(value, tuple) else value} |" for name, value in fields.items()]


def _summary(card: dict, recipe) -> str:
    """The card's first paragraph: size, steps, and this build's wall time."""
    return (f"A T5 of {card['parameters']:,} parameters ({recipe.num_layers}+{recipe.num_layers} layers, d_model "
            f"{recipe.d_model}, d_ff {recipe.d_ff}, {recipe.num_heads} heads, vocabulary {card['vocab_size']}), "
            f"pretrained with span corruption for {recipe.pretrain_steps} steps and instruction-tuned FLAN-style "
            f"for {recipe.tune_steps} steps of {recipe.batch_size} examples. Built by `minillm base build` "
            f"(`minillm.course.ensure_base()`) from nothing downloaded; this build took {card['build_seconds']:.0f} s "
            f"({card['build_seconds'] / 60:.1f} min) wall on {recipe.threads} thread(s) of {card['machine']} "
            f"(pretraining {card['phases']['pretrain']:.0f} s, instruction tuning {card['phases']['tune']:.0f} s, "
            f"in the run that finished each).")


def render_card(card: dict, recipe) -> str:
    """README.md of the base folder (and docs/base_model.md): every figure comes from ``card``."""
    from .recipe import FEW_SHOT_TASKS, HELD_OUT, NEW_TASK, REPLACED  # noqa: PLC0415

    replaced = [f"  - **{old} → {new}**: {why}" for old, (new, why) in REPLACED.items()]
    parts = [
        f"# The minillm course base ({'smoke stand-in' if card['smoke'] else 'full recipe'}, key {card['key']})",
        "",
        _summary(card, recipe),
        "",
        "",
        "## Intended use",
        "",
        "The starting point of the course's lessons (tutorials 04-09, `benchmarks/peft_compare.py`, "
        "`benchmarks/forgetting.py`): prompting, instruction tuning, LoRA and the other PEFT methods, "
        f"forgetting. `{HELD_OUT}` is held out for the fine-tuning lessons; `{NEW_TASK}` is in no mixture, "
        "for the forgetting lesson. It loads with `T5ForConditionalGeneration.from_pretrained(folder)` and with "
        "`transformers.T5ForConditionalGeneration.from_pretrained(folder)` with "
        "`transformers.PreTrainedTokenizerFast(tokenizer_file=folder/'tokenizer.json')`.",
        "",
        "## Limitations",
        "",
        "It knows only the built-in synthetic tasks, in their templates and vocabulary "
        "(`minillm/data/tasks_lexicon.py`); it is no language model of English. Greedy answers only were "
        "scored. Scores are on generated test examples whose inputs never occur in training.",
        "",
        "## Data",
        "",
        f"- pretraining: {recipe.corpus_documents} documents of `data.corpus.course_corpus` (dialogues, news "
        f"reports, English and Zorbish sentences, reviews, plans, number facts, 'the opposite of' facts; "
        f"train-split inputs only, no summary and no aligned translation), chunks of {recipe.chunk_length} tokens.",
        f"- instruction tuning: {', '.join(recipe.held_in)} (weights `{recipe.task_weights}` times "
        f"{recipe.examples_per_task} examples), random FLAN templates, plus {recipe.few_shot_examples} two-shot "
        f"prompts of each of {', '.join(t for t in FEW_SHOT_TASKS if t in recipe.held_in)}.",
        "- built-in tasks replaced, because a base of this size does not learn them in this time:",
        *replaced,
        "",
        "## Every task against its constant answer",
        "",
        f"Test split, {recipe.card_examples} examples per task, greedy decoding. The constant answer is the "
        "task's commonest training answer; 'margin' is base minus constant on the same examples, with the "
        "standard error of that paired difference (BLEU: over 200 bootstrap resamples).",
        "",
        card_table(card["tasks"]),
        "",
        card["verdict"],
        "",
        "## Recipe",
        "",
        "| field | value |",
        "|---|---|",
        *_recipe_lines(recipe),
    ]
    return "\n".join(parts) + "\n"
