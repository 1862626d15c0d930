"""GELU (tanh form) and T5's gated GELU as cache-sized block kernels over minillm's threads.

These run on the (tokens, d_ff) activations of every feed-forward layer, the largest elementwise
work in a T5 step. The reference (``ops/gelu.py``) writes the formula in whole-array
expressions, each step a new temporary of that size; here each kernel writes every step into a
buffer it was given, and ``for_each_row_block`` (``threads.py``) runs it on blocks of rows small
enough to stay in the cache, spread over the threads.

The steps regroup the reference's arithmetic (u = x (c0 + c1 x^2) instead of
c0 (x + 0.044715 x^3), with c1 = 0.044715 c0 folded into one constant), so results agree with the
reference within float32 rounding, not bitwise.
"""
from __future__ import annotations

import numpy as np

from ..ops.gelu import SQRT_2_OVER_PI, GatedGelu, Gelu
from .dispatch import numpy_float, register
from .threads import for_each_row_block


def gelu_tanh_block(x, h, out):
    """h = 0.5 (1 + tanh(u)) and out = x h = gelu(x), with u = sqrt(2/pi) (x + 0.044715 x^3)."""
    np.multiply(x, x, out=h)
    h *= 0.044715 * SQRT_2_OVER_PI
    h += SQRT_2_OVER_PI
    h *= x                                # u = sqrt(2/pi) x (1 + 0.044715 x^2)
    np.tanh(h, out=h)
    h += 1
    h *= 0.5
    np.multiply(x, h, out=out)


def gelu_tanh_derivative_block(x, h, out):
    """out = gelu'(x) = h (1 + (1 - h) 2 x u'), from x and h (see ops.gelu.gelu_tanh_derivative)."""
    w = np.empty_like(x)
    np.multiply(x, x, out=w)
    w *= 6 * 0.044715 * SQRT_2_OVER_PI
    w += 2 * SQRT_2_OVER_PI
    w *= x                                # 2 x u'
    np.subtract(1, h, out=out)
    out *= w
    out += 1
    out *= h


@register(Gelu, accepts=lambda a, *rest: numpy_float(a))
class BlockedGelu(Gelu):
    """``Gelu``: the tanh form as block kernels; the erf form is the reference's."""

    def forward(self, a, approximate="none"):
        if approximate != "tanh":
            return super().forward(a, approximate)
        self.a, self.approximate = a, approximate
        self.h, out = np.empty_like(a), np.empty_like(a)
        for_each_row_block(gelu_tanh_block, a, self.h, out)
        return out

    def backward(self, grad):
        if self.approximate != "tanh":
            return super().backward(grad)

        def block(a, h, grad, out):
            gelu_tanh_derivative_block(a, h, out)
            out *= grad

        out = np.empty_like(self.a)
        for_each_row_block(block, self.a, self.h, grad, out)
        return out


@register(GatedGelu, accepts=lambda gate, up: numpy_float(gate) and numpy_float(up))
class BlockedGatedGelu(GatedGelu):
    """``GatedGelu`` with both gradients computed in one blocked pass."""

    def forward(self, gate, up):
        if gate.shape != up.shape:
            return super().forward(gate, up)  # raises the reference's error
        self.gate, self.up = gate, up
        self.h, out = np.empty_like(gate), np.empty_like(gate)

        def block(gate, up, h, out):
            gelu_tanh_block(gate, h, out)
            out *= up

        for_each_row_block(block, gate, up, self.h, out)
        return out

    def backward(self, grad):
        d_gate = np.empty_like(self.gate) if self.needs_input_grad[0] else None
        d_up = np.empty_like(self.gate) if self.needs_input_grad[1] else None

        def block(gate, up, h, g, *outs):
            outs = list(outs)
            if d_gate is not None:
                out = outs.pop(0)
                gelu_tanh_derivative_block(gate, h, out)
                out *= g
                out *= up
            if d_up is not None:
                out = outs.pop(0)
                np.multiply(gate, h, out=out)
                out *= g

        outputs = [d for d in (d_gate, d_up) if d is not None]
        for_each_row_block(block, self.gate, self.up, self.h, grad, *outputs)
        return d_gate, d_up
