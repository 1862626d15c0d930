"""Reverse-mode automatic differentiation: ``Tensor``, ``Function`` and ``backward``.

The whole engine is three ideas:

1. A ``Tensor`` wraps a raw NumPy/CuPy array (``.data``). When it was produced by an op that needs
   gradients, it remembers that op in ``._ctx``.
2. An op is a ``Function`` subclass with two methods on raw arrays: ``forward(*arrays)`` computes
   the output and saves what the gradient will need; ``backward(grad)`` returns one gradient per
   input (the chain rule: dL/dinput = dL/doutput * doutput/dinput).
3. ``loss.backward()`` sorts the graph topologically (iteratively, so a 100,000-op chain is fine)
   and walks it from the loss back to the leaves, summing gradients into each leaf's ``.grad``.

Gradients are plain arrays (``tensor.grad`` is a NumPy/CuPy array, not a Tensor): minillm does
first-order training only, so it never differentiates a gradient again.
"""
from __future__ import annotations

import contextlib
import operator
import threading

import numpy as np

from . import backend
from .backend import DEFAULT_DTYPE, Device, get_array_module
from .fast.dispatch import lookup

_state = threading.local()


def is_grad_enabled() -> bool:
    """Whether ops currently record the graph (False inside ``no_grad()``)."""
    return getattr(_state, "grad_enabled", True)


@contextlib.contextmanager
def no_grad():
    """Context manager: run ops without recording a graph (evaluation, optimizer steps)."""
    previous = is_grad_enabled()
    _state.grad_enabled = False
    try:
        yield
    finally:
        _state.grad_enabled = previous


@contextlib.contextmanager
def enable_grad():
    """Context manager: record the graph again inside a ``no_grad()`` block."""
    previous = is_grad_enabled()
    _state.grad_enabled = True
    try:
        yield
    finally:
        _state.grad_enabled = previous


def _as_array(value, dtype=None, like=None):
    """Turn a Python number, list or array into an array, float32 by default for floats."""
    if isinstance(value, Tensor):
        return value.data if dtype is None else value.data.astype(dtype, copy=False)
    xp = get_array_module(like) if like is not None else np
    if isinstance(value, np.generic):  # a NumPy scalar, e.g. what a full reduction returns
        value = np.asarray(value)
    if isinstance(value, np.ndarray) or backend.is_cupy_array(value):
        return value if dtype is None else value.astype(dtype, copy=False)
    if dtype is None and like is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
        # A Python scalar takes the dtype of the tensor it meets (2.0 * float32 -> float32).
        like_dtype = getattr(like, "dtype", None)
        if like_dtype is not None and np.issubdtype(like_dtype, np.floating):
            return xp.asarray(value, dtype=like_dtype)
    array = xp.asarray(value, dtype=dtype)
    if dtype is None and array.dtype == np.float64:
        array = array.astype(DEFAULT_DTYPE)
    return array


# ---------------------------------------------------------------------- the ops behind the operators
# Tensor's Python operators (x + y, x @ y, x.sum()...) call the functions of minillm/ops. Those
# import this file (for Tensor and Function), so this file does not import them back: when
# minillm/ops/__init__.py has loaded, it hands itself over once with ``attach_ops``.
_ops = None


def attach_ops(module) -> None:
    """Give Tensor's operators the functions they call: ``minillm.ops``, passed by itself on import."""
    global _ops
    _ops = module


def _op_method(name: str):
    """A Tensor method calling ``minillm.ops.<name>(self, ...)``: ``x.sum(axis=1)`` is ``ops.sum(x, axis=1)``."""
    def method(self, *args, **kwargs):
        return getattr(_ops, name)(self, *args, **kwargs)
    method.__name__ = method.__qualname__ = name
    method.__doc__ = f"``minillm.ops.{name}(self, ...)``"
    return method


def _reflected_op(name: str):
    """The right-hand operator (``2 - x`` is ``x.__rsub__(2)``): ``minillm.ops.<name>(other, self)``."""
    def method(self, other):
        return getattr(_ops, name)(other, self)
    method.__doc__ = f"``minillm.ops.{name}(other, self)``"
    return method


def _comparison(compare):
    """A comparison on the data: a boolean Tensor with no gradient (comparisons are flat)."""
    def method(self, other):
        return Tensor(compare(self.data, other.data if isinstance(other, Tensor) else other))
    method.__doc__ = f"``{compare.__name__}`` elementwise, as a boolean Tensor (no graph)."
    return method


