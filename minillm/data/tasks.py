"""Built-in synthetic tasks: generated, deterministic by seed, learnable by a toy T5.

Real instruction tuning (FLAN) mixes hundreds of downloaded datasets. Here every task is a
small generator over the shared vocabulary in `tasks_lexicon.py`, so the course runs offline
and a 2-4 layer T5 can learn each task in minutes on a laptop CPU. No task is a copy of its
input: the model has to reorder, combine, compute or judge.

    dialogue_summary  multi-turn dialogue -> one-sentence summary          (ROUGE)
    translation       English -> Zorbish (SOV, adjective after noun)       (BLEU)
    sentiment         product review -> "positive" / "negative"           (accuracy)
    paraphrase        two sentences -> "yes" / "no" (same meaning?)        (accuracy)
    arithmetic        question about small numbers -> digits             (accuracy)
    antonym           sentence -> same sentence with the opposite adjective (held out)
    reverse_words     sentence -> its words in reverse order               (held out)

and three tasks of the course base (``minillm.course``), which replace two that a model of a few
million parameters does not learn in minutes (the model card, ``docs/base_model.md``, says why):

    news_summary      short news report -> one-sentence summary           (ROUGE)
    same_plan         two plans -> "yes" / "no" (a "no" differs in every detail) (accuracy)
    word_problem      word problem with numbers up to 10 -> digits         (accuracy)

Splits. An example belongs to train, validation or test according to a hash of its *inputs*,
not of the seed, so the three splits are disjoint for every seed: the same question can never
appear in both train and test.

An example is a plain dict: the task's input fields plus "target", e.g.
`{"question": "What is 3 plus 4?", "target": "7"}`.
"""
from __future__ import annotations

import functools
import hashlib
import random
from typing import Callable

from . import tasks_lexicon as L

SPLITS = ("train", "validation", "test")


# ----------------------------------------------------------------------------- helpers
def _pair(rng: random.Random, items) -> tuple:
    """Two different items, in random order."""
    a, b = rng.sample(list(items), 2)
    return a, b


def _weekday_pair(rng):
    return _pair(rng, L.DAYS)


# ----------------------------------------------------------------------------- dialogue
def _dialogue_plan(rng, a, b):
    time, place, act = rng.choice(L.TIMES), rng.choice(L.PLACES), rng.choice(L.ACTIVITIES)
    turns = [(a, rng.choice([f"Hi {b}! Are you free {time}?", f"{b}, do you have time {time}?"])),
             (b, rng.choice(["I think so. What do you have in mind?", "Yes, why?"])),
             (a, rng.choice([f"Would you like to {act}?", f"Let's {act} together."])),
             (b, rng.choice(["Sounds good. Where?", "Good idea. Where should we meet?"])),
             (a, rng.choice([f"How about the {place}?", f"Let's meet at the {place}."])),
             (b, rng.choice(["Perfect, see you there.", "Great, see you then."]))]
    return turns, f"{a} and {b} will {act} at the {place} {time}."


def _dialogue_decline(rng, a, b):
    time, act, chore = rng.choice(L.TIMES), rng.choice(L.ACTIVITIES), rng.choice(L.CHORES)
    turns = [(a, rng.choice([f"{b}, do you want to {act} {time}?", f"Can you {act} with me {time}?"])),
             (b, f"Sorry, I can't. I have to {chore}."),
             (a, rng.choice(["That's okay. Maybe another time.", "No problem."]))]
    # The summary is in the third person, so "my grandmother" becomes "their grandmother".
    chore = chore.replace("my ", "their ")
    return turns, f"{b} can't {act} with {a} {time} because {b} has to {chore}."


def _dialogue_lost_item(rng, a, b):
    item, place = rng.choice(L.ITEMS), rng.choice(L.PLACES)
    when = rng.choice(["this morning", "yesterday", "an hour ago"])
    turns = [(a, rng.choice([f"{b}, have you seen my {item}?", f"I can't find my {item}. Any idea, {b}?"])),
             (b, f"I saw it at the {place} {when}."),
             (a, rng.choice(["Oh, thanks! I will get it.", "Great, thank you!"]))]
    return turns, f"{a} lost the {item} and {b} saw it at the {place}."


