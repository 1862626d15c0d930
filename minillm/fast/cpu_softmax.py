"""Cross-entropy whose gradient holds no subnormal floats (the fast version of ops.CrossEntropy).

The logits gradient is softmax(z) - q, scaled by 1 / (number of target tokens). Where a model
is confident, most of its softmax entries are exponentially small, and after the scaling many
fall below float32's smallest normal number. That gradient is the next matrix product's input
(dW = dz^T h and dh = dz W for the output projection), and subnormal inputs send OpenBLAS's
SGEMM down a path several times slower (docs/speed.md). Flushing them to zero changes each
entry by less than 1.2e-38, far below float32 rounding of the entries near 1.
"""
from __future__ import annotations

from ..ops.softmax import CrossEntropy
from .dispatch import numpy_float, register
from .subnormals import flush_subnormals


@register(CrossEntropy, accepts=lambda logits, *rest: numpy_float(logits))
class FlushedCrossEntropy(CrossEntropy):
    """``CrossEntropy``: the reference gradient, with subnormal entries set to zero."""

    def backward(self, grad):
        dx, _ = super().backward(grad)
        return flush_subnormals(dx), None
