"""GELU, and the gated GELU of T5 v1.1's feed-forward, with their derivatives.

GELU(x) = x Phi(x), Phi the standard normal CDF. T5 uses the tanh approximation
("gelu_new"): x h with h = (1 + tanh(u)) / 2, u = sqrt(2/pi) (x + 0.044715 x^3).
"""
from __future__ import annotations

import math

from ..autograd import Function, Tensor
from ..backend import erf, get_array_module

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
"""sqrt(2/pi), the factor of the tanh form's u; public, because fast/cpu_gelu.py computes u too."""
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def gelu_tanh_h(x):
    """h = (1 + tanh(u)) / 2 with u = sqrt(2/pi) (x + 0.044715 x^3), so that gelu_tanh(x) = x h.
    (x * x * x, not x**3: NumPy's float power is far slower than two multiplies.)"""
    xp = get_array_module(x)
    return 0.5 * (1 + xp.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)))


def gelu_tanh_derivative(x, h):
    """gelu_tanh'(x), from x and h = gelu_tanh_h(x).

    gelu(x) = x h, so gelu' = h + x dh/du u'. With T = tanh(u), dh/du = (1 - T^2) / 2, and
    1 - T^2 = (1 - T)(1 + T) = 4 h (1 - h), so dh/du = 2 h (1 - h), and
        gelu'(x) = h (1 + (1 - h) 2 x u'),   u' = sqrt(2/pi) (1 + 3 * 0.044715 x^2).
    """
    u_prime = SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x * x)
    return h * (1 + (1 - h) * 2 * x * u_prime)


class Gelu(Function):
    """GELU(x) = x * Phi(x). ``approximate="tanh"`` is the version T5 calls "gelu_new"."""

    def forward(self, a, approximate="none"):
        self.a, self.approximate = a, approximate
        if approximate == "tanh":
            self.h = gelu_tanh_h(a)
            return a * self.h
        if approximate != "none":
            raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.cdf = 0.5 * (1 + erf(a * _INV_SQRT_2))
        return a * self.cdf

    def backward(self, grad):
        xp = get_array_module(grad)
        a = self.a
        if self.approximate == "tanh":
            return grad * gelu_tanh_derivative(a, self.h)
        # d/dx x Phi(x) = Phi(x) + x phi(x),  phi(x) = e^(-x^2/2) / sqrt(2 pi)
        return grad * (self.cdf + a * _INV_SQRT_2PI * xp.exp(-0.5 * a * a))


class GatedGelu(Function):
    """gelu_tanh(gate) * up: the gated feed-forward of T5 v1.1 and FLAN-T5, fused.

    Composed, it is two ops (gelu, multiply) that save four activations; fused, it saves gate,
    up and h = (1 + tanh(u)) / 2, and the product rule gives both gradients:
        d up   = g * gelu(gate) = g * gate * h
        d gate = g * up * gelu'(gate)
    """

    def forward(self, gate, up):
        if gate.shape != up.shape:
            raise ValueError(f"gated_gelu: gate {gate.shape} and up {up.shape} must have the same shape")
        self.gate, self.up = gate, up
        self.h = gelu_tanh_h(gate)
        return gate * self.h * up

    def backward(self, grad):
        d_gate = grad * self.up * gelu_tanh_derivative(self.gate, self.h) if self.needs_input_grad[0] else None
        d_up = grad * self.gate * self.h if self.needs_input_grad[1] else None
        return d_gate, d_up


# ------------------------------------------------------------------------------- functional API
def gelu(a, approximate: str = "none") -> Tensor:
    """Gaussian error linear unit; ``approximate="tanh"`` gives T5's "gelu_new"."""
    return Gelu.apply(a, approximate=approximate)


def gated_gelu(gate, up) -> Tensor:
    """``gelu(gate, approximate="tanh") * up`` as one fused op (T5's gated feed-forward)."""
    return GatedGelu.apply(gate, up)