def _dialogue_reschedule(rng, a, b):
    event, (d1, d2) = rng.choice(L.EVENTS), _weekday_pair(rng)
    turns = [(a, f"Hi {b}, about our {event} on {d1}."),
             (b, "Yes? Is something wrong?"),
             (a, rng.choice([f"Can we move it to {d2}? I am busy.", f"I am busy. Is {d2} okay?"])),
             (b, rng.choice([f"Sure, {d2} works for me.", "Of course, no problem."]))]
    return turns, f"{a} and {b} move their {event} from {d1} to {d2}."


def _dialogue_errand(rng, a, b):
    place, food, n = rng.choice(L.PLACES), rng.choice(L.FOODS), rng.randint(2, 9)
    time = rng.choice(L.TIMES)
    turns = [(a, f"{b}, are you going to the {place}?"),
             (b, f"Yes, I am leaving {time}."),
             (a, f"Could you buy {L.NUMBER_WORDS[n]} {food} for me?"),
             (b, rng.choice(["Of course.", "Sure, no problem."]))]
    return turns, f"{b} will buy {L.NUMBER_WORDS[n]} {food} for {a} at the {place}."


_SCENARIOS = (_dialogue_plan, _dialogue_decline, _dialogue_lost_item, _dialogue_reschedule,
              _dialogue_errand)


def make_dialogue(rng: random.Random) -> dict:
    """A 3-8 turn dialogue between two people and its one-sentence summary."""
    a, b = _pair(rng, L.NAMES)
    turns, summary = rng.choice(_SCENARIOS)(rng, a, b)
    if rng.random() < 0.4:  # small talk the summary must ignore
        turns = [(a, f"Hello {b}, how are you?"), (b, f"Fine, thanks, {a}.")] + turns
    return {"dialogue": "\n".join(f"{who}: {text}" for who, text in turns), "target": summary}


# ----------------------------------------------------------------------------- news reports
def _news_game(rng):
    home, away = _pair(rng, L.TEAMS)
    day, n = rng.choice(L.DAYS), L.NUMBER_WORDS[rng.randint(2, 9)]
    winner, loser = (home, away) if rng.random() < 0.5 else (away, home)
    sentences = [f"The {home} played the {away} on {day}.", f"The {winner} won by {n} points.",
                 f"{rng.choice(L.NAMES)} scored the last goal."]
    return sentences, f"The {winner} beat the {loser} by {n} points on {day}."


def _news_opening(rng):
    name, shop, place, day = rng.choice(L.NAMES), rng.choice(L.SHOPS), rng.choice(L.PLACES), rng.choice(L.DAYS)
    sentences = [f"{name} opened a new {shop} next to the {place}.", f"It is open every day except {day}.",
                 rng.choice(["The first customers got a free gift.", "There was music at the door."])]
    return sentences, f"{name} opened a {shop} next to the {place}, closed on {day}."


def _news_moved(rng):
    club, event, (d1, d2) = rng.choice(L.CLUBS), rng.choice(L.EVENTS), _weekday_pair(rng)
    reason = rng.choice(["the rain", "a holiday", "a storm", "a broken door"])
    sentences = [f"The {club} planned its {event} for {d1}.",
                 f"Because of {reason}, it will take place on {d2} instead."]
    return sentences, f"The {club} moved its {event} from {d1} to {d2} because of {reason}."


def _news_found(rng):
    item = rng.choice([i for i in L.ITEMS if i != "glasses"])  # "a glasses" is no English
    place, name, day = rng.choice(L.PLACES), rng.choice(L.NAMES), rng.choice(L.DAYS)
    when = rng.choice(["this morning", "yesterday", "last night"])
    a = "An" if item[0] in "aeiou" else "A"
    sentences = [f"{a} {item} was found at the {place} {when}.", f"{name} keeps it at the front desk until {day}."]
    return sentences, f"{a} {item} found at the {place} can be picked up from {name} until {day}."


_NEWS = (_news_game, _news_opening, _news_moved, _news_found)


def make_news(rng: random.Random) -> dict:
    """A short news report (2-5 sentences) and its one-sentence summary.

    Each report states two or three facts in separate sentences, in the order a reporter would,
    and may carry one or two sentences that the summary leaves out; the summary puts the facts
    into one sentence. (A second family of summarization, beside ``dialogue_summary``, as FLAN
    mixes news summarization with dialogue summarization.)
    """
    sentences, summary = rng.choice(_NEWS)(rng)
    for _ in range(rng.choice((0, 1, 1, 2))):  # fillers, never before the first sentence
        sentences.insert(rng.randint(1, len(sentences)), rng.choice(L.NEWS_FILLERS))
    return {"report": " ".join(sentences), "target": summary}


