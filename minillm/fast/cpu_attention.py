"""Attention on the CPU: products on minillm's threads, the softmax in place, no subnormals.

The reference (``ops/attention.py``) makes a new (batch, heads, q_len, k_len) array at every
step of its formula. At T5's sizes those are the largest arrays of a step, so here each step
after the first product updates the same buffer: scale, bias, mask, softmax in forward, and
dp -> ds in backward. The probabilities and ds are then flushed of subnormal floats
(``subnormals.py``): both are inputs of the next matrix products, and exponentially small
probabilities are where subnormals come from. Results agree with the reference within float32
rounding (split products; flushed entries differ by less than 1.2e-38).
"""
from __future__ import annotations

import numpy as np

from ..backend import keep_mask
from ..ops.attention import Attention, allowed_positions, mask_for_backward
from ..ops.elementwise import sum_to
from .dispatch import numpy_float, register
from .subnormals import flush_subnormals
from .threads import matmul


def softmax_in_place(x, axis=-1):
    """Softmax computed in x's own buffer (x is overwritten): for scores nobody else holds."""
    x -= x.max(axis=axis, keepdims=True)
    np.exp(x, out=x)
    x /= x.sum(axis=axis, keepdims=True)
    return x


@register(Attention, accepts=lambda q, k, v, *rest: numpy_float(q) and numpy_float(k) and numpy_float(v))
class InPlaceAttention(Attention):
    """``Attention`` computed in one scores buffer, on minillm's threads."""

    def forward(self, q, k, v, bias=None, mask=None, causal=False, scale=1.0, dropout_p=0.0):
        if q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
            return super().forward(q, k, v, bias, mask, causal, scale, dropout_p)  # its error
        self.q, self.k, self.v, self.scale = q, k, v, scale
        self.bias_shape = None if bias is None else bias.shape
        s = matmul(q, k.swapaxes(-1, -2))  # a fresh array: every later step updates it in place
        if scale != 1.0:
            s *= scale
        if bias is not None:
            s += bias
        allowed = allowed_positions(np, s.shape, mask, causal)
        self.allowed = mask_for_backward(allowed)
        if allowed is not None:
            np.copyto(s, np.finfo(s.dtype).min, where=~allowed)
        self.p = flush_subnormals(softmax_in_place(s, -1))
        self.keep = None
        if dropout_p > 0:
            self.keep = keep_mask(self.p.shape, dropout_p, np) * self.p.dtype.type(1.0 / (1.0 - dropout_p))
            return matmul(self.p * self.keep, v)
        return matmul(self.p, v)

    def backward(self, grad):
        # The reference's rule (ops/attention.py), with ds built in dp's buffer.
        p = self.p
        p_used = p if self.keep is None else p * self.keep
        dv = sum_to(matmul(p_used.swapaxes(-1, -2), grad), self.v.shape) if self.needs_input_grad[2] else None
        dp = matmul(grad, self.v.swapaxes(-1, -2))
        if self.keep is not None:
            dp *= self.keep
        row = (dp * p).sum(axis=-1, keepdims=True)
        dp -= row
        dp *= p
        ds = flush_subnormals(dp)
        if self.allowed is not None:
            ds = np.where(self.allowed, ds, 0)
        dbias = sum_to(ds, self.bias_shape) if self.bias_shape is not None and self.needs_input_grad[3] else None
        if self.scale != 1.0:
            ds = ds * self.scale  # not in place: dbias may be ds itself (sum_to returns it unchanged)
        dq = sum_to(matmul(ds, self.k), self.q.shape) if self.needs_input_grad[0] else None
        dk = sum_to(matmul(ds.swapaxes(-1, -2), self.q), self.k.shape) if self.needs_input_grad[1] else None
        return dq, dk, dv, dbias, None
