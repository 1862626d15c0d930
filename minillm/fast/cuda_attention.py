"""The host side of FlashAttention-style attention on ``kernels/attention.cu``.

The kernels never store the (q_len, k_len) score matrix: a forward block holds BR query rows in
shared memory, streams the keys through it in tiles of BC rows, and keeps one logsumexp per query
row, from which the backward recomputes the probabilities (kernels/README.md, "attention.cu:
FlashAttention in fp32", derives both). What is left to the host, here:

* **tiles that fit.** Each head dim has a few compiled (BR, BC) tiles; a kernel's shared memory
  grows with BR, BC and the head dim (``_attention_shared_bytes``), so each launch takes the first
  tile whose kernel fits the device (``_attention_tile``), and ``attention_fits`` tells the op layer
  (``fast/cuda_ops.py``) to use the composed attention when none does;
* **grids.** One block per tile of rows, per head, per batch element: query tiles for the forward
  and the dQ kernel, key tiles for the dK/dV kernels;
* **two backward versions.** ``"two_pass"`` runs a dQ kernel, then a dK/dV kernel (deterministic);
  ``"fa2"`` (FlashAttention-2) runs one kernel per key tile that adds into dQ through atomics.

Loading, compiling and launching are ``cuda.py``'s; so are the shape checks shared with matmul.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from . import cuda  # the GPU backend and the device's limit, looked up on the module at each call
from .cuda import Backend, Launch, ceil_div, check_float32, run

# Must match the MINILLM_ATTENTION_KERNELS lines of kernels/attention.cu: head dim -> the
# (BR query rows, BC key rows) tiles compiled, in order of preference (the first that fits runs).
_ATTENTION_TILES = {32: ((64, 64), (32, 32)), 64: ((64, 64), (32, 32)), 128: ((64, 32), (32, 32))}
_ATTENTION_KINDS = ("forward", "backward_dq", "backward_dkdv", "backward_fa2")
_ATTENTION_BACKWARDS = ("two_pass", "fa2")  # see attention_backward
_ATTENTION_THREADS = 128


def _attention_shared_bytes(kind: str, head_dim: int, br: int, bc: int) -> int:
    """Dynamic shared memory of an attention kernel; mirrors attention_smem_floats in attention.cu."""
    ld = head_dim + 4  # rows padded by four floats: aligned float4 reads without bank conflicts
    floats = {
        "forward": br * ld + 2 * bc * ld + br * (bc + 4),              # Q, K, V, P
        "backward_dq": 2 * br * ld + 2 * bc * ld + br * (bc + 4),      # Q, dO, K, V, dS
        "backward_dkdv": 2 * bc * ld + 2 * br * ld + bc * (br + 4) + 2 * br,  # K, V, Q, dO, P^T/dS^T, lse, D
        "backward_fa2": 2 * bc * ld + 2 * br * ld + bc * (br + 4) + 2 * br,   # the same kernel, plus atomic dQ
    }[kind]
    return 4 * floats


def _attention_tile(kind: str, head_dim: int, shared_limit: int):
    """The first (BR, BC) of ``_ATTENTION_TILES[head_dim]`` whose ``kind`` kernel fits, or None."""
    for br, bc in _ATTENTION_TILES[head_dim]:
        if _attention_shared_bytes(kind, head_dim, br, bc) <= shared_limit:
            return br, bc
    return None


def attention_fits(head_dim: int, shared_limit: int | None = None) -> bool:
    """Whether forward and backward kernels exist for ``head_dim`` and fit the device's shared memory.

    When False, callers use the composed (materialized) attention instead; ``fast/cuda_ops.py`` does.
    """
    if head_dim not in _ATTENTION_TILES:
        return False
    limit = cuda.shared_memory_limit() if shared_limit is None else shared_limit
    return all(_attention_tile(kind, head_dim, limit) is not None for kind in _ATTENTION_KINDS)


def _attention_launch(backend: Backend, kind: str, head_dim: int, grid_rows: int, info, args) -> Launch:
    """The launch of one attention kernel, with the largest tile whose shared memory fits."""
    tile = _attention_tile(kind, head_dim, backend.shared_limit)
    if tile is None:
        smallest = min(_attention_shared_bytes(kind, head_dim, *t) for t in _ATTENTION_TILES[head_dim])
        raise RuntimeError(f"attention_{kind} for head_dim {head_dim} needs at least {smallest} bytes of shared "
                           f"memory per block; this device allows {backend.shared_limit} "
                           "(check attention_fits() first, and use the composed attention)")
    br, bc = tile
    rows = bc if kind in ("backward_dkdv", "backward_fa2") else br  # a block covers BC key rows, or BR query rows
    return Launch("attention.cu", f"attention_{kind}_d{head_dim}_{br}x{bc}",
                  grid=(ceil_div(grid_rows, rows), info.heads, info.batch), block=(_ATTENTION_THREADS, 1, 1),
                  shared_mem=_attention_shared_bytes(kind, head_dim, br, bc), args=args)


class _AttentionArgs(NamedTuple):
    batch: int
    heads: int
    q_len: int
    k_len: int
    head_dim: int
    bias: Any
    bias_batch_stride: np.int64
    key_mask: Any  # uint8 view, or None


def _check_attention(q, k, v, bias, key_mask) -> _AttentionArgs:
    for name, array in (("q", q), ("k", k), ("v", v)):
        check_float32(name, array)
        if array.ndim != 4:
            raise ValueError(f"{name} must be (batch, heads, length, head_dim), got shape {tuple(array.shape)}")
    batch, heads, q_len, head_dim = q.shape
    k_len = k.shape[2]
    if k.shape != (batch, heads, k_len, head_dim) or v.shape != k.shape:
        raise ValueError(f"q {q.shape}, k {k.shape} and v {v.shape} must agree on batch, heads and head_dim, "
                         "and k and v must have the same shape")
    if head_dim not in _ATTENTION_TILES:
        raise ValueError(f"head_dim {head_dim} is not supported; the kernels exist for {sorted(_ATTENTION_TILES)}")
    stride = np.int64(0)
    if bias is not None:
        check_float32("bias", bias)
        if tuple(bias.shape) in ((heads, q_len, k_len), (1, heads, q_len, k_len)):
            stride = np.int64(0)  # one bias shared by the whole batch
        elif tuple(bias.shape) == (batch, heads, q_len, k_len):
            stride = np.int64(heads * q_len * k_len)
        else:
            raise ValueError(f"bias has shape {tuple(bias.shape)}; expected (heads, q_len, k_len) = "
                             f"{(heads, q_len, k_len)} or (batch, heads, q_len, k_len) = {(batch, heads, q_len, k_len)}")
    if key_mask is not None:
        if tuple(key_mask.shape) != (batch, k_len):
            raise ValueError(f"key_mask has shape {tuple(key_mask.shape)}; expected (batch, k_len) = {(batch, k_len)}")
        if key_mask.dtype not in (np.bool_, np.uint8, np.int8) or not key_mask.flags.c_contiguous:
            raise TypeError(f"key_mask must be a C-contiguous bool or uint8 array, got {key_mask.dtype}")
        key_mask = key_mask.view(np.uint8)
    return _AttentionArgs(batch, heads, q_len, k_len, head_dim, bias, stride, key_mask)


def attention_forward(q, k, v, bias=None, key_mask=None, causal: bool = False, scale: float = 1.0):
    """Fused attention forward: softmax(scale * q k^T + bias, masked) v, without materializing it.

    Args:
        q: (batch, heads, q_len, head_dim) float32; head_dim is 32, 64 or 128.
        k, v: (batch, heads, k_len, head_dim) float32.
        bias: additive score bias, (heads, q_len, k_len) shared by the batch (T5's relative
            position bias), or (batch, heads, q_len, k_len).
        key_mask: bool (batch, k_len), True = attend (False = padding).
        causal: query i sees keys j <= i (top-left aligned, like torch's ``is_causal``).
        scale: multiplies q k^T. T5 uses 1.0; the usual choice elsewhere is 1/sqrt(head_dim).

    Returns:
        (out, lse): out (batch, heads, q_len, head_dim) and the row logsumexp of the masked scores,
        lse (batch, heads, q_len), which the backward needs. A row that sees no key at all gets
        out = 0 and lse = +inf (so that the backward's exp(s - lse) is 0 there).
    """
    return _attention_forward(cuda.gpu_backend(), q, k, v, bias, key_mask, causal, scale)


def _attention_forward(backend: Backend, q, k, v, bias, key_mask, causal, scale):
    info = _check_attention(q, k, v, bias, key_mask)
    out = backend.empty(q.shape, np.float32)
    lse = backend.empty(q.shape[:3], np.float32)
    run(backend, _attention_launch(
        backend, "forward", info.head_dim, info.q_len, info,
        args=(q, k, v, info.bias, info.bias_batch_stride, info.key_mask, out, lse,
              np.int32(info.heads), np.int32(info.q_len), np.int32(info.k_len), np.int32(bool(causal)),
              np.float32(scale)),
    ))
    return out, lse


def attention_backward(q, k, v, out, lse, grad_out, bias=None, key_mask=None, causal: bool = False,
                       scale: float = 1.0, version: str = "two_pass"):
    """Gradients of ``attention_forward``, recomputing the probabilities from ``lse``.

    Args:
        q, k, v, bias, key_mask, causal, scale: exactly as given to ``attention_forward``.
        out, lse: what ``attention_forward`` returned.
        grad_out: dL/d(out), same shape as ``out``.
        version: ``"two_pass"`` (a dQ kernel and a dK/dV kernel, each recomputing S and dP;
            deterministic) or ``"fa2"`` (FlashAttention-2's split: one kernel per key tile, dQ
            through atomics, five tile products instead of seven). The default stays
            ``"two_pass"`` until a GPU run measures ``"fa2"`` faster (kernels/README.md).

    Returns:
        (dq, dk, dv, dbias): dbias is dL/d(bias) summed to the bias's own shape (over the batch
        when the bias is shared by it), or None when there is no bias.
    """
    return _attention_backward(cuda.gpu_backend(), q, k, v, out, lse, grad_out, bias, key_mask, causal, scale,
                               version)


def _attention_backward(backend: Backend, q, k, v, out, lse, grad_out, bias, key_mask, causal, scale,
                        version: str = "two_pass"):
    if version not in _ATTENTION_BACKWARDS:
        raise ValueError(f"unknown attention backward {version!r}; choose from {_ATTENTION_BACKWARDS}")
    info = _check_attention(q, k, v, bias, key_mask)
    for name, array, shape in (("out", out, q.shape), ("grad_out", grad_out, q.shape), ("lse", lse, q.shape[:3])):
        check_float32(name, array)
        if tuple(array.shape) != tuple(shape):
            raise ValueError(f"{name} has shape {tuple(array.shape)}; expected {tuple(shape)} (from q {q.shape})")
    dk = backend.empty(k.shape, np.float32)
    dv = backend.empty(v.shape, np.float32)
    dbias = backend.zeros(bias.shape, np.float32) if bias is not None else None  # only visible entries are written
    common = (np.int32(info.heads), np.int32(info.q_len), np.int32(info.k_len), np.int32(bool(causal)),
              np.float32(scale))
    if version == "fa2":
        # D_i = dO_i · O_i up front (FlashAttention-2's preprocessing step, here one array op), then
        # one kernel per key tile writes dK, dV and dbias and adds into the zeroed dQ.
        delta = backend.xp.ascontiguousarray((grad_out * out).sum(axis=-1, dtype=np.float32))
        dq = backend.zeros(q.shape, np.float32)
        run(backend, _attention_launch(
            backend, "backward_fa2", info.head_dim, info.k_len, info,
            args=(q, k, v, info.bias, info.bias_batch_stride, info.key_mask, grad_out, lse, delta, dk, dv, dq,
                  dbias) + common,
        ))
        return dq, dk, dv, dbias
    # dq first: it also writes delta (D_i = rowsum(dO * O)), which dkdv reads.
    delta = backend.empty(q.shape[:3], np.float32)
    dq = backend.empty(q.shape, np.float32)
    run(backend, _attention_launch(
        backend, "backward_dq", info.head_dim, info.q_len, info,
        args=(q, k, v, info.bias, info.bias_batch_stride, info.key_mask, out, grad_out, lse, delta, dq, dbias)
        + common,
    ))
    run(backend, _attention_launch(
        backend, "backward_dkdv", info.head_dim, info.k_len, info,
        args=(q, k, v, info.bias, info.bias_batch_stride, info.key_mask, grad_out, lse, delta, dk, dv) + common,
    ))
    return dq, dk, dv, dbias
