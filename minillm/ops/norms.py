"""Normalisation over the last axis: T5's RMSNorm and the standard LayerNorm.

Both rescale each row (one token's features) to unit size, then apply a learned per-feature
weight. Their backward passes are derived below; each is checked against the same computation
composed from primitives in tests/test_ops_fused.py.
"""
from __future__ import annotations

from ..autograd import Function, Tensor
from ..backend import get_array_module
from .elementwise import sum_to


class RMSNorm(Function):
    """T5's layer norm: y = w * x / sqrt(mean(x^2) + eps). No mean subtraction, no bias."""

    def forward(self, x, weight, eps=1e-6):
        xp = get_array_module(x)
        self.x, self.weight = x, weight
        self.r = 1 / xp.sqrt((x * x).mean(axis=-1, keepdims=True) + eps)  # 1 / rms, one per row
        return x * self.r * weight

    def backward(self, grad):
        # With r = (mean(x^2) + eps)^(-1/2) and h = g * w (the gradient reaching x * r):
        #   dr/dx_j = -r^3 x_j / d, so dL/dx_j = r h_j - r^3 x_j mean(h * x)
        #                                      = r (h_j - x_j r^2 mean(h * x)).
        #   dL/dw = sum over rows of g * x * r.
        x, r = self.x, self.r
        gx = gw = None
        if self.needs_input_grad[0]:
            h = grad * self.weight
            gx = (h - x * ((h * x).mean(axis=-1, keepdims=True) * r * r)) * r
        if self.needs_input_grad[1]:
            gw = sum_to(grad * x * r, self.weight.shape)
        return gx, gw


class LayerNorm(Function):
    """y = w * (x - mean) / sqrt(var + eps) + b over the last axis."""

    def forward(self, x, weight, bias=None, eps=1e-5):
        xp = get_array_module(x)
        mu = x.mean(axis=-1, keepdims=True)
        xc = x - mu
        self.r = 1.0 / xp.sqrt((xc * xc).mean(axis=-1, keepdims=True) + eps)
        self.xhat, self.weight, self.has_bias = xc * self.r, weight, bias is not None
        out = weight * self.xhat
        return out + bias if bias is not None else out

    def backward(self, grad):
        # With xhat = (x - mu) r and h = g * w:
        #   dL/dx = r (h - mean(h) - xhat mean(h * xhat))
        gx = gw = gb = None
        if self.needs_input_grad[0]:
            h = grad * self.weight
            gx = self.r * (h - h.mean(axis=-1, keepdims=True)
                           - self.xhat * (h * self.xhat).mean(axis=-1, keepdims=True))
        if self.needs_input_grad[1]:
            gw = sum_to(grad * self.xhat, self.weight.shape)
        if self.has_bias and self.needs_input_grad[2]:
            gb = sum_to(grad, self.weight.shape)
        return gx, gw, gb


def rms_norm(x, weight, eps: float = 1e-6) -> Tensor:
    """T5's RMSNorm: ``weight * x / sqrt(mean(x**2, -1) + eps)``."""
    return RMSNorm.apply(x, weight, eps=eps)


def layer_norm(x, weight, bias=None, eps: float = 1e-5) -> Tensor:
    """Standard layer normalisation over the last axis."""
    return LayerNorm.apply(x, weight, bias, eps=eps)
