"""Plain text for span-corruption pretraining and tokenizer training, from the task generators.

A T5 is pretrained on unlabelled text before it is instruction-tuned. Here that text is built
from the same generators and vocabulary as the tasks (``tasks.py``), so a model pretrained on it
has seen every word, but never a validation or test input, and never an aligned translation pair.
"""
from __future__ import annotations

import random

from . import tasks_lexicon as L
from .tasks import TASKS, make_dialogue, make_news, make_paraphrase, make_review, make_translation, split_of


def _corpus_sentences(rng: random.Random) -> list[str]:
    """A few sentences of plain text from one of the task generators.

    Text derived from a task example is kept only when that example's inputs fall in the train
    split, so pretraining never shows the model a validation or test input.
    """
    def train_only(task: str, ex: dict, sentences: list[str]) -> list[str]:
        return sentences if split_of(TASKS[task].key(ex)) == "train" else []

    kind = rng.randrange(6)
    if kind == 0:
        ex = make_dialogue(rng)
        return train_only("dialogue_summary", ex, [ex["dialogue"].replace("\n", " "), ex["target"]])
    if kind == 1:  # monolingual text in both languages, never an aligned pair
        en, zo = make_translation(rng), make_translation(rng)
        return (train_only("translation", en, [en["english"].capitalize() + "."])
                + train_only("translation", zo, [zo["target"].capitalize() + "."]))
    if kind == 2:
        ex = make_review(rng)
        return train_only("sentiment", ex, [ex["review"]])
    if kind == 3:
        ex = make_paraphrase(rng)
        return train_only("paraphrase", ex, [ex["sentence1"]])
    if kind == 4:
        a, b = rng.randint(0, 20), rng.randint(0, 20)
        return [f"{a} plus {b} is {a + b}.", f"{max(a, b)} minus {min(a, b)} is {abs(a - b)}."]
    word = rng.choice(sorted(L.ANTONYMS))
    return [f"The opposite of {word} is {L.ANTONYMS[word]}."]


def pretraining_corpus(n: int = 1000, seed: int = 0) -> list[str]:
    """`n` short documents of plain text for span-corruption pretraining and tokenizer training.

    Built from the same generators and vocabulary as the tasks (only train-split inputs), so a
    model pretrained on it has seen every word but no validation or test example. Translation
    pairs are never aligned in the corpus: English and Zorbish appear as separate sentences.
    """
    rng = random.Random(f"pretraining|{seed}")
    docs = []
    while len(docs) < n:
        sentences = []
        for _ in range(rng.randint(2, 4)):
            sentences += _corpus_sentences(rng)
        if sentences:
            docs.append(" ".join(sentences))
    return docs


def _course_sentences(rng: random.Random) -> list[str]:
    """A few sentences for the course base's pretraining: like ``_corpus_sentences``, plus news
    reports, and with no summary beside its dialogue or report (the base learns to summarize from
    instructions, and dialogue summarization is held out of those)."""
    def train_only(task: str, ex: dict, sentences: list[str]) -> list[str]:
        return sentences if split_of(TASKS[task].key(ex)) == "train" else []

    kind = rng.randrange(7)
    if kind == 0:
        ex = make_dialogue(rng)
        return train_only("dialogue_summary", ex, [ex["dialogue"].replace("\n", " ")])
    if kind == 1:
        ex = make_news(rng)
        return train_only("news_summary", ex, [ex["report"]])
    if kind == 2:  # monolingual text in both languages, never an aligned pair
        en, zo = make_translation(rng), make_translation(rng)
        return (train_only("translation", en, [en["english"].capitalize() + "."])
                + train_only("translation", zo, [zo["target"].capitalize() + "."]))
    if kind == 3:
        ex = make_review(rng)
        return train_only("sentiment", ex, [ex["review"]])
    if kind == 4:
        ex = make_paraphrase(rng)
        return train_only("paraphrase", ex, [ex["sentence1"]])
    if kind == 5:
        a, b = rng.randint(0, 20), rng.randint(0, 20)
        return [f"{a} plus {b} is {a + b}.", f"{max(a, b)} minus {min(a, b)} is {abs(a - b)}."]
    word = rng.choice(sorted(L.ANTONYMS))
    return [f"The opposite of {word} is {L.ANTONYMS[word]}."]


def course_corpus(n: int = 1000, seed: int = 0) -> list[str]:
    """`n` short documents for the course base (``minillm.course``): see ``_course_sentences``.

    A separate stream from ``pretraining_corpus``, so the quickstart's and the tutorials' data
    stay as they were measured."""
    rng = random.Random(f"course-pretraining|{seed}")
    docs = []
    while len(docs) < n:
        sentences = []
        for _ in range(rng.randint(2, 4)):
            sentences += _course_sentences(rng)
        if sentences:
            docs.append(" ".join(sentences))
    return docs
