"""Batching for a seq2seq model: tokenize, truncate, pad, bucket by length.

A batch for T5 is four int64 arrays:

    input_ids               (batch, src_len)  encoder tokens, padded with <pad> = 0
    attention_mask          (batch, src_len)  1 on real tokens, 0 on padding
    labels                  (batch, tgt_len)  decoder targets, padded with -100
    decoder_attention_mask  (batch, tgt_len)  1 on real targets, 0 on padding

Labels are padded with -100 rather than 0 because the loss skips -100 (cross_entropy's
ignore_index): padding must not count as "predict <pad> here". The model builds its decoder
input by shifting labels right (`shift_right`), as Hugging Face's T5 does.

Padding is *dynamic*: each batch is padded only to its own longest sequence. To keep that
padding small, `Batcher` groups sequences of similar length: it shuffles, sorts within pools
of a few batches, cuts batches, then shuffles the order of the batches. Every step is
deterministic given the seed.

Nothing is dropped silently: sequences longer than the limits are cut (keeping the final </s>)
and counted in `Batcher.stats` / `truncation_report`.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterable, Iterator, NamedTuple, Sequence

import numpy as np

IGNORE_INDEX = -100  # label value the loss ignores


class Record(NamedTuple):
    """One supervised example as text: what the model reads, what it should write."""

    prompt: str
    completion: str
    task: str | None = None


@dataclass
class TruncationReport:
    """How many examples did not fit the length limits (they were cut, never dropped)."""

    num_examples: int = 0
    num_source_truncated: int = 0
    num_target_truncated: int = 0
    longest_source: int = 0
    longest_target: int = 0

    def __str__(self) -> str:
        return (f"{self.num_examples} examples: {self.num_source_truncated} prompts and "
                f"{self.num_target_truncated} completions truncated (longest: "
                f"{self.longest_source} / {self.longest_target} tokens)")


def count_target_tokens(batch: dict) -> int:
    """Tokens a batch's loss is averaged over: the labels that are not -100 (padding)."""
    return int((np.asarray(batch["labels"]) != IGNORE_INDEX).sum())


def as_record(r) -> Record:
    """Accept a Record, a (prompt, completion[, task]) tuple or a dict with those keys."""
    if isinstance(r, dict):
        return Record(r["prompt"], r["completion"], r.get("task"))
    return Record(*r)


def truncate(ids: list[int], max_length: int | None, eos_id: int = 1) -> tuple[list[int], bool]:
    """Cut `ids` to `max_length`, keeping a final </s> if it had one; returns (ids, was_cut)."""
    if max_length is None or len(ids) <= max_length:
        return ids, False
    if ids and ids[-1] == eos_id:
        return ids[: max_length - 1] + [eos_id], True
    return ids[:max_length], True


def tokenize_records(records: Iterable, tokenizer, max_source_length: int | None = None,
                     max_target_length: int | None = None):
    """Encode prompts and completions (each ending in </s>) and truncate them.

    Returns:
        (pairs, report): a list of (source_ids, target_ids) and a TruncationReport.
    """
    records = [as_record(r) for r in records]
    sources = tokenizer.batch_encode([r.prompt for r in records], padding=False)["input_ids"]
    targets = tokenizer.batch_encode([r.completion for r in records], padding=False)["input_ids"]
    report = TruncationReport(num_examples=len(records))
    pairs = []
    eos = tokenizer.eos_token_id
    for src, tgt in zip(sources, targets):
        report.longest_source = max(report.longest_source, len(src))
        report.longest_target = max(report.longest_target, len(tgt))
        src, cut_src = truncate(src, max_source_length, eos)
        tgt, cut_tgt = truncate(tgt, max_target_length, eos)
        report.num_source_truncated += cut_src
        report.num_target_truncated += cut_tgt
        pairs.append((src, tgt))
    return pairs, report


def truncation_report(records: Iterable, tokenizer, max_source_length: int | None,
                      max_target_length: int | None) -> TruncationReport:
    """Count the records whose prompt or completion exceeds the limits (before training)."""
    return tokenize_records(records, tokenizer, max_source_length, max_target_length)[1]


