"""T5's multi-head attention with relative position bias and a key/value cache.

Shapes:  hidden (batch, len, d_model) -> q, k, v (batch, heads, len, d_kv) -> out (batch, len, d_model).

T5 adds no absolute position embedding. Instead, the first layer of each stack learns a scalar per
head for each *bucket* of relative distance (key position - query position), adds it to the
attention scores, and every later layer reuses that same bias. It also leaves out the usual
1/sqrt(d_kv) scaling (the initialisation of ``q`` absorbs it).
"""
from __future__ import annotations

import math

import numpy as np

from .. import ops
from ..autograd import Tensor, is_grad_enabled
from ..backend import get_array_module
from .layers import Embedding, Linear
from .module import Module


def relative_position_bucket(relative_position, bidirectional: bool = True, num_buckets: int = 32,
                             max_distance: int = 128):
    """Map relative positions (key - query) to bucket ids, exactly as T5 does.

    Half the buckets (all of them in the causal case) hold small distances exactly; the rest grow
    logarithmically up to ``max_distance``, beyond which everything shares the last bucket.
    Bidirectional (encoder): positive offsets (keys to the right) use the upper half of the buckets.
    Causal (decoder): only keys at or before the query exist, so distances are -min(rel, 0).
    Reference: Raffel et al. 2020, section 2.1; Mesh TensorFlow's ``_relative_position_bucket``.
    """
    xp = get_array_module(relative_position)
    rel = relative_position.astype(np.int64)
    buckets, total_buckets = xp.zeros_like(rel), num_buckets
    if bidirectional:
        num_buckets //= 2
        buckets += (rel > 0).astype(np.int64) * num_buckets
        distance = xp.abs(rel)
    else:
        distance = -xp.minimum(rel, 0)
    max_exact = num_buckets // 2
    if max_exact < 1 or max_distance <= max_exact:  # log(d / max_exact) / log(max_distance / max_exact)
        raise ValueError(f"relative_position_bucket: {'bidirectional' if bidirectional else 'causal'} buckets need "
                         f"max_exact = num_buckets // {4 if bidirectional else 2} >= 1 and max_distance > max_exact; "
                         f"got num_buckets={total_buckets}, max_distance={max_distance}")
    is_small = distance < max_exact
    # log-spaced buckets, computed in float32 like the reference implementation so that values
    # on a bucket boundary round the same way.
    scaled = (xp.log(xp.maximum(distance, 1).astype(np.float32) / np.float32(max_exact))
              / np.float32(math.log(max_distance / max_exact)) * np.float32(num_buckets - max_exact))
    large = xp.minimum(max_exact + scaled.astype(np.int64), num_buckets - 1)
    return buckets + xp.where(is_small, distance, large)


