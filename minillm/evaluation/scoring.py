"""Score generated text against references, each task with its own metric.

Training and the quickstart evaluate a model by *generating* answers and comparing them with
the references, because the number people care about is not the loss but "is the summary
good?" (ROUGE), "is the translation good?" (BLEU), "is the label right?" (accuracy):

    task metric     what is reported (all in [0, 1] except BLEU, which is in [0, 100])
    "rouge"         rouge1, rouge2, rougeL: F1 of unigram / bigram / longest-common-subsequence overlap
    "bleu"          bleu: corpus BLEU (sacreBLEU's defaults: 13a tokens, exp smoothing)
    "accuracy"      accuracy: the whole answer must match (after stripping spaces)
    anything else   exact_match and rougeL (your own JSONL data has no declared metric)

The metrics live in ``minillm.metrics`` (bit-for-bit with rouge-score and sacreBLEU).
"""
from __future__ import annotations

from collections import defaultdict

from .. import metrics


def exact_match(predictions: list[str], references: list[str]) -> float:
    """Fraction of predictions equal to their reference, ignoring leading/trailing spaces."""
    if not predictions:
        return 0.0
    return sum(p.strip() == r.strip() for p, r in zip(predictions, references)) / len(predictions)


def _task_metric(task: str | None) -> str:
    """The metric a task declares ("rouge", "bleu", "accuracy"), or "" for unknown tasks."""
    from ..data.tasks import TASKS  # noqa: PLC0415  (keep this module importable on its own)

    return TASKS[task].metric if task in TASKS else ""


def score_with_metric(metric: str, predictions: list[str], references: list[str]) -> dict[str, float]:
    """The scores of one task's predictions under ``metric`` (see the module table).

    (``harness.score_task`` is the other scorer: it scores an ``EvalTask`` with standard errors.)
    """
    if metric == "rouge":
        rouge = metrics.corpus_rouge(predictions, references, rouge_types=("rouge1", "rouge2", "rougeL"))
        return {name: rouge[name].mid.fmeasure for name in ("rouge1", "rouge2", "rougeL")}
    if metric == "bleu":
        return {"bleu": metrics.corpus_bleu(predictions, [references]).score}
    if metric == "accuracy":
        return {"accuracy": metrics.accuracy([p.strip() for p in predictions], [r.strip() for r in references])}
    rouge = metrics.corpus_rouge(predictions, references, rouge_types=("rougeL",))
    return {"exact_match": exact_match(predictions, references), "rougeL": rouge["rougeL"].mid.fmeasure}


def score_predictions(predictions: list[str], records) -> dict[str, float]:
    """Score predictions against records (``.completion`` is the reference), grouped by ``.task``.

    Returns a flat dict ``{"<task>/<metric>": value, ..., "score": mean}``. ``score`` averages
    one headline number per task (rougeL, bleu/100, accuracy or exact_match), so that different
    tasks can be compared and the best checkpoint picked on one number.
    """
    if len(predictions) != len(records):
        raise ValueError(f"score_predictions: {len(predictions)} predictions for {len(records)} records")
    by_task: dict = defaultdict(lambda: ([], []))
    for prediction, record in zip(predictions, records):
        task = getattr(record, "task", None) or "data"
        by_task[task][0].append(prediction)
        by_task[task][1].append(record.completion)
    results, headlines = {}, []
    for task in sorted(by_task):
        task_predictions, references = by_task[task]
        scores = score_with_metric(_task_metric(task), task_predictions, references)
        results.update({f"{task}/{name}": value for name, value in scores.items()})
        headline = next(name for name in ("rougeL", "bleu", "accuracy", "exact_match") if name in scores)
        headlines.append(scores[headline] / (100.0 if headline == "bleu" else 1.0))
    results["score"] = sum(headlines) / len(headlines) if headlines else 0.0
    return results
