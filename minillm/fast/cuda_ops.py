"""Ops on minillm's own CUDA kernels (kernels/*.cu, launched by ``cuda.py``), for CuPy float32 arrays.

Each class is a fast version of a reference op in ``ops/``, registered with the dispatch: it
runs the hand-written kernel when the arrays fit it and calls the reference formula
(``super()``) otherwise. ``minillm.fast.cuda.enabled()`` must be on (CuPy and a GPU).
"""
from __future__ import annotations

import numpy as np

from ..backend import get_array_module
from ..ops.attention import Attention
from ..ops.linalg import Linear
from . import cuda
from .dispatch import register


def _cuda_float32(*arrays) -> bool:
    """Every array given is a float32 CuPy array, and the kernels can run."""
    present = [a for a in arrays if a is not None and hasattr(a, "dtype")]
    return (bool(present) and all(not isinstance(a, np.ndarray) and a.dtype == np.float32 for a in present)
            and cuda.enabled())


def _gemm(a, b, transpose_a=False, transpose_b=False):
    """op(a) @ op(b) on kernels/matmul.cu; the kernel reads row-major memory, so views are copied."""
    xp = get_array_module(a)
    return cuda.matmul(xp.ascontiguousarray(a), xp.ascontiguousarray(b),
                       transpose_a=transpose_a, transpose_b=transpose_b)


@register(Linear, accepts=lambda x, weight, bias=None: _cuda_float32(x, weight, bias))
class CudaLinear(Linear):
    """``Linear`` with its three GEMMs (y = x W^T, dx = dy W, dW = dy^T x) on the matmul kernel."""

    def forward(self, x, weight, bias=None):
        self.check_shapes(x, weight)
        self.x_shape, self.x2d, self.weight = x.shape, x.reshape(-1, x.shape[-1]), weight
        self.has_bias = bias is not None
        out = _gemm(self.x2d, weight, transpose_b=True)
        if bias is not None:
            out += bias
        return out.reshape(*x.shape[:-1], weight.shape[0])

    def backward(self, grad):
        g2d = grad.reshape(-1, grad.shape[-1])
        gx = _gemm(g2d, self.weight).reshape(self.x_shape) if self.needs_input_grad[0] else None
        gw = _gemm(g2d, self.x2d, transpose_a=True) if self.needs_input_grad[1] else None
        gb = g2d.sum(axis=0) if self.has_bias and self.needs_input_grad[2] else None
        return gx, gw, gb


@register(Attention, accepts=lambda q, k, v, bias=None, mask=None: _cuda_float32(q, k, v, bias))
class CudaAttention(Attention):
    """Attention on kernels/attention.cu (FlashAttention-style): keeps one logsumexp per query row
    instead of the probabilities, and recomputes them in backward."""

    def forward(self, q, k, v, bias=None, mask=None, causal=False, scale=1.0, dropout_p=0.0):
        self.fused = None
        args = _kernel_arguments(q, k, v, bias, mask, causal) if dropout_p == 0 else None
        if args is None:  # a shape or mask the kernel does not take: the reference formula
            return super().forward(q, k, v, bias, mask, causal, scale, dropout_p)
        q, k, v, bias, key_mask = args
        out, lse = cuda.attention_forward(q, k, v, bias=bias, key_mask=key_mask, causal=causal, scale=scale)
        self.fused, self.scale = (q, k, v, bias, key_mask, causal, out, lse), scale
        return out

    def backward(self, grad):
        if self.fused is None:
            return super().backward(grad)
        q, k, v, bias, key_mask, causal, out, lse = self.fused
        dq, dk, dv, dbias = cuda.attention_backward(
            q, k, v, out, lse, get_array_module(grad).ascontiguousarray(grad), bias=bias,
            key_mask=key_mask, causal=causal, scale=self.scale)
        return dq, dk, dv, dbias, None


def _kernel_arguments(q, k, v, bias, mask, causal):
    """Contiguous (q, k, v, bias, key_mask) as the kernel takes them, or None if it cannot.

    The kernel takes a (batch, k_len) key padding mask and a top-left causal mask; T5's masks
    are exactly those shapes.
    """
    if q.shape[-1] not in (32, 64, 128) or q.ndim != 4:
        return None
    batch, heads, q_len, _ = q.shape
    k_len = k.shape[-2]
    if causal and q_len != k_len:
        return None
    xp = get_array_module(q)
    key_mask = None
    if mask is not None:
        if mask.ndim != 4 or mask.shape[1:3] != (1, 1) or mask.shape[-1] != k_len:
            return None
        key_mask = xp.ascontiguousarray(xp.broadcast_to(mask.reshape(mask.shape[0], k_len), (batch, k_len)))
    if bias is not None:
        if bias.shape[-3:] != (heads, q_len, k_len):
            return None
        bias = xp.ascontiguousarray(bias)
    q, k, v = (xp.ascontiguousarray(t) for t in (q, k, v))
    return q, k, v, bias, key_mask
