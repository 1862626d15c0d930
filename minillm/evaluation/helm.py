"""HELM-style reports: more than accuracy, per scenario.

HELM (Liang et al., 2022) argues that one accuracy number hides what matters in practice, and
measures every scenario along several axes. We report four of them:

    accuracy     the task's main metric on the clean inputs (0-100)
    calibration  expected calibration error (ECE, 0-1, lower is better) of the label
                 probabilities p(option k) = softmax_k(log-likelihood of option k), i.e. does a
                 model that says "90% sure" get 90% right? (multiple-choice scenarios only)
    robustness   worst case over perturbed inputs: an example counts as solved only if it is
                 solved in its clean form *and* under every perturbation (typos, casing,
                 whitespace); the mean of that per-example minimum (0-100)
    efficiency   tokens processed per second (prompts + answers, all runs) and parameter
                 counts (trainable and total: a LoRA model trains a small fraction)

Perturbations change only the example's input fields, never the instruction or the answer,
and are seeded per (perturbation, seed, example, field), so a report is reproducible.
"""
from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass

import numpy as np

from ..metrics import expected_calibration_error
from .harness import MULTIPLE_CHOICE, PER_EXAMPLE, builtin_task, run_task

PERTURBATIONS = ("typos", "casing", "whitespace")
HELM_SCENARIOS = ("sentiment", "paraphrase", "arithmetic")


# ----------------------------------------------------------------------------- perturbations
def _typo(word: str, rng: random.Random) -> str:
    """Swap two adjacent letters, the most common typing error."""
    i = rng.randrange(len(word) - 1)
    return word[:i] + word[i + 1] + word[i] + word[i + 2:]


def perturb_text(text: str, kind: str, rng: random.Random, rate: float = 0.15) -> str:
    """Perturb about `rate` of the words (at least one, where possible) of `text`.

    typos: swap two adjacent characters of a word with 3+ letters ("great" -> "graet");
    casing: flip a word's case ("The" -> "the", "food" -> "FOOD");
    whitespace: join two words or double the space between them. (T5's tokenizer collapses
    runs of spaces, so only the joins change what the model reads.)
    """
    words = text.split(" ")
    if kind == "typos":
        eligible = [i for i, w in enumerate(words) if sum(c.isalpha() for c in w) >= 3
                    and len(set(w)) > 1]
    elif kind == "casing":
        eligible = [i for i, w in enumerate(words) if any(c.isalpha() for c in w)]
    elif kind == "whitespace":
        eligible = list(range(len(words) - 1))  # gaps after word i
    else:
        raise ValueError(f"unknown perturbation {kind!r}; known: {PERTURBATIONS}")
    if not eligible:
        return text
    chosen = sorted(rng.sample(eligible, max(1, round(rate * len(eligible)))))
    if kind == "typos":
        for i in chosen:
            new = words[i]
            while new == words[i]:  # a swap of equal letters ("oo") would change nothing
                new = _typo(words[i], rng)
            words[i] = new
        return " ".join(words)
    if kind == "casing":
        for i in chosen:
            words[i] = words[i].lower() if words[i] != words[i].lower() else words[i].upper()
        return " ".join(words)
    gaps = [" "] * (len(words) - 1)
    for i in chosen:
        gaps[i] = "" if rng.random() < 0.5 else "  "
    return "".join(w + g for w, g in zip(words, gaps + [""]))


def perturb_examples(examples: list, fields, kind: str, seed: int = 0) -> list:
    """Copies of `examples` with `fields` perturbed; every other key is unchanged."""
    out = []
    for i, example in enumerate(examples):
        copy = dict(example)
        for f in fields:
            copy[f] = perturb_text(example[f], kind, random.Random(f"{kind}|{seed}|{i}|{f}"))
        out.append(copy)
    return out


# ----------------------------------------------------------------------------- metrics
def label_probabilities(option_scores: list) -> list:
    """softmax over each example's option log-likelihoods."""
    probs = []
    for s in option_scores:
        s = np.asarray(s, dtype=np.float64)
        e = np.exp(s - s.max())  # subtract the max: exp never overflows, the ratio is unchanged
        probs.append(e / e.sum())
    return probs