class Tensor:
    """An n-dimensional array that can record how it was computed, for gradients.

    Args:
        data: a NumPy/CuPy array, a Python number or a nested list. Python floats become float32
            (``DEFAULT_DTYPE``); an explicit float64 array stays float64.
        requires_grad: whether ``backward`` should compute ``.grad`` for this tensor.
        dtype: optional dtype to cast ``data`` to.
    """

    __slots__ = ("data", "grad", "requires_grad", "_ctx", "name", "__weakref__")
    __array_priority__ = 1000  # make ndarray + Tensor call Tensor.__radd__

    def __init__(self, data, requires_grad: bool = False, dtype=None, name: str | None = None):
        self.data = _as_array(data, dtype)
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self._ctx: Function | None = None
        self.name = name
        if self.requires_grad and not np.issubdtype(self.data.dtype, np.floating):
            raise TypeError(f"only floating-point tensors can require gradients, got {self.data.dtype}")

    # ------------------------------------------------------------------ basic properties
    @property
    def shape(self) -> tuple:
        return self.data.shape

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def size(self) -> int:
        return self.data.size

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def device(self) -> Device:
        return backend.device_of(self.data)

    @property
    def is_leaf(self) -> bool:
        """A leaf was made by the user (a parameter or an input), not by an op."""
        return self._ctx is None

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({self.numpy()!r}{grad})"

    def numpy(self) -> np.ndarray:
        """The data as a NumPy array (copied from the GPU when needed)."""
        return backend.to_device(self.data, "cpu")

    def item(self):
        """The value of a one-element tensor as a Python number."""
        if self.data.size != 1:
            raise ValueError(f"item(): tensor has {self.data.size} elements, expected 1")
        return self.data.reshape(()).item()

    def tolist(self):
        """The data as nested Python lists."""
        return self.numpy().tolist()

    def to(self, device=None, dtype=None) -> "Tensor":
        """A copy on another device and/or with another dtype (a leaf when this is a leaf)."""
        data = self.data
        if device is not None:
            data = backend.to_device(data, device)
        if dtype is not None:
            data = data.astype(dtype)
        if data is self.data:
            return self
        return Tensor(data, requires_grad=self.requires_grad)

    def detach(self) -> "Tensor":
        """A tensor sharing this data but cut from the graph."""
        return Tensor(self.data)

    def zero_grad(self) -> None:
        """Forget the accumulated gradient."""
        self.grad = None

    def requires_grad_(self, flag: bool = True) -> "Tensor":
        """Set ``requires_grad`` in place and return self."""
        self.requires_grad = bool(flag)
        return self

    # ------------------------------------------------------------------ backward
    def backward(self, grad=None, retain_graph: bool = False) -> None:
        """Compute d(self)/d(leaf) for every leaf that requires grad and add it to ``leaf.grad``.

        Args:
            grad: dL/d(self). May be omitted only when self has one element (a loss).
            retain_graph: keep the saved arrays so that backward may run through this graph again.
                Without it, a second backward raises a clear error instead of reusing freed buffers.
        """
        if not self.requires_grad:
            raise RuntimeError("backward(): this tensor does not require grad and has no graph")
        xp = get_array_module(self.data)
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"backward(): grad can be omitted only for a one-element tensor, got shape {self.shape}"
                )
            grad = xp.ones_like(self.data)
        else:
            grad = _as_array(grad, dtype=self.data.dtype)
            if grad.shape != self.shape:
                raise ValueError(f"backward(): grad has shape {grad.shape}, tensor has shape {self.shape}")

        grads = {id(self): grad}
        for node in _topological_order(self):
            g = grads.pop(id(node), None)
            if g is None:
                continue
            fn = node._ctx
            if fn is None:  # a leaf: accumulate, as PyTorch does
                if node.requires_grad:
                    node.grad = g.copy() if node.grad is None else node.grad + g
                continue
            if fn.freed:
                raise RuntimeError(
                    f"backward(): trying to backward through the graph a second time; the buffers "
                    f"saved by {type(fn).__name__} were freed after the first backward. "
                    f"Call backward(retain_graph=True) the first time if you need to."
                )
            input_grads = fn.backward(g)
            if not isinstance(input_grads, tuple):
                input_grads = (input_grads,)
            for parent, pg in zip(fn.parents, input_grads):
                if pg is None or parent is None or not parent.requires_grad:
                    continue
                if pg.shape != parent.shape:
                    raise RuntimeError(
                        f"{type(fn).__name__}.backward returned a gradient of shape {pg.shape} "
                        f"for an input of shape {parent.shape}"
                    )
                key = id(parent)
                grads[key] = pg if key not in grads else grads[key] + pg
            if not retain_graph:
                fn.release()

    # ------------------------------------------------------------------ Python operators
    # Each calls its function in minillm/ops (see ``attach_ops`` above for why not by import).
    __add__, __radd__ = _op_method("add"), _reflected_op("add")
    __sub__, __rsub__ = _op_method("sub"), _reflected_op("sub")
    __mul__, __rmul__ = _op_method("mul"), _reflected_op("mul")
    __truediv__, __rtruediv__ = _op_method("div"), _reflected_op("div")
    __pow__, __rpow__ = _op_method("pow"), _reflected_op("pow")
    __matmul__, __rmatmul__ = _op_method("matmul"), _reflected_op("matmul")
    __neg__ = _op_method("neg")
    __getitem__ = _op_method("getitem")
    __lt__, __le__, __gt__, __ge__ = map(_comparison, (operator.lt, operator.le, operator.gt, operator.ge))
    eq, ne = _comparison(operator.eq), _comparison(operator.ne)
    exp, log, sqrt, tanh, sigmoid, relu, gelu, clip = map(
        _op_method, ("exp", "log", "sqrt", "tanh", "sigmoid", "relu", "gelu", "clip"))
    sum, mean, max, var, logsumexp, softmax, log_softmax = map(
        _op_method, ("sum", "mean", "max", "var", "logsumexp", "softmax", "log_softmax"))
    reshape, transpose, permute, broadcast_to, split, matmul = map(
        _op_method, ("reshape", "transpose", "permute", "broadcast_to", "split", "matmul"))
    view = reshape

    @property
    def T(self) -> "Tensor":
        """The transpose: the axes in reverse order."""
        return _ops.permute(self, tuple(reversed(range(self.ndim))))


