"""Shape ops: reshape, transpose/permute, broadcast_to, concat, stack, split, pad, getitem.

None of these changes a value, so each backward only moves the gradient back to where the value
came from: reshape back, transpose with the inverse permutation, slice the gradient of a concat,
and scatter-add the gradient of an indexing op (an index may pick the same element twice).
"""
from __future__ import annotations

import numpy as np

from ..autograd import Function, Tensor
from ..backend import get_array_module
from .elementwise import sum_to


class Reshape(Function):
    """Same elements, new shape."""

    def forward(self, a, shape=()):
        self.shape = a.shape
        try:
            return a.reshape(shape)
        except ValueError:
            raise ValueError(f"reshape: cannot reshape {a.shape} ({a.size} elements) into {tuple(shape)}") from None

    def backward(self, grad):
        return grad.reshape(self.shape)


class Transpose(Function):
    """Permute the axes."""

    def forward(self, a, axes=None):
        axes = tuple(reversed(range(a.ndim))) if axes is None else tuple(ax % a.ndim for ax in axes)
        if sorted(axes) != list(range(a.ndim)):
            raise ValueError(f"permute: {axes} is not a permutation of the {a.ndim} axes of {a.shape}")
        self.inverse = tuple(np.argsort(axes))
        return a.transpose(axes)

    def backward(self, grad):  # undo the permutation with its inverse
        return grad.transpose(self.inverse)


class BroadcastTo(Function):
    """Repeat along new or size-1 axes."""

    def forward(self, a, shape=()):
        self.shape = a.shape
        try:
            return get_array_module(a).broadcast_to(a, shape)
        except ValueError:
            raise ValueError(f"broadcast_to: cannot broadcast {a.shape} to {tuple(shape)}") from None

    def backward(self, grad):
        return sum_to(grad, self.shape)


class Concat(Function):
    """Join along an existing axis."""

    def forward(self, *arrays, axis=0):
        xp = get_array_module(*arrays)
        ndim = arrays[0].ndim
        self.axis = axis % ndim
        for a in arrays[1:]:
            if a.ndim != ndim or any(
                x != y for i, (x, y) in enumerate(zip(a.shape, arrays[0].shape)) if i != self.axis
            ):
                raise ValueError(f"concat: shapes {[x.shape for x in arrays]} differ outside axis {axis}")
        self.bounds = np.cumsum([a.shape[self.axis] for a in arrays])[:-1]
        return xp.concatenate(arrays, axis=self.axis)

    def backward(self, grad):  # each input gets its own slice of the gradient
        xp = get_array_module(grad)
        return tuple(xp.split(grad, self.bounds, axis=self.axis))


class Stack(Function):
    """Join along a new axis."""

    def forward(self, *arrays, axis=0):
        shapes = {a.shape for a in arrays}
        if len(shapes) != 1:
            raise ValueError(f"stack: all shapes must be equal, got {[a.shape for a in arrays]}")
        self.axis = axis % (arrays[0].ndim + 1)
        return get_array_module(*arrays).stack(arrays, axis=self.axis)

    def backward(self, grad):
        xp = get_array_module(grad)
        return tuple(xp.moveaxis(grad, self.axis, 0))


class Pad(Function):
    """Constant padding."""

    def forward(self, a, pad_width=(), value=0.0):
        self.slices = tuple(slice(before, before + n) for (before, _), n in zip(pad_width, a.shape))
        return get_array_module(a).pad(a, pad_width, constant_values=value)

    def backward(self, grad):  # the padding was constant: only the original region has a gradient
        return grad[self.slices]


def _is_basic_index(index) -> bool:
    """Slices, ints, None and Ellipsis never select an element twice."""
    items = index if isinstance(index, tuple) else (index,)
    return all(isinstance(i, (int, slice, type(None), type(Ellipsis))) for i in items)


class GetItem(Function):
    """Basic or integer-array indexing."""

    def forward(self, a, index=None):
        self.shape, self.dtype, self.index = a.shape, a.dtype, index
        try:
            return a[index]
        except IndexError as err:
            raise IndexError(f"getitem: index {index!r} on shape {a.shape}: {err}") from None

    def backward(self, grad):
        xp = get_array_module(grad)
        full = xp.zeros(self.shape, dtype=grad.dtype)
        if _is_basic_index(self.index):
            full[self.index] = grad  # a view of distinct elements: plain assignment
        else:
            xp.add.at(full, self.index, grad)  # repeated indices must add up
        return full


def _unwrap_index(index):
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, tuple):
        return tuple(i.data if isinstance(i, Tensor) else i for i in index)
    if isinstance(index, list):
        return np.asarray(index)
    return index


def reshape(a, *shape) -> Tensor:
    """View ``a`` with a new shape (one entry may be -1)."""
    shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    return Reshape.apply(a, shape=shape)


def transpose(a, axis0: int = -2, axis1: int = -1) -> Tensor:
    """Swap two axes (the last two by default)."""
    axes = list(range(a.ndim))
    axes[axis0], axes[axis1] = axes[axis1], axes[axis0]
    return Transpose.apply(a, axes=tuple(axes))


def permute(a, *axes) -> Tensor:
    """Reorder all axes, like ``numpy.transpose(a, axes)``."""
    axes = tuple(axes[0]) if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
    return Transpose.apply(a, axes=axes)


def broadcast_to(a, shape) -> Tensor:
    """Repeat ``a`` along new or size-1 axes to ``shape`` (its backward sums the copies)."""
    return BroadcastTo.apply(a, shape=tuple(shape))


def concat(tensors, axis: int = 0) -> Tensor:
    """Join tensors along an existing axis."""
    return Concat.apply(*tensors, axis=axis)


def stack(tensors, axis: int = 0) -> Tensor:
    """Join equally shaped tensors along a new axis."""
    return Stack.apply(*tensors, axis=axis)


def split(a, sections, axis: int = 0) -> list[Tensor]:
    """Split into pieces: ``sections`` is a piece size (int) or a list of sizes, like torch.split."""
    n = a.shape[axis]
    sizes = [sections] * (n // sections) + ([n % sections] if n % sections else []) \
        if isinstance(sections, int) else list(sections)
    if sum(sizes) != n:
        raise ValueError(f"split: sizes {sizes} do not add up to {n}, the length of axis {axis}")
    pieces, start = [], 0
    prefix = (slice(None),) * (axis % a.ndim)
    for size in sizes:
        pieces.append(getitem(a, prefix + (slice(start, start + size),)))
        start += size
    return pieces


def pad(a, pad_width, value: float = 0.0) -> Tensor:
    """Constant padding; ``pad_width`` is ((before, after), ...) per axis, as in numpy.pad."""
    pad_width = tuple(tuple(p) for p in pad_width)
    if len(pad_width) != a.ndim:
        raise ValueError(f"pad: pad_width has {len(pad_width)} entries for a tensor of shape {a.shape}")
    return Pad.apply(a, pad_width=pad_width, value=value)


def getitem(a, index) -> Tensor:
    """``a[index]`` with basic (slices, ints) or integer-array indexing."""
    return GetItem.apply(a, index=_unwrap_index(index))
