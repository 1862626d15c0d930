"""Specification of batching: padding, -100 labels, truncation counts, length bucketing."""
import numpy as np
import pytest

from minillm.data.collate import (Batcher, Record, collate, make_batches,
                                  shift_right, tokenize_records, truncate, truncation_report)


class WordTokenizer:
    """A stand-in tokenizer: one id per word (3 + its index in the text), then </s> = 1."""

    pad_token_id, eos_token_id = 0, 1

    def batch_encode(self, texts, padding=False):
        return {"input_ids": [[3 + i for i, _ in enumerate(t.split())] + [1] for t in texts]}


def test_collate_pads_inputs_with_zero_and_labels_with_minus_100():
    batch = collate([([5, 6, 1], [7, 1]), ([8, 1], [9, 10, 11, 1])])
    assert batch["input_ids"].tolist() == [[5, 6, 1], [8, 1, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["labels"].tolist() == [[7, 1, -100, -100], [9, 10, 11, 1]]
    assert batch["decoder_attention_mask"].tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    assert all(v.dtype == np.int64 for v in batch.values())


def test_shift_right_starts_with_the_pad_token_and_removes_minus_100():
    labels = np.array([[7, 1, -100], [9, 10, 1]])
    assert shift_right(labels).tolist() == [[0, 7, 1], [0, 9, 10]]


def test_truncate_keeps_the_final_eos():
    assert truncate([5, 6, 7, 8, 1], 3) == ([5, 6, 1], True)
    assert truncate([5, 6, 7, 8], 3) == ([5, 6, 7], True)
    assert truncate([5, 1], 3) == ([5, 1], False)
    assert truncate([5, 6, 1], None) == ([5, 6, 1], False)


def test_truncation_is_counted_not_hidden():
    records = [("a b c d e", "x"), ("a", "x y z"), ("a b", "x")]
    # lengths with </s>: sources 6, 2, 3; targets 2, 4, 2
    pairs, report = tokenize_records(records, WordTokenizer(), max_source_length=4, max_target_length=3)
    assert (report.num_examples, report.num_source_truncated, report.num_target_truncated) == (3, 1, 1)
    assert (report.longest_source, report.longest_target) == (6, 4)
    assert pairs[0] == ([3, 4, 5, 1], [3, 1]) and pairs[1][1] == [3, 4, 1]
    assert truncation_report(records, WordTokenizer(), 4, 3) == report


def test_records_may_be_tuples_dicts_or_records():
    forms = [("a b", "c"), {"prompt": "a b", "completion": "c"}, Record("a b", "c", "t")]
    pairs, _ = tokenize_records(forms, WordTokenizer())
    assert pairs == [([3, 4, 1], [3, 1])] * 3


def _pairs(n, seed=0):
    rng = np.random.default_rng(seed)
    return [(list(range(2, 2 + int(k))) + [1], [5] * int(m) + [1])
            for k, m in zip(rng.integers(1, 60, n), rng.integers(1, 10, n))]


def _rows(batches):
    return sorted(tuple(r[m == 1]) for b in batches
                  for r, m in zip(b["input_ids"], b["attention_mask"]))


def test_every_example_is_served_exactly_once_per_epoch():
    pairs = _pairs(203)
    batcher = Batcher(pairs, batch_size=16, seed=0)
    batches = list(batcher)
    assert len(batches) == len(batcher) == 13  # ceil(203 / 16)
    assert _rows(batches) == sorted(tuple(s) for s, _ in pairs)


def test_order_is_deterministic_by_seed_and_epoch():
    order = lambda **kw: Batcher(_pairs(100), 8, **kw).batch_indices()  # noqa: E731
    assert order(seed=1) == order(seed=1)
    assert order(seed=1) != order(seed=2)
    b = Batcher(_pairs(100), 8, seed=1)
    first = b.batch_indices()
    b.set_epoch(1)
    assert b.batch_indices() != first


def test_length_bucketing_reduces_padding():
    def padded_tokens(bucket_pool):
        return sum(b["input_ids"].size for b in Batcher(_pairs(400), 16, seed=0, bucket_pool=bucket_pool))
    assert padded_tokens(bucket_pool=25) < 0.8 * padded_tokens(bucket_pool=1)


def test_bucketed_batches_are_shuffled_not_sorted():
    widths = [b["input_ids"].shape[1] for b in Batcher(_pairs(400), 16, seed=0, bucket_pool=25)]
    assert widths != sorted(widths)


def test_no_shuffle_keeps_the_given_order_and_drop_last_drops_the_remainder():
    pairs = _pairs(10)
    batches = list(Batcher(pairs, 4, shuffle=False))
    assert [b["input_ids"].shape[0] for b in batches] == [4, 4, 2]
    assert batches[0]["input_ids"][1][: len(pairs[1][0])].tolist() == pairs[1][0]
    assert len(Batcher(pairs, 4, shuffle=False, drop_last=True)) == 2
    assert len(list(Batcher(pairs, 4, drop_last=True))) == 2


def test_make_batches_reports_truncation():
    records = [Record("a b c d e f", "x y"), Record("a", "x")] * 5
    batcher = make_batches(records, WordTokenizer(), batch_size=4, max_source_length=3,
                           max_target_length=8, shuffle=False)
    assert batcher.stats.num_source_truncated == 5 and batcher.stats.num_target_truncated == 0
    first = next(iter(batcher))
    assert first["input_ids"].tolist()[0] == [3, 4, 1]
    assert set(first) == {"input_ids", "attention_mask", "labels", "decoder_attention_mask"}


def test_batch_size_must_be_positive():
    with pytest.raises(ValueError, match="batch_size"):
        Batcher([], 0)

