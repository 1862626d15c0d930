"""Dropout: zero each activation with probability p during training, and rescale the rest."""
from __future__ import annotations

from ..autograd import Function, Tensor
from ..backend import get_array_module, keep_mask


class Dropout(Function):
    """Inverted dropout with a seeded keep-mask (``backend.keep_mask``)."""

    def forward(self, x, p=0.5):
        # Keep with probability 1-p and scale the kept values by 1/(1-p), so that E[y] = x and
        # nothing needs rescaling at evaluation time.
        self.keep = keep_mask(x.shape, p, get_array_module(x))
        self.scale = x.dtype.type(1.0 / (1.0 - p))
        return x * self.scale * self.keep

    def backward(self, grad):
        # y = x * m with m = keep / (1 - p) a constant, so dx = g * m.
        return grad * self.scale * self.keep


def dropout(x, p: float = 0.5, training: bool = True) -> Tensor:
    """Zero each element with probability ``p`` (seeded by ``manual_seed``); identity when not training."""
    if not 0 <= p < 1:
        raise ValueError(f"dropout: p must be in [0, 1), got {p}")
    if not training or p == 0:
        return x
    return Dropout.apply(x, p=p)