# ----------------------------------------------------------------------------- translation
def _english_np(noun, adj, plural):
    word = L.NOUNS[noun][0] if plural else noun
    return f"the {adj} {word}" if adj else f"the {word}"


# Reverse lookups for the translator: English surface form -> (lemma, plural?) / (stem, past?).
_NOUN_FORMS = {**{n: (n, False) for n in L.NOUNS}, **{p: (n, True) for n, (p, _) in L.NOUNS.items()}}
_VERB_FORMS = {form: (stem, form == past)
               for verb, (third, past, stem) in L.VERBS.items() for form in (verb, third, past)}


def to_zorbish(english: str) -> str:
    """Translate "the [adj] noun verb the [adj] noun [in the place]" into Zorbish.

    Zorbish grammar, three rules:
      1. word order Subject-Location-Object-Verb, with no articles;
      2. adjectives follow their noun; the plural suffix is -li;
      3. the object takes the marker "ka", the place the postposition "ne", and the past tense
         the suffix -ta on the verb.
    "the big dog saw the cats in the park" -> "vasku bora parel ne miroli ka vimta".
    """
    words = english.lower().split()

    def noun_phrase(i):  # words[i] == "the"; returns (Zorbish words, next index)
        adj = words[i + 1] if words[i + 1] in L.ADJECTIVES else None
        noun, plural = _NOUN_FORMS[words[i + 2 if adj else i + 1]]
        zorbish = [L.NOUNS[noun][1] + (L.ZORBISH_PLURAL if plural else "")]
        return zorbish + ([L.ADJECTIVES[adj]] if adj else []), i + (3 if adj else 2)

    subject, i = noun_phrase(0)
    stem, past = _VERB_FORMS[words[i]]
    obj, i = noun_phrase(i + 1)
    location = [L.LOCATIONS[words[i + 2]], L.ZORBISH_LOCATIVE] if i < len(words) else []
    verb = stem + (L.ZORBISH_PAST if past else "")
    return " ".join(subject + location + obj + [L.ZORBISH_OBJECT_MARKER, verb])


def make_translation(rng: random.Random) -> dict:
    """A random English sentence and its Zorbish translation (see `to_zorbish`)."""
    subj, obj = _pair(rng, list(L.NOUNS))
    adjs = list(L.ADJECTIVES)
    s_adj = rng.choice(adjs) if rng.random() < 0.5 else None
    o_adj = rng.choice(adjs) if rng.random() < 0.5 else None
    s_pl, o_pl, past = rng.random() < 0.4, rng.random() < 0.4, rng.random() < 0.5
    verb = rng.choice(list(L.VERBS))
    third, past_form = L.VERBS[verb][:2]
    en_verb = past_form if past else (verb if s_pl else third)  # subject-verb agreement
    english = f"{_english_np(subj, s_adj, s_pl)} {en_verb} {_english_np(obj, o_adj, o_pl)}"
    if rng.random() < 0.4:
        english += f" in the {rng.choice(list(L.LOCATIONS))}"
    return {"english": english, "target": to_zorbish(english)}


# ----------------------------------------------------------------------------- sentiment
def _clause(rng, positive: bool, subject: str, negation: bool = True) -> str:
    """One clause about `subject` with the given polarity; negation flips an adjective's."""
    good, bad = L.POSITIVE_ADJECTIVES, L.NEGATIVE_ADJECTIVES
    kind = rng.randrange(3) if negation else rng.choice((0, 2))
    if kind == 0:
        return f"the {subject} was {rng.choice(good if positive else bad)}"
    if kind == 1:  # "not terrible" is (mildly) positive, "not great" negative
        return f"the {subject} was not {rng.choice(bad if positive else good)}"
    return f"I {rng.choice(L.POSITIVE_VERBS if positive else L.NEGATIVE_VERBS)} the {subject}"


