"""Elementwise ops: arithmetic, exp/log, tanh/sigmoid/relu, where/maximum/minimum/clip (GELU: gelu.py).

Binary ops broadcast like NumPy. Their backward computes the gradient at the broadcast shape
and then undoes the broadcast with ``sum_to`` (the one place that does it).
"""
from __future__ import annotations

from ..autograd import Function, Tensor
from ..backend import get_array_module


def sum_to(grad, shape: tuple):
    """Sum ``grad`` down to ``shape``: the backward of broadcasting.

    Broadcasting copies an input along new leading axes and along axes of size 1, so each copy
    received a gradient; the input's gradient is the sum over the copies.
    """
    if grad.shape == shape:
        return grad
    lead = grad.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and grad.shape[lead + i] != 1
    )
    grad = grad.sum(axis=axes, keepdims=True)
    return grad.reshape(shape)


# ------------------------------------------------------------------------------- arithmetic
class Add(Function):
    """a + b (broadcasting)."""

    def forward(self, a, b):
        self.shapes = a.shape, b.shape
        return a + b

    def backward(self, grad):  # d(a+b)/da = 1, d(a+b)/db = 1
        return sum_to(grad, self.shapes[0]), sum_to(grad, self.shapes[1])


class Sub(Function):
    """a - b (broadcasting)."""

    def forward(self, a, b):
        self.shapes = a.shape, b.shape
        return a - b

    def backward(self, grad):  # d(a-b)/da = 1, d(a-b)/db = -1
        return sum_to(grad, self.shapes[0]), sum_to(-grad, self.shapes[1])


class Mul(Function):
    """a * b elementwise (broadcasting)."""

    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, grad):  # d(ab)/da = b, d(ab)/db = a
        ga = sum_to(grad * self.b, self.a.shape) if self.needs_input_grad[0] else None
        gb = sum_to(grad * self.a, self.b.shape) if self.needs_input_grad[1] else None
        return ga, gb


class Div(Function):
    """a / b elementwise (broadcasting)."""

    def forward(self, a, b):
        self.a, self.b = a, b
        return a / b

    def backward(self, grad):  # d(a/b)/da = 1/b, d(a/b)/db = -a/b^2
        ga = sum_to(grad / self.b, self.a.shape) if self.needs_input_grad[0] else None
        gb = sum_to(-grad * self.a / (self.b * self.b), self.b.shape) if self.needs_input_grad[1] else None
        return ga, gb


class Neg(Function):
    """-a."""

    def forward(self, a):
        return -a

    def backward(self, grad):
        return -grad


class Pow(Function):
    """a ** b; b may be a constant or a tensor."""

    def forward(self, a, b):
        self.a, self.b = a, b
        self.out = a**b
        return self.out

    def backward(self, grad):
        # d(a^b)/da = b a^(b-1);  d(a^b)/db = a^b ln a  (defined for a > 0)
        xp = get_array_module(grad)
        ga = gb = None
        if self.needs_input_grad[0]:
            ga = sum_to(grad * self.b * self.a ** (self.b - 1), self.a.shape)
        if self.needs_input_grad[1]:
            log_a = xp.log(xp.where(self.a > 0, self.a, 1))
            gb = sum_to(grad * self.out * log_a, self.b.shape)
        return ga, gb


# ------------------------------------------------------------------------------- unary math
class Exp(Function):
    """e ** a."""

    def forward(self, a):
        self.out = get_array_module(a).exp(a)
        return self.out

    def backward(self, grad):  # d e^a / da = e^a
        return grad * self.out


class Log(Function):
    """Natural logarithm."""

    def forward(self, a):
        self.a = a
        return get_array_module(a).log(a)

    def backward(self, grad):  # d ln a / da = 1/a
        return grad / self.a


class Sqrt(Function):
    """Square root."""

    def forward(self, a):
        self.out = get_array_module(a).sqrt(a)
        return self.out

    def backward(self, grad):  # d sqrt(a)/da = 1 / (2 sqrt(a))
        return grad / (2 * self.out)


class Tanh(Function):
    """Hyperbolic tangent."""

    def forward(self, a):
        self.out = get_array_module(a).tanh(a)
        return self.out

    def backward(self, grad):  # d tanh/da = 1 - tanh^2
        return grad * (1 - self.out * self.out)


class Sigmoid(Function):
    """The logistic function 1 / (1 + e^-a)."""

    def forward(self, a):
        xp = get_array_module(a)
        # 1/(1+e^-a) overflows for very negative a; 0.5(1+tanh(a/2)) is the same function, stably.
        self.out = 0.5 * (1 + xp.tanh(0.5 * a))
        return self.out

    def backward(self, grad):  # d sigma/da = sigma (1 - sigma)
        return grad * self.out * (1 - self.out)


