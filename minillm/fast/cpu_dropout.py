"""Dropout's compare-and-scale as row-block kernels over minillm's threads.

The keep-mask is drawn exactly as the reference draws it (``backend.keep_mask``, in this thread
and in order), so a seed gives the same mask whichever path runs, and switching the fast layer
off does not change a training run. Only the scaling is blocked: x * scale, then times the mask,
the reference's arithmetic, so the results are bitwise equal.
"""
from __future__ import annotations

import numpy as np

from ..backend import keep_mask
from ..ops.dropout import Dropout
from .dispatch import numpy_float, register
from .threads import for_each_row_block


def _scale_and_mask(x, keep, scale):
    out = np.empty_like(x)

    def block(x, keep, out):
        np.multiply(x, scale, out=out)
        out *= keep

    for_each_row_block(block, x, keep, out)
    return out


@register(Dropout, accepts=lambda x, *rest: numpy_float(x))
class BlockedDropout(Dropout):
    """``Dropout`` with the same mask, multiplied in cache-sized blocks."""

    def forward(self, x, p=0.5):
        self.keep = keep_mask(x.shape, p, np)
        self.scale = x.dtype.type(1.0 / (1.0 - p))
        return _scale_and_mask(x, self.keep, self.scale)

    def backward(self, grad):
        return _scale_and_mask(grad, self.keep, self.scale)
