"""Softmax, log-softmax and cross-entropy: turning scores into probabilities, and scoring them.

Each is one fused op with a hand-derived backward: composed from exp, sum and divide it would
save every intermediate, while the fused op saves only its output (or the log-probabilities),
which is all its gradient needs. tests/test_ops_fused.py checks each against that composition.
"""
from __future__ import annotations

import numpy as np

from ..autograd import Function, Tensor
from ..backend import get_array_module


def softmax_array(x, axis=-1):
    """exp(x) / sum(exp(x)) on a raw array. Subtracting the row maximum first changes nothing in
    exact arithmetic (it cancels in the ratio) and keeps exp from overflowing."""
    xp = get_array_module(x)
    e = xp.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax_array(x, axis=-1):
    """x - logsumexp(x) on a raw array, shifted by the maximum like ``softmax_array``."""
    xp = get_array_module(x)
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))


class Softmax(Function):
    """exp(x) / sum(exp(x)) along an axis."""

    def forward(self, x, axis=-1):
        self.axis = axis
        self.y = softmax_array(x, axis)
        return self.y

    def backward(self, grad):
        # y_i = e^x_i / sum_j e^x_j  =>  dy_i/dx_k = y_i (delta_ik - y_k), so
        # dL/dx_k = sum_i g_i y_i (delta_ik - y_k) = y_k (g_k - sum_i g_i y_i).
        y = self.y
        return y * (grad - (grad * y).sum(axis=self.axis, keepdims=True))


class LogSoftmax(Function):
    """x - logsumexp(x) along an axis."""

    def forward(self, x, axis=-1):
        self.axis = axis
        self.out = log_softmax_array(x, axis)
        return self.out

    def backward(self, grad):
        # out_i = x_i - lse(x), d lse/dx_k = softmax_k  =>  dL/dx_k = g_k - softmax_k sum_i g_i
        xp = get_array_module(grad)
        return grad - xp.exp(self.out) * grad.sum(axis=self.axis, keepdims=True)


class CrossEntropy(Function):
    """Mean negative log-likelihood of integer targets over the last axis of ``logits``."""

    def forward(self, logits, targets, ignore_index=-100, label_smoothing=0.0):
        xp = get_array_module(logits)
        targets = xp.asarray(targets)  # targets follow the logits' device
        num_classes = logits.shape[-1]
        if targets.shape != logits.shape[:-1]:
            raise ValueError(
                f"cross_entropy: logits {logits.shape} need targets of shape {logits.shape[:-1]}, "
                f"got {targets.shape}"
            )
        self.logits_shape = logits.shape
        t = targets.reshape(-1)
        valid = t != ignore_index
        if bool(((t < 0) | (t >= num_classes))[valid].any()):
            raise ValueError(f"cross_entropy: targets must be in [0, {num_classes}) or {ignore_index}")
        safe_t = xp.where(valid, t, 0)
        log_probs = log_softmax_array(logits.reshape(-1, num_classes), axis=1)  # (N, C)
        eps = label_smoothing
        # With label smoothing the target distribution is q = (1-eps) onehot + eps/C, and
        # loss_row = -sum_c q_c log p_c.
        nll = -log_probs[xp.arange(len(t)), safe_t]
        if eps:
            nll = (1 - eps) * nll - eps / num_classes * log_probs.sum(axis=1)
        self.count = max(int(valid.sum()), 1)
        self.log_probs, self.safe_t, self.valid, self.eps = log_probs, safe_t, valid, eps
        return (nll * valid).sum(dtype=logits.dtype) / self.count

    def backward(self, grad):
        # d loss_row / d x = softmax(x) - q: the predicted distribution minus the target one,
        # q = (1 - eps) onehot(t) + eps / C; rows whose target is ignored get no gradient.
        xp = get_array_module(grad)
        n, c = self.log_probs.shape
        dx = xp.exp(self.log_probs)
        dx[xp.arange(n), self.safe_t] -= 1 - self.eps
        if self.eps:
            dx -= self.eps / c
        dx *= (self.valid * (grad / self.count)).astype(dx.dtype)[:, None]
        return dx.reshape(self.logits_shape), None


def softmax(x, axis: int = -1) -> Tensor:
    """exp(x) / sum(exp(x)) along ``axis``, computed stably."""
    return Softmax.apply(x, axis=axis)


def log_softmax(x, axis: int = -1) -> Tensor:
    """log(softmax(x)) along ``axis``, without forming the softmax."""
    return LogSoftmax.apply(x, axis=axis)


def cross_entropy(logits, targets, ignore_index: int = -100, label_smoothing: float = 0.0) -> Tensor:
    """Mean cross-entropy of ``logits`` (..., C) against integer ``targets`` (...).

    Positions whose target equals ``ignore_index`` count neither in the sum nor in the mean.
    """
    targets = targets.data if isinstance(targets, Tensor) else np.asarray(targets) \
        if isinstance(targets, (list, tuple)) else targets
    return CrossEntropy.apply(logits, targets, ignore_index=ignore_index, label_smoothing=label_smoothing)
