"""A model on held-out records: the eval loss, and metrics on the text it generates.

Two numbers answer different questions:

* the **eval loss** (teacher forcing: the decoder reads the reference) is cheap and smooth, the
  right signal for spotting overfitting and for choosing a checkpoint;
* the **task metric** needs the model to *generate* on its own (greedy decoding here) and compares
  the text with the reference: ROUGE for summaries, BLEU for translations, accuracy for labels.
  It is what users care about, but generation is slow, so only a sample is scored.

These functions need only a model with ``forward(**batch).loss`` and
``generate(input_ids, attention_mask, max_new_tokens=...)``, so they serve the Trainer's periodic
evaluation, the quickstart and ``minillm evaluate --data`` alike.
"""
from __future__ import annotations

from ..autograd import no_grad
from ..data.collate import Batcher, as_record, count_target_tokens
from .harness import generate_texts
from .progress import track
from .scoring import score_predictions

__all__ = ["mean_loss", "evaluate_model"]


def mean_loss(model, batches) -> float:
    """The loss averaged over every target token of every batch (not a mean of batch means)."""
    total, count = 0.0, 0
    with no_grad():
        for batch in track(batches, len(batches), "eval loss, batches"):
            n = count_target_tokens(batch)
            total += float(model(**batch).loss.data) * n
            count += n
    return total / max(count, 1)


def evaluate_model(model, tokenizer, records, max_source_length: int = 256, max_target_length: int = 64,
                   max_new_tokens: int = 64, batch_size: int = 64, num_examples: int = 0,
                   metric=None, report=None) -> dict:
    """Eval loss plus ``metric(predictions, records)`` on ``records`` (a Batcher: loss only).

    Args:
        records: text records, or a Batcher of token ids (then only the loss can be computed).
        num_examples: score only the first this many records (0: all).
        metric: default ``scoring.score_predictions`` (each built-in task's own metric).
        report: called with the truncation report (``TruncationReport``: how many prompts and
            completions the length limits cut), e.g. ``print``.

    Returns:
        ``{"eval_loss": ..., "<task>/<metric>": ..., "score": ...}``.
    """
    was_training = getattr(model, "training", False)
    model.eval()
    try:
        if isinstance(records, Batcher):
            return {"eval_loss": mean_loss(model, records)}
        records = [as_record(r) for r in records][: num_examples or None]
        if not records:
            raise ValueError("evaluate: no records to evaluate on")
        batches = Batcher.from_records(records, tokenizer, batch_size, max_source_length, max_target_length,
                                       shuffle=False)
        if report is not None:
            report(batches.stats)
        results = {"eval_loss": mean_loss(model, batches)}
        predictions = generate_texts(model, tokenizer, [r.prompt for r in records], max_source_length,
                                     max_new_tokens, batch_size)
        results.update((metric or score_predictions)(predictions, records))
        return results
    finally:
        model.train(was_training)