def calibration_error(option_scores: list, label_indices: list, n_bins: int = 10) -> float:
    """ECE of the predicted label's probability (see metrics.expected_calibration_error)."""
    probs = label_probabilities(option_scores)
    confidences = [p.max() for p in probs]
    correct = [int(np.argmax(p)) == y for p, y in zip(probs, label_indices)]
    return expected_calibration_error(confidences, correct, n_bins=n_bins)


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameter counts; tied weights are counted once."""
    params = list(model.parameters())
    return (int(sum(p.size for p in params if p.requires_grad)), int(sum(p.size for p in params)))


@dataclass
class HelmRow:
    """One scenario of a HELM-style report."""

    scenario: str
    metric: str
    accuracy: float
    ece: float | None
    robustness: float
    perturbed_accuracy: dict
    tokens_per_second: float
    trainable_parameters: int
    total_parameters: int
    num_examples: int


def helm_scenario(model, tokenizer, task, shots: int = 0, seed: int = 0, batch_size: int = 16,
                  perturbations=PERTURBATIONS) -> HelmRow:
    """Measure accuracy, calibration, robustness and efficiency on one EvalTask."""
    metric = next((m for m in task.metrics if m in PER_EXAMPLE), None)
    if metric is None:
        raise ValueError(f"{task.name}: HELM needs a per-example metric, got {task.metrics}")

    def per_example(output):
        return np.array([PER_EXAMPLE[metric](p, t) for p, t in zip(output.predictions, output.targets)])

    clean = run_task(model, tokenizer, task, shots, seed, batch_size)
    scores = [per_example(clean)]
    tokens, seconds = clean.num_tokens, clean.seconds
    perturbed = {}
    for kind in perturbations:
        examples = perturb_examples(task.examples, task.input_fields, kind, seed)
        out = run_task(model, tokenizer, task, shots, seed, batch_size, examples=examples)
        scores.append(per_example(out))
        perturbed[kind] = float(scores[-1].mean())
        tokens, seconds = tokens + out.num_tokens, seconds + out.seconds
    ece = None
    if task.output_type == MULTIPLE_CHOICE:
        labels = [task.options_for(ex).index(t) for ex, t in zip(task.examples, clean.targets)]
        ece = calibration_error(clean.option_scores, labels)
    trainable, total = count_parameters(model)
    return HelmRow(task.name, metric, float(scores[0].mean()), ece,
                   float(np.min(scores, axis=0).mean()), perturbed,
                   tokens / max(seconds, 1e-9), trainable, total, len(task.examples))


@dataclass
class HelmReport:
    """Rows of a HELM-style report, printable and serializable."""

    rows: list

    def table(self) -> str:
        """A Markdown table, one row per scenario."""
        header = ["Scenario", "Accuracy", "ECE", "Robustness", "Tokens/s", "Trainable params"]
        body = [[r.scenario, f"{r.accuracy:.2f} ({r.metric})",
                 "n/a" if r.ece is None else f"{r.ece:.3f}", f"{r.robustness:.2f}",
                 f"{r.tokens_per_second:,.0f}", f"{r.trainable_parameters:,} / {r.total_parameters:,}"]
                for r in self.rows]
        widths = [max(len(x[c]) for x in [header] + body) for c in range(len(header))]
        lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |"
                 for row in [header] + body]
        lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"scenarios": [asdict(r) for r in self.rows]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def helm_report(model, tokenizer, tasks=None, n: int = 100, shots: int = 0, seed: int = 0,
                batch_size: int = 16, perturbations=PERTURBATIONS) -> HelmReport:
    """A HELM-style report over EvalTasks (default: built-in HELM_SCENARIOS, n examples each)."""
    if tasks is None:
        tasks = [builtin_task(name, "test", n, seed) for name in HELM_SCENARIOS]
    return HelmReport([helm_scenario(model, tokenizer, t, shots, seed, batch_size, perturbations)
                       for t in tasks])