def collate(pairs: Sequence[tuple[Sequence[int], Sequence[int]]], pad_id: int = 0) -> dict:
    """Pad (source_ids, target_ids) pairs into the four arrays of a batch (see module doc)."""
    n = len(pairs)
    src_len = max(len(s) for s, _ in pairs)
    tgt_len = max(len(t) for _, t in pairs)
    input_ids = np.full((n, src_len), pad_id, dtype=np.int64)       # (batch, src_len)
    attention_mask = np.zeros((n, src_len), dtype=np.int64)
    labels = np.full((n, tgt_len), IGNORE_INDEX, dtype=np.int64)     # (batch, tgt_len)
    decoder_attention_mask = np.zeros((n, tgt_len), dtype=np.int64)
    for i, (src, tgt) in enumerate(pairs):
        input_ids[i, : len(src)] = src
        attention_mask[i, : len(src)] = 1
        labels[i, : len(tgt)] = tgt
        decoder_attention_mask[i, : len(tgt)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels,
            "decoder_attention_mask": decoder_attention_mask}


def shift_right(labels: np.ndarray, decoder_start_token_id: int = 0, pad_id: int = 0) -> np.ndarray:
    """Decoder inputs from labels: prepend the start token, drop the last, -100 -> <pad>.

    At step t the decoder reads label t-1 and must predict label t (teacher forcing).
    """
    shifted = np.empty_like(labels)
    shifted[:, 0] = decoder_start_token_id
    shifted[:, 1:] = labels[:, :-1]
    return np.where(shifted == IGNORE_INDEX, pad_id, shifted)


class Batcher:
    """Iterate over padded batches of (source_ids, target_ids) pairs.

    Args:
        pairs: token id sequences, e.g. from `tokenize_records` or span corruption.
        batch_size: examples per batch (the last batch may be smaller unless drop_last).
        shuffle: if True, shuffle and bucket by length; if False keep the given order
            (use this for evaluation, so predictions line up with the records).
        seed: makes the order reproducible; epoch e uses seed + e (see `set_epoch`).
        bucket_pool: sort by length inside pools of this many batches. Bigger pools mean
            less padding but less random batches; 1 disables bucketing.
    """

    def __init__(self, pairs, batch_size: int, shuffle: bool = True, seed: int = 0,
                 bucket_pool: int = 20, drop_last: bool = False, pad_id: int = 0,
                 report: TruncationReport | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.pairs = [(list(s), list(t)) for s, t in pairs]
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.bucket_pool, self.drop_last, self.pad_id = bucket_pool, drop_last, pad_id
        self.stats = report or TruncationReport(num_examples=len(self.pairs))
        self.epoch = 0

    @classmethod
    def from_records(cls, records, tokenizer, batch_size: int, max_source_length: int | None = 512,
                     max_target_length: int | None = 128, **kwargs) -> "Batcher":
        """Tokenize text records, then batch them; truncation counts go to `.stats`."""
        pairs, report = tokenize_records(records, tokenizer, max_source_length, max_target_length)
        return cls(pairs, batch_size, pad_id=tokenizer.pad_token_id, report=report, **kwargs)

    def set_epoch(self, epoch: int) -> None:
        """Use a different (but reproducible) order for each epoch."""
        self.epoch = epoch

    def batch_indices(self) -> list[list[int]]:
        """The example indices of every batch, in the order they will be served."""
        order = list(range(len(self.pairs)))
        if self.shuffle:
            rng = random.Random(self.seed + self.epoch)
            rng.shuffle(order)
            pool = self.batch_size * max(self.bucket_pool, 1)
            length = lambda i: (len(self.pairs[i][0]), len(self.pairs[i][1]))  # noqa: E731
            order = [i for k in range(0, len(order), pool)
                     for i in sorted(order[k:k + pool], key=length)]
        batches = [order[k:k + self.batch_size] for k in range(0, len(order), self.batch_size)]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        if self.shuffle:  # otherwise every epoch would start with the short batches
            rng.shuffle(batches)
        return batches

    def __iter__(self) -> Iterator[dict]:
        for idx in self.batch_indices():
            yield collate([self.pairs[i] for i in idx], self.pad_id)

    def __len__(self) -> int:
        n, b = len(self.pairs), self.batch_size
        return n // b if self.drop_last else -(-n // b)


def make_batches(records, tokenizer, batch_size: int, max_source_length: int | None = 512,
                 max_target_length: int | None = 128, shuffle: bool = True, seed: int = 0,
                 **kwargs) -> Batcher:
    """Text records -> an iterable of padded batches (a `Batcher`; see its arguments).

    Records may be `Record`s, (prompt, completion[, task]) tuples or dicts with "prompt" and
    "completion". The returned Batcher's `.stats` says how many were truncated.
    """
    return Batcher.from_records(records, tokenizer, batch_size, max_source_length,
                                max_target_length, shuffle=shuffle, seed=seed, **kwargs)
