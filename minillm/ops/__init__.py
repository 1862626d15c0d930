"""Differentiable ops, one file per family; Tensor's operators (``x + y``, ``x.sum()``) call them.

    elementwise.py  add sub mul div neg pow exp log sqrt tanh sigmoid relu where maximum minimum clip
    gelu.py         gelu gated_gelu
    reduce.py       sum mean max var logsumexp
    shape.py        reshape transpose permute broadcast_to concat stack split pad getitem
    linalg.py       matmul linear
    softmax.py      softmax log_softmax cross_entropy (fused, hand-derived backward)
    norms.py        rms_norm layer_norm
    dropout.py      dropout
    embedding.py    embedding
    attention.py    scaled_dot_product_attention (fused)

Every op here is its reference formula (docs/gradients.md), written on whole arrays. Faster
versions of some ops live in ``minillm/fast/`` and are proven equal by tests/test_fast_vs_reference.py.
"""
import sys

from ..autograd import attach_ops
from .elementwise import (add, clip, div, exp, log, maximum, minimum, mul, neg, pow, relu, sigmoid, sqrt,
                          sub, sum_to, tanh, where)
from .gelu import gated_gelu, gelu
from .linalg import linear, matmul
from .attention import scaled_dot_product_attention
from .dropout import dropout
from .embedding import embedding
from .norms import layer_norm, rms_norm
from .softmax import cross_entropy, log_softmax, softmax
from .reduce import logsumexp, max, mean, sum, var
from .shape import broadcast_to, concat, getitem, pad, permute, reshape, split, stack, transpose

__all__ = [
    "add", "sub", "mul", "div", "neg", "pow", "exp", "log", "sqrt", "tanh", "sigmoid", "relu",
    "gelu", "gated_gelu", "where", "maximum", "minimum", "clip", "sum_to",
    "sum", "mean", "max", "var", "logsumexp",
    "reshape", "transpose", "permute", "broadcast_to", "concat", "stack", "split", "pad", "getitem",
    "matmul", "linear",
    "softmax", "log_softmax", "cross_entropy", "rms_norm", "layer_norm", "dropout", "embedding",
    "scaled_dot_product_attention",
]


attach_ops(sys.modules[__name__])  # Tensor's operators (autograd.py, "Python operators") call these functions
