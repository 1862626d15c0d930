"""Embedding: a table lookup, whose gradient scatters back into the looked-up rows."""
from __future__ import annotations

from ..autograd import Function, Tensor
from ..backend import get_array_module


class Embedding(Function):
    """Row lookup W[ids] with a scatter-add gradient."""

    def forward(self, weight, ids):
        xp = get_array_module(weight)
        ids = xp.asarray(ids)  # NumPy ids for a model on the GPU are fine: move them along
        if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= weight.shape[0]):
            raise IndexError(
                f"embedding: ids must be in [0, {weight.shape[0]}), got min {int(ids.min())} "
                f"max {int(ids.max())}"
            )
        self.ids, self.weight_shape = ids, weight.shape
        return xp.take(weight, ids, axis=0)

    def backward(self, grad):
        # out[n] = W[ids[n]]: each row of W receives the sum of the gradients of the positions
        # that looked it up (a scatter-add: a token may appear many times in a batch).
        xp = get_array_module(grad)
        gw = xp.zeros(self.weight_shape, dtype=grad.dtype)
        xp.add.at(gw, self.ids.reshape(-1), grad.reshape(-1, self.weight_shape[1]))
        return gw, None


def embedding(weight, ids) -> Tensor:
    """Rows of ``weight`` (num_embeddings, dim) picked by integer ``ids`` of any shape."""
    ids = ids.data if isinstance(ids, Tensor) else ids
    return Embedding.apply(weight, ids)