class Relu(Function):
    """max(a, 0)."""

    def forward(self, a):
        self.positive = a > 0
        return a * self.positive

    def backward(self, grad):  # 1 where a > 0, else 0 (we pick 0 at a == 0, like PyTorch)
        return grad * self.positive


# ------------------------------------------------------------------------------- selection
class Where(Function):
    """Pick a where cond is True, else b; cond gets no gradient."""

    def forward(self, cond, a, b):
        self.cond, self.shapes = cond, (a.shape, b.shape)
        return get_array_module(a).where(cond, a, b)

    def backward(self, grad):  # the gradient goes to whichever side was chosen
        xp = get_array_module(grad)
        zero = xp.zeros((), grad.dtype)
        return (None, sum_to(xp.where(self.cond, grad, zero), self.shapes[0]),
                sum_to(xp.where(self.cond, zero, grad), self.shapes[1]))


class Maximum(Function):
    """Elementwise maximum."""

    def forward(self, a, b):
        self.a, self.b = a, b
        return get_array_module(a).maximum(a, b)

    def backward(self, grad):
        # To the larger input; on a tie each side gets half (the average of the one-sided rules).
        share_a = ((self.a > self.b) + 0.5 * (self.a == self.b)).astype(grad.dtype)
        return (sum_to(grad * share_a, self.a.shape), sum_to(grad * (1 - share_a), self.b.shape))


class Minimum(Function):
    """Elementwise minimum."""

    def forward(self, a, b):
        self.a, self.b = a, b
        return get_array_module(a).minimum(a, b)

    def backward(self, grad):
        share_a = ((self.a < self.b) + 0.5 * (self.a == self.b)).astype(grad.dtype)
        return (sum_to(grad * share_a, self.a.shape), sum_to(grad * (1 - share_a), self.b.shape))


class Clip(Function):
    """Clamp values into [low, high]."""

    def forward(self, a, low=None, high=None):
        xp = get_array_module(a)
        inside = xp.ones(a.shape, dtype=bool)
        if low is not None:
            inside &= a >= low
        if high is not None:
            inside &= a <= high
        self.inside = inside
        return xp.clip(a, low, high)

    def backward(self, grad):  # 1 inside [low, high] (bounds included, like torch.clamp), 0 outside
        return grad * self.inside


# ------------------------------------------------------------------------------- functional API
def add(a, b) -> Tensor:
    """a + b, with broadcasting."""
    return Add.apply(a, b)


def sub(a, b) -> Tensor:
    """a - b, with broadcasting."""
    return Sub.apply(a, b)


def mul(a, b) -> Tensor:
    """a * b, elementwise, with broadcasting."""
    return Mul.apply(a, b)


def div(a, b) -> Tensor:
    """a / b, elementwise, with broadcasting."""
    return Div.apply(a, b)


def neg(a) -> Tensor:
    """-a."""
    return Neg.apply(a)


def pow(a, b) -> Tensor:  # noqa: A001 - mirrors torch.pow
    """a ** b; b may be a number or a tensor (then a must be positive for its gradient)."""
    return Pow.apply(a, b)


def exp(a) -> Tensor:
    """e ** a."""
    return Exp.apply(a)


def log(a) -> Tensor:
    """Natural logarithm."""
    return Log.apply(a)


def sqrt(a) -> Tensor:
    """Square root."""
    return Sqrt.apply(a)


def tanh(a) -> Tensor:
    """Hyperbolic tangent."""
    return Tanh.apply(a)


def sigmoid(a) -> Tensor:
    """1 / (1 + e^-a)."""
    return Sigmoid.apply(a)


def relu(a) -> Tensor:
    """max(a, 0)."""
    return Relu.apply(a)


def where(cond, a, b) -> Tensor:
    """Elementwise ``a if cond else b``; ``cond`` is a boolean array or Tensor (not differentiated)."""
    cond = cond.data if isinstance(cond, Tensor) else cond
    return Where.apply(cond, a, b)


def maximum(a, b) -> Tensor:
    """Elementwise maximum."""
    return Maximum.apply(a, b)


def minimum(a, b) -> Tensor:
    """Elementwise minimum."""
    return Minimum.apply(a, b)


def clip(a, low=None, high=None) -> Tensor:
    """Limit values to [low, high]; either bound may be None."""
    return Clip.apply(a, low=low, high=high)
