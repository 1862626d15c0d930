"""Classification, correlation and calibration metrics: hand computations, and scipy as an
oracle where it is installed (sklearn is not used)."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm.metrics import (accuracy, expected_calibration_error, f1_score,
                             matthews_corrcoef, pearson_correlation, rank_with_ties,
                             spearman_correlation)

try:  # scipy is an optional oracle: its tests skip when it is not installed
    from scipy import stats
except ImportError:
    stats = None
needs_scipy = pytest.mark.skipif(stats is None, reason="scipy not installed")


def test_accuracy_is_the_fraction_of_exact_matches():
    assert accuracy([1, 0, 1, 1], [1, 1, 1, 0]) == 0.5  # positions 0 and 2 match
    assert accuracy(["a", "b"], ["a", "b"]) == 1.0


def test_binary_f1_by_hand():
    # preds  1 1 0 0 1
    # labels 1 0 0 1 1   -> TP = 2 (pos 0, 4), FP = 1 (pos 1), FN = 1 (pos 3)
    # F1 = 2TP / (2TP + FP + FN) = 4 / 6
    assert f1_score([1, 1, 0, 0, 1], [1, 0, 0, 1, 1]) == pytest.approx(2 / 3)
    # pos_label = 0: TP = 1 (pos 2), FP = 1 (pos 3), FN = 1 (pos 1) -> 2 / 4
    assert f1_score([1, 1, 0, 0, 1], [1, 0, 0, 1, 1], pos_label=0) == pytest.approx(0.5)


def test_macro_f1_averages_per_class_f1_by_hand():
    # preds  0 1 2 2
    # labels 0 1 1 2
    # class 0: TP 1 FP 0 FN 0 -> 1;  class 1: TP 1 FP 0 FN 1 -> 2/3;  class 2: TP 1 FP 1 FN 0
    # -> 2/3. Macro F1 = (1 + 2/3 + 2/3) / 3 = 7/9.
    assert f1_score([0, 1, 2, 2], [0, 1, 1, 2], average="macro") == pytest.approx(7 / 9)


def test_macro_f1_counts_a_class_that_is_only_predicted():
    # Class 1 is predicted but never true: its F1 is 0 and it is part of the average.
    # class 0: TP 1 FP 0 FN 1 -> 2/3; class 1: TP 0 FP 1 FN 0 -> 0. Macro = 1/3.
    assert f1_score([0, 1], [0, 0], average="macro") == pytest.approx(1 / 3)


def test_f1_without_any_positive_is_zero_and_unknown_average_is_rejected():
    assert f1_score([0, 0], [0, 0]) == 0.0
    with pytest.raises(ValueError, match="average"):
        f1_score([0], [0], average="micro")


def test_matthews_binary_by_hand():
    # preds  1 1 0 0 1 ; labels 1 0 0 1 1 -> TP 2, TN 1, FP 1, FN 1
    # MCC = (TP TN - FP FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (2 - 1) / sqrt(3*3*2*2)
    assert matthews_corrcoef([1, 1, 0, 0, 1], [1, 0, 0, 1, 1]) == pytest.approx(1 / 6)


def test_matthews_multiclass_by_hand():
    # preds 0 1 2 0 ; labels 0 1 1 2. s = 4 samples, c = 2 correct,
    # predicted per class p = (2, 1, 1), true per class t = (1, 2, 1).
    # MCC = (c s - p.t) / sqrt((s^2 - p.p)(s^2 - t.t)) = (8 - 5) / sqrt(10 * 10) = 0.3
    assert matthews_corrcoef([0, 1, 2, 0], [0, 1, 1, 2]) == pytest.approx(0.3)


def test_matthews_is_one_for_perfect_minus_one_for_inverted_zero_for_constant():
    assert matthews_corrcoef([0, 1, 1, 0], [0, 1, 1, 0]) == pytest.approx(1.0)
    assert matthews_corrcoef([1, 0, 0, 1], [0, 1, 1, 0]) == pytest.approx(-1.0)
    assert matthews_corrcoef([1, 1, 1, 1], [0, 1, 1, 0]) == 0.0


def test_pearson_by_hand():
    # x = 1 2 3 (mean 2), y = 1 2 4 (mean 7/3). Centered: x' = -1 0 1, y' = -4/3 -1/3 5/3.
    # sum x'y' = 4/3 + 5/3 = 3; sum x'^2 = 2; sum y'^2 = (16 + 1 + 25)/9 = 42/9.
    # r = 3 / sqrt(2 * 42/9) = 9 / sqrt(84)
    assert pearson_correlation([1, 2, 3], [1, 2, 4]) == pytest.approx(9 / math.sqrt(84))


def test_correlation_with_a_constant_input_is_nan():
    assert math.isnan(pearson_correlation([1, 1, 1], [1, 2, 3]))
    assert math.isnan(spearman_correlation([1, 2, 3], [5, 5, 5]))


def test_ties_share_the_mean_of_their_ranks():
    # Sorted: 10 (rank 1), 20 20 (ranks 2 and 3 -> 2.5 each), 30 (rank 4).
    assert rank_with_ties([20, 10, 30, 20]).tolist() == [2.5, 1.0, 4.0, 2.5]
    assert rank_with_ties([7, 7, 7]).tolist() == [2.0, 2.0, 2.0]


def test_spearman_by_hand_with_ties():
    # x = 1 2 2 3 -> ranks 1 2.5 2.5 4; y = 1 3 2 4 -> ranks 1 3 2 4.
    # Centered (mean 2.5): x' = -1.5 0 0 1.5, y' = -1.5 0.5 -0.5 1.5.
    # sum x'y' = 2.25 + 2.25 = 4.5; sum x'^2 = 4.5; sum y'^2 = 2.25+0.25+0.25+2.25 = 5.
    # rho = 4.5 / sqrt(4.5 * 5) = sqrt(4.5 / 5) = sqrt(0.9)
    assert spearman_correlation([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(math.sqrt(0.9))


def test_spearman_is_one_for_any_monotone_transform():
    x = np.array([0.1, 3.0, 2.0, 7.5, -1.0])
    assert spearman_correlation(x, np.exp(x)) == pytest.approx(1.0)


values = st.lists(st.integers(-5, 5), min_size=3, max_size=30)


@needs_scipy
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_pearson_and_spearman_match_scipy(data):
    x = data.draw(values)
    y = data.draw(st.lists(st.integers(-5, 5), min_size=len(x), max_size=len(x)))
    if len(set(x)) == 1 or len(set(y)) == 1:
        assert math.isnan(pearson_correlation(x, y))
        return
    assert pearson_correlation(x, y) == pytest.approx(stats.pearsonr(x, y)[0], abs=1e-9)
    assert spearman_correlation(x, y) == pytest.approx(stats.spearmanr(x, y)[0], abs=1e-9)
    np.testing.assert_allclose(rank_with_ties(x), stats.rankdata(x), atol=0)


@needs_scipy
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_binary_matthews_equals_the_phi_coefficient_from_scipy(data):
    # For 0/1 vectors MCC is Pearson's r of the two vectors (the phi coefficient).
    labels = data.draw(st.lists(st.integers(0, 1), min_size=2, max_size=30))
    predictions = data.draw(st.lists(st.integers(0, 1), min_size=len(labels),
                                     max_size=len(labels)))
    if len(set(labels)) == 1 or len(set(predictions)) == 1:
        assert matthews_corrcoef(predictions, labels) == 0.0
        return
    phi = stats.pearsonr(predictions, labels)[0]
    assert matthews_corrcoef(predictions, labels) == pytest.approx(phi, abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_binary_macro_f1_is_the_mean_of_both_classes_binary_f1(data):
    labels = data.draw(st.lists(st.integers(0, 1), min_size=1, max_size=30))
    predictions = data.draw(st.lists(st.integers(0, 1), min_size=len(labels),
                                     max_size=len(labels)))
    present = sorted(set(labels) | set(predictions))
    expected = np.mean([f1_score(predictions, labels, pos_label=c) for c in present])
    assert f1_score(predictions, labels, average="macro") == pytest.approx(expected)


def test_ece_two_equal_mass_bins_by_hand():
    # Sorted by confidence: [0.4 wrong, 0.6 right] | [0.8 wrong, 0.9 right].
    # Bin 1: accuracy 0.5, confidence 0.5 -> gap 0. Bin 2: accuracy 0.5, confidence 0.85 ->
    # gap 0.35. ECE = 2/4 * 0 + 2/4 * 0.35 = 0.175.
    ece = expected_calibration_error([0.9, 0.8, 0.6, 0.4], [1, 0, 1, 0], n_bins=2)
    assert ece == pytest.approx(0.175)


def test_ece_bins_hold_equal_counts_not_equal_confidence_widths():
    # All confidences lie in [0.9, 1]: equal-width bins would put them in one bin (gap
    # |0.75 - 0.925| = 0.175). Equal mass, 2 bins: [0.91 wrong, 0.92 right] -> gap 0.415,
    # [0.93, 0.94 right] -> gap 0.065; ECE = (0.415 + 0.065) / 2 = 0.24.
    ece = expected_calibration_error([0.91, 0.92, 0.93, 0.94], [0, 1, 1, 1], n_bins=2)
    assert ece == pytest.approx(0.24)


def test_ece_gives_the_extra_examples_to_the_first_bins():
    # 3 examples in 2 bins -> sizes 2 then 1 (numpy.array_split).
    # [0.2 wrong, 0.4 right]: gap |0.5 - 0.3| = 0.2, weight 2/3; [0.9 right]: gap 0.1, 1/3.
    # ECE = 0.4/3 + 0.1/3 = 1/6. (Sizes 1 then 2 would give 0.2/3 + 0.7/3 = 0.3.)
    ece = expected_calibration_error([0.9, 0.2, 0.4], [1, 0, 1], n_bins=2)
    assert ece == pytest.approx(1 / 6)


def test_ece_with_one_example_per_bin_is_the_mean_absolute_gap():
    confidences, correct = [0.3, 0.7, 0.95], [0, 1, 0]
    expected = np.mean(np.abs(np.array(correct) - np.array(confidences)))
    assert expected_calibration_error(confidences, correct, n_bins=3) == pytest.approx(expected)
    # More bins than examples: the empty bins add nothing.
    assert expected_calibration_error(confidences, correct, n_bins=10) == pytest.approx(expected)


def test_metrics_name_both_lengths_on_mismatch_and_reject_bad_confidences():
    with pytest.raises(ValueError, match="got 3 predictions but 2 labels"):
        accuracy([1, 0, 1], [1, 0])
    with pytest.raises(ValueError, match="got 2 confidences but 1 correct flags"):
        expected_calibration_error([0.5, 0.5], [1])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        expected_calibration_error([1.5], [1])
    with pytest.raises(ValueError, match="at least 2"):
        pearson_correlation([1], [1])
