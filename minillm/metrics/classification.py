"""Classification, correlation and calibration metrics (GLUE-style evaluation).

All functions take array-likes and return a Python float.

    accuracy   = mean(prediction == label)
    F1 (class c) = 2 TP / (2 TP + FP + FN)        binary: c = pos_label; macro: mean over classes
    MCC        = (c * s - sum_k p_k t_k) / sqrt((s^2 - sum_k p_k^2)(s^2 - sum_k t_k^2))
                 (Gorodkin 2004's multiclass form; for two classes it is the familiar
                  (TP TN - FP FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)). s = #samples,
                  c = #correct, p_k / t_k = #times class k is predicted / true.)
    Pearson r  = cov(x, y) / (std(x) std(y))
    Spearman   = Pearson r of the ranks, tied values sharing the mean of their ranks
    ECE        = sum_b (|B_b| / N) * |accuracy(B_b) - mean confidence(B_b)|
                 over 10 equal-mass bins (see `expected_calibration_error`).

Degenerate inputs follow scikit-learn / scipy: an F1 with no positives predicted or present
is 0, MCC with a constant prediction or label is 0, and a correlation with a constant input is
NaN (it is undefined, and returning 0 would hide the problem).
"""
import numpy as np


def _paired_1d(a, b, a_name, b_name, min_length=1):
    """Two equally long 1-D arrays, or a ValueError that names both lengths."""
    a, b = np.asarray(a), np.asarray(b)
    if a.ndim != 1 or b.ndim != 1:
        raise ValueError(f"{a_name} and {b_name} must be 1-D, got shapes {a.shape} and {b.shape}")
    if len(a) != len(b):
        raise ValueError(f"got {len(a)} {a_name} but {len(b)} {b_name}")
    if len(a) < min_length:
        raise ValueError(f"need at least {min_length} {a_name}, got {len(a)}")
    return a, b


def accuracy(predictions, labels):
    """Fraction of predictions equal to their label."""
    predictions, labels = _paired_1d(predictions, labels, "predictions", "labels")
    return float(np.mean(predictions == labels))


def _f1_of_class(predictions, labels, cls):
    true_positive = np.sum((predictions == cls) & (labels == cls))
    false_positive = np.sum((predictions == cls) & (labels != cls))
    false_negative = np.sum((predictions != cls) & (labels == cls))
    denominator = 2 * true_positive + false_positive + false_negative
    # 2TP/(2TP+FP+FN) is the harmonic mean of precision and recall with no 0/0 in between.
    return float(2 * true_positive / denominator) if denominator else 0.0


def f1_score(predictions, labels, average="binary", pos_label=1):
    """F1 score.

    Args:
        average: "binary" scores only `pos_label`; "macro" takes the unweighted mean of the
            per-class F1 over every class that appears in labels or predictions.
        pos_label: the positive class for "binary".
    """
    predictions, labels = _paired_1d(predictions, labels, "predictions", "labels")
    if average == "binary":
        return _f1_of_class(predictions, labels, pos_label)
    if average == "macro":
        classes = np.union1d(predictions, labels)
        return float(np.mean([_f1_of_class(predictions, labels, c) for c in classes]))
    raise ValueError(f"average must be 'binary' or 'macro', got {average!r}")


def matthews_corrcoef(predictions, labels):
    """Matthews correlation coefficient in [-1, 1] (binary or multiclass)."""
    predictions, labels = _paired_1d(predictions, labels, "predictions", "labels")
    classes = np.union1d(predictions, labels)
    predicted_per_class = np.array([np.sum(predictions == c) for c in classes], dtype=np.float64)
    true_per_class = np.array([np.sum(labels == c) for c in classes], dtype=np.float64)
    samples = float(len(labels))
    correct = float(np.sum(predictions == labels))
    covariance = correct * samples - predicted_per_class @ true_per_class
    variance_predicted = samples ** 2 - predicted_per_class @ predicted_per_class
    variance_true = samples ** 2 - true_per_class @ true_per_class
    if variance_predicted == 0 or variance_true == 0:
        return 0.0  # a constant prediction or label carries no correlation
    return float(covariance / np.sqrt(variance_predicted * variance_true))


def pearson_correlation(x, y):
    """Pearson's r; NaN when either input is constant."""
    x, y = _paired_1d(x, y, "x values", "y values", min_length=2)
    x_centered = x.astype(np.float64) - np.mean(x)
    y_centered = y.astype(np.float64) - np.mean(y)
    denominator = np.sqrt(np.sum(x_centered ** 2) * np.sum(y_centered ** 2))
    if denominator == 0:
        return float("nan")
    # Clip: rounding can push |r| a hair above 1 for perfectly correlated inputs.
    return float(np.clip(np.sum(x_centered * y_centered) / denominator, -1.0, 1.0))


def rank_with_ties(values):
    """1-based ranks; tied values all get the mean of the ranks they occupy.

    Example: [10, 20, 20, 30] -> [1, 2.5, 2.5, 4].
    """
    values = np.asarray(values)
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    # Start index of every run of equal values in sorted order.
    is_new_run = np.concatenate([[True], sorted_values[1:] != sorted_values[:-1]])
    run_starts = np.flatnonzero(is_new_run)
    run_ends = np.concatenate([run_starts[1:], [len(values)]])
    ranks = np.empty(len(values), dtype=np.float64)
    for start, end in zip(run_starts, run_ends):
        # Positions start..end-1 hold ranks start+1..end; their mean is (start + 1 + end) / 2.
        ranks[order[start:end]] = (start + 1 + end) / 2
    return ranks


def spearman_correlation(x, y):
    """Spearman's rho: Pearson's r of the tie-averaged ranks; NaN if an input is constant."""
    x, y = _paired_1d(x, y, "x values", "y values", min_length=2)
    return pearson_correlation(rank_with_ties(x), rank_with_ties(y))


def expected_calibration_error(confidences, correct, n_bins=10):
    """Expected calibration error (Guo et al., 2017) with equal-mass bins.

    Bins: sort the examples by confidence (a stable sort, so ties keep input order), then cut
    the sorted list into `n_bins` contiguous chunks whose sizes differ by at most one, the
    first `N % n_bins` chunks taking the extra example (numpy.array_split). Each bin thus
    holds ~N/n_bins examples, and equal confidences may straddle a bin edge. Empty bins
    (when N < n_bins) contribute nothing.

    Args:
        confidences: (N,) probability the model gave its predicted class, in [0, 1]; for a
            (N, classes) probability matrix use probs.max(axis=1).
        correct: (N,) booleans, whether each prediction was right (probs.argmax(1) == labels).
        n_bins: number of bins.

    Returns:
        ECE in [0, 1]; 0 means confidence matches accuracy in every bin.
    """
    confidences, correct = _paired_1d(confidences, correct, "confidences", "correct flags")
    confidences = confidences.astype(np.float64)
    if np.any((confidences < 0) | (confidences > 1)) or np.any(np.isnan(confidences)):
        raise ValueError("confidences must lie in [0, 1]")
    if n_bins < 1:
        raise ValueError(f"n_bins must be positive, got {n_bins}")
    correct = correct.astype(np.float64)
    order = np.argsort(confidences, kind="stable")
    error = 0.0
    for bin_indices in np.array_split(order, n_bins):
        if len(bin_indices) == 0:
            continue
        gap = abs(correct[bin_indices].mean() - confidences[bin_indices].mean())
        error += len(bin_indices) / len(confidences) * gap
    return float(error)
