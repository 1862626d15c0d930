"""FLAN-style instruction templates: turn a task example into a (prompt, completion) pair.

Instruction tuning teaches a model to follow *instructions*, not one fixed input format. FLAN
does this by phrasing each dataset in several ways ("Summarize this dialogue: ...",
"... What is a short summary of this conversation?") and picking one at random for each
example, so the model cannot latch onto the wording. Classification prompts list the allowed
answers the way FLAN does:

    Is this review positive or negative?

    The food was great.

    OPTIONS:
    - positive
    - negative

Few-shot prompts put a few solved examples (same template) before the question; a model that
has learned in-context learning can then answer without any weight update.
"""
from __future__ import annotations

import random

from .tasks import Task, get_task

# {field} is replaced by the example's field, {options_} by the OPTIONS block (classification).
TEMPLATES: dict[str, list[str]] = {
    "dialogue_summary": [
        "Summarize this dialogue:\n\n{dialogue}",
        "{dialogue}\n\nWhat is a short summary of this conversation?",
        "Dialogue:\n{dialogue}\n\nWhat were they talking about? Answer in one sentence.",
        "Write a one-sentence summary of the dialogue below.\n\n{dialogue}",
    ],
    "translation": [
        "Translate to Zorbish:\n\n{english}",
        "{english}\n\nTranslate this sentence into Zorbish.",
        "How do you say \"{english}\" in Zorbish?",
        "English: {english}\nZorbish:",
    ],
    "sentiment": [
        "{review}\n\nIs this review positive or negative?\n\n{options_}",
        "Review: {review}\nWhat is the sentiment of this review?\n\n{options_}",
        "How does the writer feel?\n\n{review}\n\n{options_}",
    ],
    "paraphrase": [
        "Sentence 1: {sentence1}\nSentence 2: {sentence2}\n\n"
        "Do these two sentences mean the same thing?\n\n{options_}",
        "\"{sentence1}\" and \"{sentence2}\"\n\nAre these two sentences paraphrases?\n\n{options_}",
        "Does \"{sentence2}\" say the same as \"{sentence1}\"?\n\n{options_}",
    ],
    "arithmetic": [
        "Answer the question with a number.\n\n{question}",
        "{question}",
        "Question: {question}\nAnswer:",
        "Solve this: {question}",
    ],
    "news_summary": [
        "Summarize this news report:\n\n{report}",
        "{report}\n\nWhat is this report about? Answer in one sentence.",
        "Report: {report}\n\nSum it up in one sentence.",
        "Write a one-sentence summary of the article below.\n\n{report}",
    ],
    "same_plan": [
        "Sentence 1: {sentence1}\nSentence 2: {sentence2}\n\n"
        "Do these two sentences describe the same plan?\n\n{options_}",
        "\"{sentence1}\" and \"{sentence2}\"\n\nIs this the same plan?\n\n{options_}",
        "Does \"{sentence2}\" describe the same plan as \"{sentence1}\"?\n\n{options_}",
    ],
    "word_problem": [
        "Answer the question with a number.\n\n{question}",
        "{question}",
        "Question: {question}\nAnswer:",
        "Solve this word problem: {question}",
    ],
    "antonym": [
        "Rewrite the sentence with the opposite adjective:\n\n{sentence}",
        "{sentence}\n\nSay the opposite.",
        "Change the adjective in \"{sentence}\" to its antonym.",
    ],
    "reverse_words": [
        "Reverse the order of the words:\n\n{sentence}",
        "{sentence}\n\nWrite these words backwards.",
        "Write the words of \"{sentence}\" from last to first.",
    ],
}


def options_block(options: list[str]) -> str:
    """FLAN's answer list: "OPTIONS:\\n- positive\\n- negative"."""
    return "OPTIONS:\n" + "\n".join(f"- {o}" for o in options)


def num_templates(task: str | Task) -> int:
    """How many instruction templates a task has."""
    return len(TEMPLATES[get_task(task).name])


def format_example(
    task: str | Task,
    example: dict,
    template_id: int | None = None,
    rng: random.Random | None = None,
) -> tuple[str, str]:
    """Render one example as (prompt, completion).

    Args:
        task: a task name or Task.
        example: the task's input fields plus "target".
        template_id: which template to use; None picks one at random with `rng`
            (template 0 if there is no rng, so evaluation prompts are fixed by default).
    """
    task = get_task(task)
    templates = TEMPLATES[task.name]
    if template_id is None:
        template_id = rng.randrange(len(templates)) if rng is not None else 0
    values = {f: example[f] for f in task.fields}
    values["options_"] = options_block(task.options) if task.options else ""
    prompt = templates[template_id].format(**values)
    return prompt, example["target"]


def few_shot_prompt(
    task: str | Task,
    shots: list[dict],
    query: dict,
    template_id: int | None = None,
    rng: random.Random | None = None,
    separator: str = "\n\n",
) -> tuple[str, str]:
    """A k-shot prompt: the solved `shots`, then `query` unsolved; returns (prompt, completion).

    Every shot uses the same template as the query, as in FLAN's few-shot templates, and
    each is written "prompt\\nanswer" so the model sees where an answer goes.
    """
    task = get_task(task)
    if template_id is None:
        template_id = rng.randrange(num_templates(task)) if rng is not None else 0
    solved = ["\n".join(format_example(task, s, template_id)) for s in shots]
    prompt, completion = format_example(task, query, template_id)
    return separator.join(solved + [prompt]), completion
