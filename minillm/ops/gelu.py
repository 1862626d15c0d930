"""GELU and the gated GELU of T5's feed-forward, as cache-sized block kernels split over threads.

These run on the (tokens, d_ff) activations of every feed-forward layer, the largest
elementwise work in a T5 step. Each kernel writes every step into a buffer it was given, and
``for_each_row_block`` (minillm/fast/threads.py) runs it on blocks of rows small enough to stay in
the cache, spread over minillm's threads.
"""
from __future__ import annotations

import math

import numpy as np

from ..autograd import Function, Tensor
from ..backend import get_array_module
from ..fast.threads import for_each_row_block


def _erf(x):
    """The error function, elementwise (NumPy has none; use SciPy/CuPy's when present)."""
    xp = get_array_module(x)
    if xp is not np:
        import cupyx.scipy.special  # noqa: PLC0415

        return cupyx.scipy.special.erf(x)
    try:
        from scipy.special import erf  # noqa: PLC0415

        return erf(x).astype(x.dtype, copy=False)
    except ImportError:  # exact but slow: math.erf per element
        return np.vectorize(math.erf, otypes=[x.dtype])(x)


_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _gelu_tanh_block(x, h, out):
    """h = 0.5 (1 + tanh(u)) and out = x h = gelu(x), with u = sqrt(2/pi) (x + 0.044715 x^3).

    Every step writes into ``h`` or ``out``: this runs on the (tokens, d_ff) activations of
    every feed-forward layer, and at that size each temporary array costs real time. (x * x * x,
    never x**3: NumPy's float power is ~60x slower than two multiplies.)
    """
    xp = get_array_module(x)
    xp.multiply(x, x, out=h)
    h *= 0.044715 * _SQRT_2_OVER_PI
    h += _SQRT_2_OVER_PI
    h *= x                                # u = sqrt(2/pi) x (1 + 0.044715 x^2)
    xp.tanh(h, out=h)
    h += 1
    h *= 0.5
    xp.multiply(x, h, out=out)


def _gelu_tanh_derivative_block(x, h, out):
    """out = gelu'(x), from x and the forward pass's h = 0.5 (1 + tanh(u)), in place.

    gelu(x) = x h, so gelu' = h + x dh/du u'. With T = tanh(u), dh/du = (1 - T^2) / 2 and
    1 - T^2 = (1 - T)(1 + T) = 4 h (1 - h), so dh/du = 2 h (1 - h), and
        gelu'(x) = h (1 + (1 - h) 2 x u'),   u' = sqrt(2/pi) (1 + 3 * 0.044715 x^2).
    """
    xp = get_array_module(x)
    w = xp.empty_like(x)
    xp.multiply(x, x, out=w)
    w *= 6 * 0.044715 * _SQRT_2_OVER_PI
    w += 2 * _SQRT_2_OVER_PI
    w *= x                                # 2 x u'
    xp.subtract(1, h, out=out)
    out *= w
    out += 1
    out *= h


class Gelu(Function):
    """GELU(x) = x * Phi(x). ``approximate="tanh"`` is the version T5 calls "gelu_new".

    The tanh version runs as block kernels, cache-sized and split over threads (``fast/threads.py``).
    """

    def forward(self, a, approximate="none"):
        xp = get_array_module(a)
        self.a, self.approximate = a, approximate
        if approximate == "tanh":
            self.h, out = xp.empty_like(a), xp.empty_like(a)
            for_each_row_block(_gelu_tanh_block, a, self.h, out)
            return out
        if approximate != "none":
            raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.cdf = 0.5 * (1 + _erf(a * _INV_SQRT_2))
        return a * self.cdf

    def backward(self, grad):
        xp = get_array_module(grad)
        a = self.a
        if self.approximate == "tanh":
            def block(a, h, grad, out):
                _gelu_tanh_derivative_block(a, h, out)
                out *= grad

            out = xp.empty_like(a)
            for_each_row_block(block, a, self.h, grad, out)
            return out
        # d/dx x Phi(x) = Phi(x) + x phi(x),  phi(x) = e^(-x^2/2) / sqrt(2 pi)
        return grad * (self.cdf + a * _INV_SQRT_2PI * xp.exp(-0.5 * a * a))


class GatedGelu(Function):
    """gelu_tanh(gate) * up: the gated feed-forward of T5 v1.1 and FLAN-T5, fused.

    Composed, it is two ops (gelu, multiply) that save four activations; fused, it saves gate,
    up and h = 0.5 (1 + tanh(u)), and computes both gradients in one blocked pass:
        d up   = g * gelu(gate) = g * gate * h
        d gate = g * up * gelu'(gate)
    """

    def forward(self, gate, up):
        if gate.shape != up.shape:
            raise ValueError(f"gated_gelu: gate {gate.shape} and up {up.shape} must have the same shape")
        xp = get_array_module(gate)
        self.gate, self.up = gate, up
        self.h, out = xp.empty_like(gate), xp.empty_like(gate)

        def block(gate, up, h, out):
            _gelu_tanh_block(gate, h, out)
            out *= up

        for_each_row_block(block, gate, up, self.h, out)
        return out

    def backward(self, grad):
        xp = get_array_module(grad)
        d_gate = xp.empty_like(self.gate) if self.needs_input_grad[0] else None
        d_up = xp.empty_like(self.gate) if self.needs_input_grad[1] else None
        outputs = [d for d in (d_gate, d_up) if d is not None]

        def block(gate, up, h, g, *outs):
            outs = list(outs)
            if d_gate is not None:
                out = outs.pop(0)
                _gelu_tanh_derivative_block(gate, h, out)
                out *= g
                out *= up
            if d_up is not None:
                out = outs.pop(0)
                xp.multiply(gate, h, out=out)
                out *= g

        for_each_row_block(block, self.gate, self.up, self.h, grad, *outputs)
        return d_gate, d_up


# ------------------------------------------------------------------------------- functional API
def gelu(a, approximate: str = "none") -> Tensor:
    """Gaussian error linear unit; ``approximate="tanh"`` gives T5's "gelu_new"."""
    return Gelu.apply(a, approximate=approximate)


def gated_gelu(gate, up) -> Tensor:
    """``gelu(gate, approximate="tanh") * up`` as one fused op (T5's gated feed-forward)."""
    return GatedGelu.apply(gate, up)
