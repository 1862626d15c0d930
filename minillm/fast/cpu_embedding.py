"""The embedding gradient as sort + segmented sum, instead of NumPy's slow ``add.at``.

The reference scatter-adds each position's gradient into its token's row with
``np.add.at(dW, ids, g)``, which NumPy runs one element at a time. Sorting the positions by
token and summing each token's run of rows with ``np.add.reduceat`` gives the same sums several
times faster. They are not added in the same order (NumPy's reduction loop pairs rows up), so
they agree with the reference within float32 rounding, not bitwise.
"""
from __future__ import annotations

import numpy as np

from ..ops.embedding import Embedding
from .dispatch import numpy_float, register


@register(Embedding, accepts=lambda weight, ids: numpy_float(weight))
class SortedEmbedding(Embedding):
    """``Embedding`` whose backward sums each token's rows in one ``reduceat`` run."""

    def backward(self, grad):
        gw = np.zeros(self.weight_shape, dtype=grad.dtype)
        flat_ids = self.ids.reshape(-1)
        flat_grad = grad.reshape(-1, self.weight_shape[1])
        order = np.argsort(flat_ids, kind="stable")
        sorted_ids = flat_ids[order]
        starts = np.flatnonzero(np.concatenate(([True], sorted_ids[1:] != sorted_ids[:-1])))
        if len(order):
            gw[sorted_ids[starts]] = np.add.reduceat(flat_grad[order], starts, axis=0)
        return gw, None
