"""Differentiable ops, one file per family, and the Tensor methods that call them.

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
from ..autograd import Tensor
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


def _compare(op):
    def method(self, other):
        other = other.data if isinstance(other, Tensor) else other
        return Tensor(op(self.data, other))
    return method


def _attach_tensor_methods():
    """Give Tensor its Python operators and method forms (``x + y``, ``x.sum()``, ``x.T``...)."""
    T = Tensor
    T.__add__ = lambda a, b: add(a, b)
    T.__radd__ = lambda a, b: add(b, a)
    T.__sub__ = lambda a, b: sub(a, b)
    T.__rsub__ = lambda a, b: sub(b, a)
    T.__mul__ = lambda a, b: mul(a, b)
    T.__rmul__ = lambda a, b: mul(b, a)
    T.__truediv__ = lambda a, b: div(a, b)
    T.__rtruediv__ = lambda a, b: div(b, a)
    T.__neg__ = lambda a: neg(a)
    T.__pow__ = lambda a, b: pow(a, b)
    T.__rpow__ = lambda a, b: pow(b, a)
    T.__matmul__ = lambda a, b: matmul(a, b)
    T.__rmatmul__ = lambda a, b: matmul(b, a)
    T.__getitem__ = lambda a, index: getitem(a, index)
    T.__lt__ = _compare(lambda x, y: x < y)
    T.__le__ = _compare(lambda x, y: x <= y)
    T.__gt__ = _compare(lambda x, y: x > y)
    T.__ge__ = _compare(lambda x, y: x >= y)
    T.eq = _compare(lambda x, y: x == y)
    T.ne = _compare(lambda x, y: x != y)
    T.T = property(lambda a: permute(a, tuple(reversed(range(a.ndim)))))
    for name, fn in [("exp", exp), ("log", log), ("sqrt", sqrt), ("tanh", tanh),
                     ("sigmoid", sigmoid), ("relu", relu), ("gelu", gelu), ("sum", sum),
                     ("mean", mean), ("max", max), ("var", var), ("logsumexp", logsumexp),
                     ("reshape", reshape), ("transpose", transpose), ("permute", permute),
                     ("broadcast_to", broadcast_to), ("clip", clip), ("softmax", softmax),
                     ("log_softmax", log_softmax), ("matmul", matmul), ("split", split)]:
        setattr(T, name, fn)
    T.view = reshape


_attach_tensor_methods()