def make_review(rng: random.Random, negation: bool = True, contrast: bool = True) -> dict:
    """A one- or two-sentence review labelled "positive" or "negative".

    ``negation=False`` leaves out "was not <adjective>" clauses, ``contrast=False`` the
    "..., but ..." reviews whose first clause has the opposite polarity (the easier levels in
    ``task_levels.py``)."""
    positive = rng.random() < 0.5
    first, second = _pair(rng, L.REVIEW_SUBJECTS)
    shape = rng.randrange(4) if contrast else rng.choice((0, 2, 3))

    def clause(polarity, subject):
        return _clause(rng, polarity, subject, negation)

    if shape == 0:
        text = clause(positive, first)
    elif shape == 1:  # the clause after "but" decides
        text = f"{clause(not positive, first)}, but {clause(positive, second)}"
    elif shape == 2:
        text = f"{clause(positive, first)} and {clause(positive, second)}"
    else:
        closing = L.POSITIVE_CLOSINGS if positive else L.NEGATIVE_CLOSINGS
        text = f"{clause(positive, first)}. {rng.choice(closing)}"
    text = text[0].upper() + text[1:]
    return {"review": text if text.endswith(".") else text + ".",
            "target": "positive" if positive else "negative"}


# ----------------------------------------------------------------------------- paraphrase
_PARAPHRASE_FORMS = (
    "{a} will {act} with {b} at the {place} on {day}.",
    "On {day}, {a} and {b} will {act} at the {place}.",
    "{a} and {b} are going to {act} at the {place} on {day}.",
    "At the {place}, {b} and {a} will {act} on {day}.",
)


def make_paraphrase(rng: random.Random, changes: int = 1) -> dict:
    """Two sentences; "yes" if they describe the same plan, "no" if ``changes`` details differ.

    ``changes`` (1 to 4) of the slots a, place, day and activity get another value in a "no" pair."""
    a, b = _pair(rng, L.NAMES)
    fact = dict(a=a, b=b, place=rng.choice(L.PLACES), day=rng.choice(L.DAYS),
                act=rng.choice(L.ACTIVITIES))
    form1, form2 = _pair(rng, _PARAPHRASE_FORMS)
    same = rng.random() < 0.5
    other = dict(fact)
    if not same:
        slots = ["a", "place", "day", "act"]  # one change draws as it always has: same examples
        for slot in [rng.choice(slots)] if changes == 1 else rng.sample(slots, changes):
            pool = {"a": [n for n in L.NAMES if n not in (a, b)], "place": L.PLACES,
                    "day": L.DAYS, "act": L.ACTIVITIES}[slot]
            other[slot] = rng.choice([v for v in pool if v != fact[slot]])
    return {"sentence1": form1.format(**fact), "sentence2": form2.format(**other),
            "target": "yes" if same else "no"}


# ----------------------------------------------------------------------------- arithmetic
def make_arithmetic(rng: random.Random, largest: int = 20, largest_factor: int = 9,
                    kinds: tuple | None = None) -> dict:
    """A question about numbers up to `largest` (products up to `largest_factor`²); the answer is digits.

    ``kinds``: which of the five question kinds to draw (0 plus, 1 minus, 2 times, 3 a word problem
    that adds, 4 one that subtracts); None draws all five."""
    kind = rng.randrange(5) if kinds is None else rng.choice(kinds)
    a, b = rng.randint(0, largest), rng.randint(0, largest)
    if kind == 0:
        return {"question": f"What is {a} plus {b}?", "target": str(a + b)}
    if kind == 1:
        a, b = max(a, b), min(a, b)  # keep answers non-negative
        return {"question": f"What is {a} minus {b}?", "target": str(a - b)}
    if kind == 2:
        a, b = rng.randint(1, largest_factor), rng.randint(1, largest_factor)
        return {"question": f"What is {a} times {b}?", "target": str(a * b)}
    name, other = _pair(rng, L.NAMES)
    food = rng.choice(L.FOODS)
    if kind == 3:
        q = f"{name} has {a} {food} and buys {b} more. How many {food} does {name} have now?"
        return {"question": q, "target": str(a + b)}
    a, b = max(a, b), min(a, b)
    q = f"{name} has {a} {food} and gives {b} to {other}. How many {food} does {name} have left?"
    return {"question": q, "target": str(a - b)}


# ----------------------------------------------------------------------------- held-out tasks
def _simple_sentence(rng, adjectives) -> tuple[list[str], int]:
    """Words of a short sentence and the index of its one adjective."""
    noun, other = _pair(rng, L.NOUNS)
    adj = rng.choice(adjectives)
    if rng.random() < 0.5:
        return ["the", noun, "is", adj], 3
    verb = L.VERBS[rng.choice(list(L.VERBS))][rng.randrange(2)]
    return ["the", adj, noun, verb, "the", other], 1


