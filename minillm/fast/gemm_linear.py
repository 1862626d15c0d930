"""The one Linear fast path: ``Linear`` as its three GEMMs, for whichever GEMM a device has.

    y  = x W^T      gemm(x2d, W, transpose_b=True)
    dx = dy W       gemm(dy2d, W)
    dW = dy^T x     gemm(dy2d, x2d, transpose_a=True)

with x and dy flattened to 2-D (every leading dimension is a row). ``GemmLinear`` writes these
once; a device's fast layer subclasses it with its ``gemm`` and registers the subclass:
``cpu_linalg.ThreadedLinear`` (products split over minillm's threads) and
``cuda_ops.CudaLinear`` (minillm's CUDA matmul kernel).
"""
from __future__ import annotations

from ..ops.linalg import Linear


class GemmLinear(Linear):
    """``Linear`` through ``self.gemm(a, b, transpose_a=False, transpose_b=False)``: op(a) @ op(b) of 2-D arrays."""

    @staticmethod
    def gemm(a, b, transpose_a=False, transpose_b=False):  # pragma: no cover - given by each subclass
        """op(a) @ op(b) for 2-D arrays, op(x) being x or its transpose."""
        raise NotImplementedError("GemmLinear is used through a subclass that gives its gemm")

    def forward(self, x, weight, bias=None):
        self.check_shapes(x, weight)
        self.x_shape, self.x2d, self.weight = x.shape, x.reshape(-1, x.shape[-1]), weight
        self.has_bias = bias is not None
        out = self.gemm(self.x2d, weight, transpose_b=True)
        if bias is not None:
            out += bias
        return out.reshape(*x.shape[:-1], weight.shape[0])

    def backward(self, grad):
        g2d = grad.reshape(-1, grad.shape[-1])
        gx = self.gemm(g2d, self.weight).reshape(self.x_shape) if self.needs_input_grad[0] else None
        gw = self.gemm(g2d, self.x2d, transpose_a=True) if self.needs_input_grad[1] else None
        gb = g2d.sum(axis=0) if self.has_bias and self.needs_input_grad[2] else None
        return gx, gw, gb