def _topological_order(root: Tensor) -> list[Tensor]:
    """Tensors reachable from ``root``, each after all tensors that depend on it.

    An explicit stack replaces recursion, so very deep graphs do not overflow Python's stack.
    The list starts at ``root`` and ends at the leaves: the order in which backward visits them.
    """
    order, visited = [], set()
    stack = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if children_done:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        if node._ctx is not None:
            for parent in node._ctx.parents:
                if parent is not None and id(parent) not in visited:
                    stack.append((parent, False))
    order.reverse()  # post-order reversed = every consumer before what it consumes
    return order


class Function:
    """Base class of every differentiable op.

    Subclasses implement ``forward(self, *arrays, **options)`` on raw arrays, saving on ``self``
    whatever the gradient needs, and ``backward(self, grad)`` returning one gradient (or None)
    per positional input. ``apply`` wraps them: it unwraps Tensors, runs ``forward``, and links
    the output into the graph only when some input requires a gradient.
    """

    parents: tuple
    needs_input_grad: tuple
    freed: bool = False

    @classmethod
    def apply(cls, *inputs, **options) -> Tensor:
        """Run the op on Tensors (or arrays/scalars, which count as constants)."""
        like = next((t.data for t in inputs if isinstance(t, Tensor)), None)
        arrays = [t.data if isinstance(t, Tensor) else _as_array(t, like=like) if t is not None else None
                  for t in inputs]
        fn = (lookup(cls, *arrays) or cls)()  # a registered fast version of this op, if one fits
        needs = tuple(isinstance(t, Tensor) and t.requires_grad for t in inputs)
        fn.needs_input_grad = needs
        out = Tensor(fn.forward(*arrays, **options))
        if any(needs) and is_grad_enabled():
            fn.parents = tuple(t if isinstance(t, Tensor) else None for t in inputs)
            out._ctx = fn
            out.requires_grad = True
        return out

    def forward(self, *arrays, **options):  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, grad):  # pragma: no cover - abstract
        raise NotImplementedError

    def release(self) -> None:
        """Drop the arrays saved for backward, so their memory can be reused."""
        keep = {"parents", "needs_input_grad"}
        for key in [k for k in vars(self) if k not in keep]:
            delattr(self, key)
        self.freed = True


def tensor(data, requires_grad: bool = False, dtype=None, device=None) -> Tensor:
    """Create a leaf Tensor, like ``torch.tensor``."""
    t = Tensor(data, requires_grad=requires_grad, dtype=dtype)
    if device is not None and Device(device) != t.device:
        t = Tensor(backend.to_device(t.data, device), requires_grad=requires_grad)
    return t