def make_antonym(rng: random.Random) -> dict:
    """A sentence and the same sentence with its adjective replaced by the opposite."""
    words, i = _simple_sentence(rng, sorted(L.ANTONYMS))
    opposite = words[:i] + [L.ANTONYMS[words[i]]] + words[i + 1:]
    return {"sentence": " ".join(words), "target": " ".join(opposite)}


def make_reverse(rng: random.Random) -> dict:
    """A sentence and its words in reverse order."""
    words = make_translation(rng)["english"].split()
    return {"sentence": " ".join(words), "target": " ".join(reversed(words))}


# ----------------------------------------------------------------------------- Task
def split_of(key: str) -> str:
    """Which split an input belongs to: 80% train, 10% validation, 10% test, by hash.

    md5 (not Python's hash(), which changes between runs) makes the assignment stable.
    """
    bucket = int(hashlib.md5(key.encode("utf-8")).hexdigest()[:8], 16) % 100
    return "train" if bucket < 80 else "validation" if bucket < 90 else "test"


class Task:
    """A generated task: its input fields, how to score it, and its examples.

    Attributes:
        name: registry name, e.g. "sentiment".
        metric: "rouge", "bleu" or "accuracy" (exact match of the whole answer).
        options: the answer choices of a classification task, else None.
        fields: names of the input fields of each example (besides "target").
    """

    def __init__(self, name: str, metric: str, fields: tuple[str, ...],
                 generate: Callable[[random.Random], dict], options: list[str] | None = None,
                 description: str = ""):
        self.name, self.metric, self.fields = name, metric, tuple(fields)
        self.generate, self.options, self.description = generate, options, description

    def key(self, example: dict) -> str:
        """The inputs of an example as one string (what decides its split)."""
        return "\n".join(example[f] for f in self.fields)

    def examples(self, split: str = "train", n: int = 100, seed: int = 0) -> list[dict]:
        """`n` distinct examples of `split`, the same ones for the same seed.

        Draws from the generator and keeps those whose inputs hash into `split`.
        """
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        rng = random.Random(f"{self.name}|{split}|{seed}")  # str seeds are stable across runs
        out, seen = [], set()
        for _ in range(50 * n + 1000):
            if len(out) == n:
                return out
            ex = self.generate(rng)
            key = self.key(ex)
            if key not in seen and split_of(key) == split:
                seen.add(key)
                out.append(ex)
        if len(out) < n:
            raise ValueError(f"task {self.name!r} has too few distinct {split} examples for n={n}")
        return out

    def __repr__(self) -> str:
        return f"Task({self.name!r}, metric={self.metric!r}, fields={self.fields})"


TASKS: dict[str, Task] = {t.name: t for t in [
    Task("dialogue_summary", "rouge", ("dialogue",), make_dialogue,
         description="Summarize a short dialogue in one sentence."),
    Task("translation", "bleu", ("english",), make_translation,
         description="Translate English into the invented language Zorbish."),
    Task("sentiment", "accuracy", ("review",), make_review, options=["positive", "negative"],
         description="Is a review positive or negative?"),
    Task("paraphrase", "accuracy", ("sentence1", "sentence2"), make_paraphrase,
         options=["yes", "no"], description="Do two sentences mean the same?"),
    Task("arithmetic", "accuracy", ("question",), make_arithmetic,
         description="Answer a question about small numbers with digits."),
    Task("news_summary", "rouge", ("report",), make_news,
         description="Summarize a short news report in one sentence."),
    Task("same_plan", "accuracy", ("sentence1", "sentence2"), functools.partial(make_paraphrase, changes=4),
         options=["yes", "no"], description="Do two sentences describe the same plan? (A different plan "
         "differs in every detail: a name, the place, the day and the activity.)"),
    Task("word_problem", "accuracy", ("question",), functools.partial(make_arithmetic, largest=10, kinds=(3, 4)),
         description="Solve a word problem that adds or takes away numbers up to 10."),
    Task("antonym", "accuracy", ("sentence",), make_antonym,
         description="Rewrite a sentence with the opposite adjective."),
    Task("reverse_words", "accuracy", ("sentence",), make_reverse,
         description="Write the words of a sentence in reverse order."),
]}
DEFAULT_MIXTURE = ["dialogue_summary", "translation", "sentiment", "paraphrase", "arithmetic"]
HELD_OUT_TASKS = ["antonym", "reverse_words"]  # for catastrophic-forgetting experiments


def get_task(name: str | Task) -> Task:
    """Look a task up by name (a Task passes through unchanged)."""
    if isinstance(name, Task):
        return name
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    return TASKS[name]

