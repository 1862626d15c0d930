"""Better than its constant answer? The one rule the model card and the quickstart judge by.

A model that ignores its input can still score: it says the task's commonest training answer
every time (ties broken alphabetically). So a task counts as *learned* only when the model beats
that constant answer by more than two standard errors of the difference:

    margin = score(model) - score(constant),   learned  <=>  margin > 2 * stderr(margin)

The two are scored on the same test examples, so the error is that of a paired difference. For a
per-example metric (accuracy: the answer matches exactly; ROUGE-L F1) it is the standard
deviation of the per-example differences over sqrt(n). Corpus BLEU has no per-example scores:
its error is the standard deviation of the margin over ``BOOTSTRAP`` resamples of the examples
(the same resample for both; Koehn 2004, "Statistical significance tests for machine
translation evaluation").
"""
from __future__ import annotations

import math
from collections import Counter

import numpy as np

from .. import metrics

BOOTSTRAP = 200


def constant_answer(answers: list[str]) -> str:
    """The commonest answer (ties: the alphabetically first), what a model that ignores its input says."""
    counts = Counter(answers)
    return min(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0]


def per_example(metric: str, predictions: list[str], references: list[str]) -> np.ndarray:
    """One score per example: exact match (accuracy) or ROUGE-L F1 (rouge)."""
    if metric == "accuracy":
        return np.array([p.strip() == r.strip() for p, r in zip(predictions, references)], dtype=np.float64)
    if metric == "rouge":
        return np.array([metrics.rouge_score(p, r, ["rougeL"])["rougeL"].fmeasure
                         for p, r in zip(predictions, references)], dtype=np.float64)
    raise ValueError(f"per_example: {metric!r} has no per-example score")


def _bleu(predictions, references) -> float:
    return metrics.corpus_bleu(list(predictions), [list(references)]).score


def _stderr(values: np.ndarray) -> float:
    return float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else 0.0


def compare_with_constant(metric: str, predictions: list[str], constant: str, references: list[str],
                          seed: int = 0) -> dict:
    """The base's score, the constant answer's, their margin, each with its standard error, and
    ``beats``: margin > 2 standard errors (see the module docstring)."""
    constants = [constant] * len(references)
    if metric != "bleu":
        base, const = per_example(metric, predictions, references), per_example(metric, constants, references)
        row = dict(value=float(base.mean()), stderr=_stderr(base), constant=float(const.mean()),
                   constant_stderr=_stderr(const), margin=float((base - const).mean()),
                   margin_stderr=_stderr(base - const))
    else:
        rng = np.random.default_rng(seed)
        draws = []
        for _ in range(BOOTSTRAP):
            idx = rng.integers(0, len(references), size=len(references))
            refs = [references[i] for i in idx]
            draws.append((_bleu([predictions[i] for i in idx], refs), _bleu([constant] * len(idx), refs)))
        draws = np.array(draws)
        value, const = _bleu(predictions, references), _bleu(constants, references)
        row = dict(value=value, stderr=float(draws[:, 0].std(ddof=1)), constant=const,
                   constant_stderr=float(draws[:, 1].std(ddof=1)), margin=value - const,
                   margin_stderr=float((draws[:, 0] - draws[:, 1]).std(ddof=1)))
    row["beats"] = bool(row["margin"] > 2 * row["margin_stderr"])
    return row
