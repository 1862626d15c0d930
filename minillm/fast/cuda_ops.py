"""Ops on minillm's own CUDA kernels (kernels/*.cu, launched by ``cuda.py`` and ``cuda_attention.py``),
for CuPy float32 arrays.

Each class is a fast version of a reference op in ``ops/``, registered with the dispatch: it
runs the hand-written kernel when the arrays fit it and calls the reference formula
(``super()``) otherwise. ``minillm.fast.cuda.enabled()`` must be on (CuPy and a GPU).
"""
from __future__ import annotations

import numpy as np

from ..backend import get_array_module, is_cupy_array
from ..ops.attention import Attention
from ..ops.linalg import Linear
from . import cuda, cuda_attention
from .dispatch import register
from .gemm_linear import GemmLinear


def _cuda_float32(*arrays) -> bool:
    """Every array given is a float32 CuPy array, and the kernels can run.

    Anything else (float64 for a gradient check, float16, NumPy arrays) takes the reference
    formula on its own ``xp``: the kernels are written for float32 only.
    """
    present = [a for a in arrays if a is not None and hasattr(a, "dtype")]
    return (bool(present) and all(is_cupy_array(a) and a.dtype == np.float32 for a in present)
            and cuda.enabled())


def _gemm(a, b, transpose_a=False, transpose_b=False):
    """op(a) @ op(b) on kernels/matmul.cu; the kernel reads row-major memory, so views are copied."""
    xp = get_array_module(a)
    return cuda.matmul(xp.ascontiguousarray(a), xp.ascontiguousarray(b),
                       transpose_a=transpose_a, transpose_b=transpose_b)


@register(Linear, accepts=lambda x, weight, bias=None: _cuda_float32(x, weight, bias))
class CudaLinear(GemmLinear):
    """``Linear``'s three GEMMs (``gemm_linear.py``) on the matmul kernel."""

    gemm = staticmethod(_gemm)


@register(Attention, accepts=lambda q, k, v, bias=None, mask=None: _cuda_float32(q, k, v, bias))
class CudaAttention(Attention):
    """Attention on kernels/attention.cu (FlashAttention-style): keeps one logsumexp per query row
    instead of the probabilities, and recomputes them in backward.

    Fully masked query rows (no key visible) get the reference's answer, not the kernel's: the
    reference (``ops/attention.py``, like Hugging Face T5) fills masked scores with the most
    negative float, so such a row's softmax is uniform over all k_len keys: out = mean of V, dV
    receives grad_out / k_len from it, and q, k and the bias receive nothing. The kernels return
    out = 0 there (and P = 0 in backward, so q, k, bias already get nothing); ``_dead_rows`` finds
    those rows from the mask alone, without a device-to-host copy, and the two fix-ups below add
    the rest. kernels/README.md, "Fully masked rows", has the derivation.
    """

    def forward(self, q, k, v, bias=None, mask=None, causal=False, scale=1.0, dropout_p=0.0):
        self.fused = None
        args = _kernel_arguments(q, k, v, bias, mask, causal) if dropout_p == 0 else None
        if args is None:  # a shape, mask or device the kernel does not take: the reference formula
            return super().forward(q, k, v, bias, mask, causal, scale, dropout_p)
        q, k, v, bias, key_mask = args
        out, lse = cuda_attention.attention_forward(q, k, v, bias=bias, key_mask=key_mask, causal=causal,
                                                    scale=scale)
        dead = _dead_rows(key_mask, q.shape[-2], causal)
        self.fused, self.scale, self.dead = (q, k, v, bias, key_mask, causal, out, lse), scale, dead
        if dead is None:
            return out
        xp = get_array_module(out)
        return xp.where(dead[:, None, :, None], v.mean(axis=-2, keepdims=True), out)

    def backward(self, grad):
        if self.fused is None:
            return super().backward(grad)
        q, k, v, bias, key_mask, causal, out, lse = self.fused
        xp = get_array_module(grad)
        grad = xp.ascontiguousarray(grad)
        dq, dk, dv, dbias = cuda_attention.attention_backward(
            q, k, v, out, lse, grad, bias=bias, key_mask=key_mask, causal=causal, scale=self.scale)
        if self.dead is not None:  # a dead row's P is 1/k_len for every key: dV_j += sum_i dO_i / k_len
            dead_grad = xp.where(self.dead[:, None, :, None], grad, 0).sum(axis=-2, keepdims=True)
            dv += dead_grad / v.shape[-2]
        return dq, dk, dv, dbias, None


def _dead_rows(key_mask, q_len, causal):
    """Boolean (batch, q_len): query rows that see no key, or None without a key mask.

    Without causal masking a row of batch b is dead when key_mask[b] is all False; with it (the
    kernel's causal needs q_len == k_len) row i is dead when keys 0..i are all masked.
    """
    if key_mask is None:
        return None
    xp = get_array_module(key_mask)
    if causal:
        return xp.cumsum(key_mask, axis=1, dtype=np.int32)[:, :q_len] == 0
    return xp.broadcast_to(~key_mask.any(axis=1, keepdims=True), (key_mask.shape[0], q_len))


def _kernel_arguments(q, k, v, bias, mask, causal):
    """Contiguous (q, k, v, bias, key_mask) as the kernel takes them, or None if it cannot.

    The kernel takes a (batch, k_len) boolean key padding mask and a top-left causal mask; T5's
    masks are exactly those shapes. It also needs kernels for the head dim that fit this GPU's
    shared memory (``cuda_attention.attention_fits``), and at least one key.
    """
    if q.ndim != 4 or k.ndim != 4 or v.shape != k.shape or not cuda_attention.attention_fits(q.shape[-1]):
        return None
    batch, heads, q_len, _ = q.shape
    k_len = k.shape[-2]
    if k_len == 0 or k.shape[:2] != (batch, heads) or (causal and q_len != k_len):
        return None
    xp = get_array_module(q)
    key_mask = None
    if mask is not None:
        if mask.dtype != np.bool_ or mask.ndim != 4 or mask.shape[1:3] != (1, 1) or mask.shape[-1] != k_len:
            return None
        key_mask = xp.ascontiguousarray(xp.broadcast_to(mask.reshape(mask.shape[0], k_len), (batch, k_len)))
    if bias is not None:
        if bias.ndim not in (3, 4) or bias.shape[-3:] != (heads, q_len, k_len) or (
                bias.ndim == 4 and bias.shape[0] not in (1, batch)):
            return None
        bias = xp.ascontiguousarray(bias)
    q, k, v = (xp.ascontiguousarray(t) for t in (q, k, v))
    return q, k, v, bias, key_mask
