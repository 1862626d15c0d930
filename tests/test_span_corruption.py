"""Specification of T5 span corruption: counts from T5's formulas, and nothing is lost."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm.data.span_corruption import (chunk_tokens, count_spans, noise_span_to_sentinel,
                                          random_segmentation, random_spans_noise_mask,
                                          span_corruption, span_corruption_pairs)

SENTINELS = list(range(999, 899, -1))  # <extra_id_0> = 999, <extra_id_1> = 998, ... like T5
EOS = 1


def expected_counts(length, density, mean_span):
    """T5's formulas (Python's round, like tf.round, rounds halves to even)."""
    noise = min(max(round(length * density), 1), length - 1)
    return noise, max(round(noise / mean_span), 1)


def uncorrupt(inputs, targets):
    """Put each sentinel's span from the targets back into the inputs."""
    spans, current = {}, None
    for t in targets[:-1]:  # drop </s>
        if t in SENTINELS:
            current = t
            spans[t] = []
        else:
            spans[current].append(t)
    out = []
    for t in inputs[:-1]:
        out += spans[t] if t in SENTINELS else [t]
    return out


@settings(max_examples=150, deadline=None)
@given(length=st.integers(2, 400), seed=st.integers(0, 2**32 - 1),
       density=st.sampled_from([0.15, 0.3]), mean_span=st.sampled_from([1.0, 3.0, 5.0]))
def test_noise_mask_matches_t5_formulas(length, seed, density, mean_span):
    mask = random_spans_noise_mask(length, density, mean_span, np.random.default_rng(seed))
    noise, spans = expected_counts(length, density, mean_span)
    assert mask.shape == (length,) and mask.dtype == bool
    assert mask.sum() == noise
    assert count_spans(mask) == spans
    assert not mask[0] and mask[-1]  # keep, hide, keep, hide ... ends hidden


@settings(max_examples=150, deadline=None)
@given(tokens=st.lists(st.integers(2, 800), min_size=2, max_size=300), seed=st.integers(0, 2**32 - 1))
def test_inputs_and_targets_interleave_back_into_the_original(tokens, seed):
    inputs, targets = span_corruption(tokens, SENTINELS, EOS, rng=np.random.default_rng(seed))
    assert inputs[-1] == EOS and targets[-1] == EOS
    assert uncorrupt(inputs, targets) == tokens
    used = [t for t in inputs if t in SENTINELS]
    assert used == SENTINELS[: len(used)]                       # <extra_id_0>, <extra_id_1>, ...
    assert [t for t in targets if t in SENTINELS] == used       # same sentinels, same order
    assert targets[0] == SENTINELS[0]
    noise, spans = expected_counts(len(tokens), 0.15, 3.0)
    assert len(used) == spans and len(targets) == noise + spans + 1


def test_sentinel_replacement_by_hand():
    tokens = [10, 11, 12, 13, 14, 15, 16]
    mask = np.array([0, 1, 1, 0, 0, 1, 0], dtype=bool)
    assert noise_span_to_sentinel(tokens, mask, SENTINELS) == [10, 999, 13, 14, 998, 16]
    assert noise_span_to_sentinel(tokens, ~mask, SENTINELS) == [999, 11, 12, 998, 15, 997]


@settings(max_examples=100, deadline=None)
@given(items=st.integers(1, 200), data=st.data())
def test_random_segmentation_gives_positive_lengths_that_sum_up(items, data):
    segments = data.draw(st.integers(1, items))
    lengths = random_segmentation(items, segments, np.random.default_rng(0))
    assert len(lengths) == segments and lengths.sum() == items and (lengths >= 1).all()


def test_t5_example_lengths():
    # 100 tokens: round(15) = 15 noise tokens in round(15 / 3) = 5 spans
    mask = random_spans_noise_mask(100, rng=np.random.default_rng(0))
    assert mask.sum() == 15 and count_spans(mask) == 5
    # 10 tokens: round(1.5) = 2 noise tokens, round(2 / 3) = 1 span
    mask = random_spans_noise_mask(10, rng=np.random.default_rng(0))
    assert mask.sum() == 2 and count_spans(mask) == 1


def test_same_seed_same_corruption():
    tokens = list(range(2, 60))
    a = span_corruption(tokens, SENTINELS, rng=np.random.default_rng(7))
    assert a == span_corruption(tokens, SENTINELS, rng=np.random.default_rng(7))
    assert a != span_corruption(tokens, SENTINELS, rng=np.random.default_rng(8))


def test_chunk_tokens_packs_documents():
    assert chunk_tokens([[1, 2, 3], [4, 5], [6, 7, 8]], 3) == [[1, 2, 3], [4, 5, 6], [7, 8]]
    assert chunk_tokens([[1, 2, 3, 4]], 3) == [[1, 2, 3]]  # a 1-token tail cannot be corrupted


class TinyTokenizer:
    """One id per word (its length + 2), </s> = 1, 100 sentinels at the top like T5."""

    eos_token_id, num_sentinels = 1, 100

    def sentinel_id(self, n):
        return 999 - n

    def batch_encode(self, texts, padding=False):
        return {"input_ids": [[len(w) + 2 for w in t.split()] + [1] for t in texts]}


def test_span_corruption_pairs_from_text():
    texts = ["the cat sees the dog " * 4] * 10  # 21 tokens each with </s>: 210 in all
    pairs = span_corruption_pairs(texts, TinyTokenizer(), chunk_length=30, seed=0)
    assert len(pairs) == 7  # 210 / 30
    for inputs, targets in pairs:
        # 30 tokens: round(4.5) = 4 noise tokens, round(4 / 3) = 1 span
        assert len(inputs) == 30 - 4 + 1 + 1 and len(targets) == 4 + 1 + 1