class MultiHeadAttention(Module):
    """T5Attention: projections ``q, k, v, o`` (no biases) and an optional relative position bias.

    Args:
        d_model, d_kv, num_heads: sizes; inner dimension is num_heads * d_kv.
        is_decoder: the bias is causal (one-directional) in the decoder.
        has_relative_attention_bias: only the first layer of a stack owns the bias table.
    """

    def __init__(self, d_model: int, d_kv: int, num_heads: int, is_decoder: bool = False,
                 has_relative_attention_bias: bool = False, num_buckets: int = 32,
                 max_distance: int = 128, dropout: float = 0.0):
        super().__init__()
        inner = num_heads * d_kv
        self.d_model, self.d_kv, self.num_heads = d_model, d_kv, num_heads
        self.is_decoder, self.num_buckets, self.max_distance = is_decoder, num_buckets, max_distance
        self.dropout = dropout
        # T5's initialisation (see nn/init.py); q's std folds in the missing 1/sqrt(d_kv).
        self.q = Linear(d_model, inner, bias=False, std=(d_model * d_kv) ** -0.5)
        self.k = Linear(d_model, inner, bias=False, std=d_model ** -0.5)
        self.v = Linear(d_model, inner, bias=False, std=d_model ** -0.5)
        self.o = Linear(inner, d_model, bias=False, std=inner ** -0.5)
        if has_relative_attention_bias:
            self.relative_attention_bias = Embedding(num_buckets, num_heads, std=d_model ** -0.5)
        else:
            self.relative_attention_bias = None

    def compute_bias(self, q_len: int, k_len: int, offset: int = 0) -> Tensor:
        """The (1, heads, q_len, k_len) bias for queries at positions offset..offset+q_len-1."""
        if self.relative_attention_bias is None:
            raise RuntimeError("compute_bias: this attention layer has no relative_attention_bias")
        xp = get_array_module(self.relative_attention_bias.weight.data)
        query_pos = xp.arange(offset, offset + q_len)[:, None]
        key_pos = xp.arange(k_len)[None, :]
        buckets = relative_position_bucket(key_pos - query_pos, bidirectional=not self.is_decoder,
                                           num_buckets=self.num_buckets, max_distance=self.max_distance)
        values = self.relative_attention_bias(buckets)  # (q_len, k_len, heads)
        return ops.permute(values, (2, 0, 1)).reshape(1, self.num_heads, q_len, k_len)

    def _split_heads(self, x: Tensor) -> Tensor:
        batch, length, _ = x.shape  # (batch, len, heads*d_kv) -> (batch, heads, len, d_kv)
        return x.reshape(batch, length, self.num_heads, self.d_kv).permute(0, 2, 1, 3)

    def forward(self, hidden: Tensor, key_value_states: Tensor | None = None, bias: Tensor | None = None,
                mask=None, causal: bool = False, cache: dict | None = None) -> Tensor:
        """Attend from ``hidden`` to itself (self-attention) or to ``key_value_states`` (cross).

        Args:
            bias: additive (1 or batch, heads, q_len, k_len) scores, e.g. from ``compute_bias``.
            mask: boolean array broadcastable to (batch, heads, q_len, k_len), True = attend.
            causal: forbid attending to later positions (decoder self-attention without a cache).
            cache: a dict kept across decoding steps. Self-attention appends this step's keys and
                values to ``cache["k"]``/``cache["v"]``; cross-attention computes the encoder's keys
                and values once and reuses them.
        """
        batch, q_len, _ = hidden.shape
        q = self._split_heads(self.q(hidden))
        if key_value_states is None:  # self-attention
            k, v = self._split_heads(self.k(hidden)), self._split_heads(self.v(hidden))
            if cache is not None:
                k, v = _extend_cache(cache, "k", k), _extend_cache(cache, "v", v)
        elif cache is not None and "k" in cache:  # cross-attention, keys computed at step 0
            k, v = cache["k"], cache["v"]
        else:
            k = self._split_heads(self.k(key_value_states))
            v = self._split_heads(self.v(key_value_states))
            if cache is not None:
                cache["k"], cache["v"] = k, v
        out = ops.scaled_dot_product_attention(q, k, v, bias=bias, mask=mask, causal=causal, scale=1.0,
                                               dropout_p=self.dropout if self.training else 0.0)
        out = out.permute(0, 2, 1, 3).reshape(batch, q_len, self.num_heads * self.d_kv)
        return self.o(out)


def _extend_cache(cache: dict, name: str, new: Tensor) -> Tensor:
    """Append this step's keys (or values) to ``cache[name]`` along the length axis; return them all.

    Concatenating would copy every past key at every step, quadratic in the output length. When
    no gradient is needed (decoding), the keys live instead in a buffer with room to spare,
    doubled when full, and ``cache[name]`` is a view of its filled part. A cache whose entry was
    replaced (beam search reorders it) gets a new buffer.
    """
    past = cache.get(name)
    if past is None:
        full = new
    elif is_grad_enabled() and (past.requires_grad or new.requires_grad):
        full = ops.concat([past, new], axis=2)
    else:
        buffer = cache.get(name + "_buffer")
        length, total = past.shape[2], past.shape[2] + new.shape[2]
        if buffer is None or past.data.base is not buffer or buffer.shape[2] < total:
            xp = get_array_module(past.data)
            shape = past.shape[:2] + (max(2 * total, 16),) + past.shape[3:]
            buffer = xp.empty(shape, dtype=past.data.dtype)
            buffer[:, :, :length] = past.data
            cache[name + "_buffer"] = buffer
        buffer[:, :, length:total] = new.data
        full = Tensor(buffer[:, :, :total])
    cache[name] = full
    return full
