"""Fused attention: softmax(scale * q k^T + bias, masked) v, with a hand-derived backward.

This keeps the probabilities for backward. (The fast layer has a CPU version that works in place
and on minillm's threads, ``fast/cpu_attention.py``, and a FlashAttention-style version on
minillm's own CUDA kernels that keeps one logsumexp per query row instead: ``fast/cuda_ops.py``.)
"""
from __future__ import annotations

import numpy as np

from ..autograd import Function, Tensor
from ..backend import get_array_module, keep_mask
from .elementwise import sum_to
from .softmax import softmax_array


class Attention(Function):
    """softmax(scale * q k^T + bias, masked) v, with the probabilities kept for backward."""

    def forward(self, q, k, v, bias=None, mask=None, causal=False, scale=1.0, dropout_p=0.0):
        xp = get_array_module(q)
        if q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
            raise ValueError(f"attention: q {q.shape}, k {k.shape}, v {v.shape} do not fit together")
        self.q, self.k, self.v, self.scale = q, k, v, scale
        self.bias_shape = None if bias is None else bias.shape
        s = scale * (q @ k.swapaxes(-1, -2))  # (batch, heads, q_len, k_len)
        if bias is not None:
            s = s + bias
        allowed = allowed_positions(xp, s.shape, mask, causal)
        self.allowed = mask_for_backward(allowed)
        if allowed is not None:
            # The most negative float, not -inf: a fully masked row then becomes uniform instead of
            # NaN (Hugging Face T5 does the same), and never matters for the loss.
            s = xp.where(allowed, s, xp.finfo(s.dtype).min)
        self.p = softmax_array(s, -1)
        self.keep = None
        if dropout_p > 0:  # dropout on the attention probabilities, as T5 does in training
            self.keep = keep_mask(self.p.shape, dropout_p, xp) * self.p.dtype.type(1.0 / (1.0 - dropout_p))
            return (self.p * self.keep) @ v
        return self.p @ v

    def backward(self, grad):
        # o = p v,  p = softmax(s),  s = scale q k^T + bias:
        #   dv = p^T do;  dp = do v^T;  ds = p * (dp - rowsum(dp * p));
        #   dq = scale ds k;  dk = scale ds^T q;  dbias = ds summed to bias's shape.
        # Masked scores were replaced by a constant, so ds = 0 there: no gradient leaks through a mask.
        # With dropout, o = (p * keep) v: dv uses the dropped probabilities and dp is masked too.
        p = self.p
        p_used = p if self.keep is None else p * self.keep
        dv = sum_to(p_used.swapaxes(-1, -2) @ grad, self.v.shape) if self.needs_input_grad[2] else None
        dp = grad @ self.v.swapaxes(-1, -2)
        if self.keep is not None:
            dp = dp * self.keep
        ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True))
        if self.allowed is not None:  # a fully masked row has p uniform, not 0: zero it explicitly
            ds = get_array_module(ds).where(self.allowed, ds, 0)
        dbias = sum_to(ds, self.bias_shape) if self.bias_shape is not None and self.needs_input_grad[3] else None
        ds = self.scale * ds
        dq = sum_to(ds @ self.k, self.q.shape) if self.needs_input_grad[0] else None
        dk = sum_to(ds.swapaxes(-1, -2) @ self.q, self.k.shape) if self.needs_input_grad[1] else None
        return dq, dk, dv, dbias, None


def allowed_positions(xp, shape, mask, causal):
    """Boolean (…, q_len, k_len) array of the positions a query may attend to, or None for all."""
    allowed = None
    if mask is not None:
        if mask.dtype != bool:
            raise TypeError(f"attention: mask must be boolean (True = attend), got {mask.dtype}")
        allowed = mask
    if causal:
        q_len, k_len = shape[-2], shape[-1]
        # Query i (of the last q_len positions) sees keys up to its own position.
        tri = xp.tril(xp.ones((q_len, k_len), dtype=bool), k=k_len - q_len)
        allowed = tri if allowed is None else allowed & tri
    return allowed


def mask_for_backward(allowed):
    """What backward must keep of ``allowed``: None, unless some query row has no allowed key.

    A masked score becomes the most negative float, so in a row with at least one allowed key
    its probability is exactly 0, and so is its ds = p * (...): nothing to keep. A row with no
    allowed key at all (an all-padding input) has every score equal, so p is uniform, not 0,
    and backward must zero that row's ds explicitly: then the whole mask is kept.
    """
    if allowed is None:
        return None
    every_row_sees_a_key = bool(allowed.any(axis=-1).all())
    return None if every_row_sees_a_key else allowed


# ---------------------------------------------------------------------------------- API


def scaled_dot_product_attention(q, k, v, bias=None, mask=None, causal: bool = False,
                                 scale: float | None = None, dropout_p: float = 0.0) -> Tensor:
    """Attention over (batch, heads, len, d_head) tensors.

    Args:
        bias: additive scores broadcastable to (batch, heads, q_len, k_len), e.g. T5's relative
            position bias; it receives a gradient.
        mask: boolean, broadcastable to the scores, True where attending is allowed
            (e.g. a (batch, 1, 1, k_len) key padding mask).
        causal: forbid attending to later positions.
        scale: multiplies q k^T; defaults to 1/sqrt(d_head). T5 passes 1.0.
        dropout_p: probability of dropping an attention weight (training only; seeded).
    """
    d = q.shape[-1]
    scale = 1.0 / float(np.sqrt(d)) if scale is None else float(scale)
    mask = mask.data if isinstance(mask, Tensor) else mask
    return Attention.apply(q, k, v, bias, mask, causal=causal, scale=scale, dropout_p=float(dropout_p))
