"""Reductions: sum, mean, max, var, logsumexp, each over ``axis`` (None, an int or a tuple).

The backward of a reduction spreads the gradient back over the reduced axes. With
``keepdims=False`` those axes vanished from the output, so ``_expand`` first puts them back as
size-1 axes; broadcasting then does the spreading.
"""
from __future__ import annotations

import builtins  # this module defines sum and max, which shadow the builtins

from ..autograd import Function, Tensor
from ..backend import get_array_module


def _normalize_axis(axis, ndim: int) -> tuple:
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    out = []
    for a in axes:
        if not -ndim <= a < builtins.max(ndim, 1):
            raise ValueError(f"axis {a} is out of range for a tensor with {ndim} dimensions")
        out.append(a % ndim if ndim else 0)
    return tuple(sorted(out))


def _expand(grad, axes: tuple, keepdims: bool):
    """Re-insert reduced axes as size 1 so that ``grad`` broadcasts against the input."""
    if keepdims:
        return grad
    xp = get_array_module(grad)
    return xp.expand_dims(grad, axes) if axes else grad


class Sum(Function):
    """Sum over axes."""

    def forward(self, a, axis=None, keepdims=False):
        self.shape, self.axes, self.keepdims = a.shape, _normalize_axis(axis, a.ndim), keepdims
        return a.sum(axis=self.axes, keepdims=keepdims)

    def backward(self, grad):  # every summed element gets the output's gradient
        xp = get_array_module(grad)
        return xp.broadcast_to(_expand(grad, self.axes, self.keepdims), self.shape)


class Mean(Function):
    """Mean over axes."""

    def forward(self, a, axis=None, keepdims=False):
        self.shape, self.axes, self.keepdims = a.shape, _normalize_axis(axis, a.ndim), keepdims
        self.count = 1
        for ax in self.axes:
            self.count *= a.shape[ax]
        return a.mean(axis=self.axes, keepdims=keepdims)

    def backward(self, grad):  # d mean / d a_i = 1/n
        xp = get_array_module(grad)
        g = _expand(grad, self.axes, self.keepdims) / self.count
        return xp.broadcast_to(g, self.shape)


class Max(Function):
    """Maximum over axes; ties share the gradient."""

    def forward(self, a, axis=None, keepdims=False):
        self.a, self.axes, self.keepdims = a, _normalize_axis(axis, a.ndim), keepdims
        self.out = a.max(axis=self.axes, keepdims=True)
        return self.out if keepdims else self.out.reshape(
            [n for i, n in enumerate(a.shape) if i not in self.axes])

    def backward(self, grad):
        # The gradient goes to the maximum; tied maxima share it equally (a subgradient).
        winners = self.a == self.out
        count = winners.sum(axis=self.axes, keepdims=True).astype(grad.dtype)  # int would upcast
        return _expand(grad, self.axes, self.keepdims) * winners / count


class Var(Function):
    """Variance over axes (with an optional correction, e.g. 1 for unbiased)."""

    def forward(self, a, axis=None, keepdims=False, correction=0):
        self.axes, self.keepdims = _normalize_axis(axis, a.ndim), keepdims
        n = 1
        for ax in self.axes:
            n *= a.shape[ax]
        self.denominator = builtins.max(n - correction, 0)
        self.centered = a - a.mean(axis=self.axes, keepdims=True)
        return (self.centered**2).sum(axis=self.axes, keepdims=keepdims) / self.denominator

    def backward(self, grad):
        # var = sum (a - mean)^2 / d  =>  d var / d a_i = 2 (a_i - mean) / d
        # (the mean's own dependence on a_i contributes sum(a - mean) = 0).
        return _expand(grad, self.axes, self.keepdims) * (2 / self.denominator) * self.centered


class LogSumExp(Function):
    """log(sum(exp(a))) over axes, without overflow."""

    def forward(self, a, axis=None, keepdims=False):
        xp = get_array_module(a)
        self.a, self.axes, self.keepdims = a, _normalize_axis(axis, a.ndim), keepdims
        # Subtract the max first so that exp never overflows: log sum e^a = m + log sum e^(a-m).
        m = a.max(axis=self.axes, keepdims=True)
        m = xp.where(xp.isfinite(m), m, 0)
        self.out = m + xp.log(xp.exp(a - m).sum(axis=self.axes, keepdims=True))
        return self.out if keepdims else self.out.reshape(
            [n for i, n in enumerate(a.shape) if i not in self.axes])

    def backward(self, grad):  # d lse / d a_i = softmax(a)_i
        xp = get_array_module(grad)
        return _expand(grad, self.axes, self.keepdims) * xp.exp(self.a - self.out)


def sum(a, axis=None, keepdims: bool = False) -> Tensor:  # noqa: A001 - mirrors torch.sum
    """Sum over ``axis`` (all axes when None)."""
    return Sum.apply(a, axis=axis, keepdims=keepdims)


def mean(a, axis=None, keepdims: bool = False) -> Tensor:
    """Arithmetic mean over ``axis``."""
    return Mean.apply(a, axis=axis, keepdims=keepdims)


def max(a, axis=None, keepdims: bool = False) -> Tensor:  # noqa: A001 - mirrors torch.max
    """Maximum over ``axis``; ties share the gradient equally."""
    return Max.apply(a, axis=axis, keepdims=keepdims)


def var(a, axis=None, keepdims: bool = False, correction: int = 0) -> Tensor:
    """Variance over ``axis``; ``correction=1`` gives the unbiased estimate (default: population)."""
    return Var.apply(a, axis=axis, keepdims=keepdims, correction=correction)


def logsumexp(a, axis=None, keepdims: bool = False) -> Tensor:
    """log(sum(exp(a))) over ``axis``, computed without overflow."""
    return LogSumExp.apply(a, axis=axis, keepdims=keepdims)
