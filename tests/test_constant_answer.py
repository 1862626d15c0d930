"""The rule 'better than the constant answer' (minillm/evaluation/constant_answer.py), by hand.

Every expectation is worked out in a comment; BLEU's bootstrap is recomputed by brute force from
its definition (resample the examples, score both sides on the same resample) with the corpus BLEU
of ``minillm.metrics``, which has its own tests against sacreBLEU.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from minillm.evaluation.constant_answer import BOOTSTRAP, compare_with_constant, constant_answer, per_example
from minillm.metrics import corpus_bleu


def test_per_example_scores_exact_match_after_stripping_and_rouge_l_f1():
    assert list(per_example("accuracy", [" yes ", "no", "yes"], ["yes", "yes", "Yes"])) == [1.0, 0.0, 0.0]
    # "a b c d" against "a c d e": the longest common subsequence is "a c d", 3 tokens of 4 on
    # both sides: precision = recall = 3/4, F1 = 3/4. Identical texts: 1.
    assert list(per_example("rouge", ["a b c d", "x y"], ["a c d e", "x y"])) == [0.75, 1.0]
    with pytest.raises(ValueError, match="'bleu' has no per-example score"):
        per_example("bleu", ["a"], ["a"])


def test_the_margin_must_exceed_two_standard_errors_strictly():
    # 9 examples, the model always right, the constant "a" right on the last 6: differences three
    # 1s and six 0s; mean 1/3, sd sqrt((3 (2/3)^2 + 6 (1/3)^2) / 8) = sqrt(2/8) = 1/2, se 1/6:
    # the margin is exactly two standard errors, which is not more than two.
    at_two = compare_with_constant("accuracy", ["b"] * 3 + ["a"] * 6, "a", ["b"] * 3 + ["a"] * 6)
    assert at_two["margin"] == pytest.approx(1 / 3) and at_two["margin_stderr"] == pytest.approx(1 / 6)
    assert at_two["value"] == 1.0 and at_two["stderr"] == 0.0 and at_two["constant"] == pytest.approx(2 / 3)
    assert not at_two["beats"]
    # 10 examples, four 1s: mean 0.4, sd sqrt((4 (0.6)^2 + 6 (0.4)^2) / 9) = sqrt(2.4 / 9), se
    # sqrt(2.4 / 90) = 0.1633: the margin is sqrt(6) = 2.45 standard errors, between two and three.
    between = compare_with_constant("accuracy", ["b"] * 4 + ["a"] * 6, "a", ["b"] * 4 + ["a"] * 6)
    assert between["margin_stderr"] == pytest.approx(math.sqrt(2.4 / 90))
    assert between["constant_stderr"] == pytest.approx(math.sqrt(2.4 / 90))  # the constant's 0/1 scores alike
    assert between["beats"]


def test_one_example_has_no_standard_error():
    row = compare_with_constant("accuracy", ["b"], "a", ["b"])
    assert row["margin"] == 1.0 and row["margin_stderr"] == 0.0 and row["stderr"] == 0.0
    assert row["beats"]  # 1 > 2 x 0: one example decides, as a test of one example can
    # Two examples, differences 1 and 0: mean 1/2, sd sqrt(2 (1/2)^2 / 1) = 0.7071, se 0.7071 / sqrt(2) = 1/2.
    two = compare_with_constant("accuracy", ["b", "a"], "a", ["b", "a"])
    assert two["margin_stderr"] == pytest.approx(0.5) and not two["beats"]


REFERENCES = ["the cat sat on the mat", "a dog ran in the park", "the bird sang a song",
              "my cat likes the warm sun", "the old dog sleeps all day", "a small bird ate the seeds"]


def test_bleu_margin_and_errors_are_those_of_the_same_resamples():
    predictions = ["the cat sat on the mat", "a dog ran", "the bird sang", "my cat likes the sun",
                   "the old dog sleeps", "a bird ate seeds"]
    constant = "the cat sat on the mat"
    row = compare_with_constant("bleu", predictions, constant, REFERENCES, seed=3)
    rng = np.random.default_rng(3)
    model, const = [], []
    for _ in range(BOOTSTRAP):  # the definition: one resample, both sides scored on it
        idx = rng.integers(0, len(REFERENCES), size=len(REFERENCES))
        refs = [[REFERENCES[i] for i in idx]]
        model.append(corpus_bleu([predictions[i] for i in idx], refs).score)
        const.append(corpus_bleu([constant] * len(idx), refs).score)
    model, const = np.array(model), np.array(const)
    assert row["value"] == corpus_bleu(predictions, [REFERENCES]).score
    assert row["constant"] == corpus_bleu([constant] * 6, [REFERENCES]).score
    assert row["margin"] == row["value"] - row["constant"]
    assert row["stderr"] == pytest.approx(model.std(ddof=1))
    assert row["constant_stderr"] == pytest.approx(const.std(ddof=1))
    assert row["margin_stderr"] == pytest.approx((model - const).std(ddof=1))
    assert row["margin_stderr"] != pytest.approx((model - const).std(ddof=2))
    assert compare_with_constant("bleu", predictions, constant, REFERENCES) == \
        compare_with_constant("bleu", predictions, constant, REFERENCES, seed=0)  # the default seed is 0


def test_a_model_that_says_the_constant_has_no_bleu_margin_and_no_error_of_it():
    # Both sides score the same on every resample, so their difference is 0 on every one, while
    # each side alone varies with the resample.
    row = compare_with_constant("bleu", ["the cat sat on the mat"] * 6, "the cat sat on the mat", REFERENCES)
    assert row["margin"] == 0.0 and row["margin_stderr"] == 0.0 and not row["beats"]
    assert row["stderr"] > 0 and row["stderr"] == row["constant_stderr"]


def test_the_constant_answer_is_the_commonest_with_ties_to_the_alphabetically_first():
    assert constant_answer(["b", "a", "b", "c"]) == "b"
    assert constant_answer(["yes", "no", "no", "yes"]) == "no"
