"""NumPy float64 references for the kernels: attention with a materialized softmax, and its gradients.

These are the specification the kernels are tested against, written the obvious way.
"""
from __future__ import annotations

import numpy as np


def visible_keys(batch, q_len, k_len, key_mask=None, causal=False):
    """Boolean (batch, 1, q_len, k_len): may query i attend to key j?"""
    visible = np.ones((batch, 1, q_len, k_len), dtype=bool)
    if key_mask is not None:
        visible &= np.asarray(key_mask, dtype=bool)[:, None, None, :]
    if causal:
        visible &= np.tril(np.ones((q_len, k_len), dtype=bool))  # j <= i, top-left aligned
    return visible


def attention_probabilities(q, k, bias=None, key_mask=None, causal=False, scale=1.0):
    """(P, lse): softmax over the visible keys of scale * q k^T + bias, in float64.

    A row with no visible key has P = 0 and lse = +inf (the kernels' convention).
    """
    q, k = np.asarray(q, np.float64), np.asarray(k, np.float64)
    batch, _, q_len, _ = q.shape
    scores = scale * q @ k.swapaxes(-1, -2)  # (batch, heads, q_len, k_len)
    if bias is not None:
        scores = scores + np.asarray(bias, np.float64).reshape((-1,) + scores.shape[1:])
    visible = visible_keys(batch, q_len, k.shape[2], key_mask, causal)
    scores = np.where(visible, scores, -np.inf)
    row_max = scores.max(axis=-1, keepdims=True) if scores.shape[-1] else np.full(scores.shape[:-1] + (1,), -np.inf)
    safe_max = np.where(np.isfinite(row_max), row_max, 0.0)
    weights = np.where(visible, np.exp(scores - safe_max), 0.0)
    total = weights.sum(axis=-1, keepdims=True)
    probabilities = np.divide(weights, total, out=np.zeros_like(weights), where=total > 0)
    with np.errstate(divide="ignore"):
        lse = np.where(total[..., 0] > 0, safe_max[..., 0] + np.log(total[..., 0]), np.inf)
    return probabilities, lse


def attention_forward(q, k, v, bias=None, key_mask=None, causal=False, scale=1.0):
    """(out, lse) in float64."""
    probabilities, lse = attention_probabilities(q, k, bias, key_mask, causal, scale)
    return probabilities @ np.asarray(v, np.float64), lse


def attention_backward(q, k, v, grad_out, bias=None, key_mask=None, causal=False, scale=1.0):
    """(dq, dk, dv, dbias) in float64; dbias is summed to the bias's shape."""
    q, k, v, grad_out = (np.asarray(x, np.float64) for x in (q, k, v, grad_out))
    probabilities, _ = attention_probabilities(q, k, bias, key_mask, causal, scale)
    dv = probabilities.swapaxes(-1, -2) @ grad_out
    dp = grad_out @ v.swapaxes(-1, -2)
    ds = probabilities * (dp - (probabilities * dp).sum(axis=-1, keepdims=True))  # softmax Jacobian
    dq = scale * ds @ k
    dk = scale * ds.swapaxes(-1, -2) @ q
    dbias = None
    if bias is not None:
        dbias = ds.sum(axis=0).reshape(bias.shape) if bias.ndim == 3 or bias.shape[0] == 1 else ds
    return dq, dk, dv, dbias


def assert_close(actual, expected, atol, rtol, name="result"):
    """Assert |actual - expected| <= atol + rtol * |expected| elementwise, with matching infinities.

    ``actual`` must contain no NaN: the tests fill outputs with NaN before a kernel runs, so an
    element the kernel never wrote fails here.
    """
    actual = np.asarray(actual, np.float64)
    expected = np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != expected {expected.shape}"
    assert not np.isnan(actual).any(), f"{name}: {int(np.isnan(actual).sum())} NaN (unwritten or invalid) elements"
    infinite = np.isinf(expected)
    assert np.array_equal(actual[infinite], expected[infinite]), f"{name}: infinities differ"
    assert np.isfinite(actual[~infinite]).all(), f"{name}: unexpected infinities"
    error = np.abs(actual[~infinite] - expected[~infinite])
    bound = atol + rtol * np.abs(expected[~infinite])
    if error.size and not (error <= bound).all():
        worst = int(np.argmax(error - bound))
        raise AssertionError(f"{name}: max error {error.max():.3g} exceeds tolerance; worst element "
                             f"{actual[~infinite][worst]} vs {expected[~infinite][worst]} "
                             f"({int((error > bound).sum())} of {error.size} elements off)")
