"""Matrix products: batched ``matmul`` with broadcasting, and ``linear`` (one GEMM per call).

For C = A @ B the chain rule gives  dA = dC @ B^T  and  dB = A^T @ dC.  With batch dimensions
that broadcast, each gradient is then summed back to its input's shape.

The products run on NumPy/CuPy's BLAS, one call each. (The fast layer splits them over minillm's
threads on the CPU, ``fast/cpu_linalg.py``, and runs ``Linear`` on minillm's own CUDA kernels on
the GPU, ``fast/cuda_ops.py``.)
"""
from __future__ import annotations

from ..autograd import Function, Tensor
from .elementwise import sum_to


class MatMul(Function):
    """Matrix product with NumPy's broadcasting and vector rules."""

    def forward(self, a, b):
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError(f"matmul: {a.shape} @ {b.shape}: both operands need at least 1 dimension")
        k_a = a.shape[-1]
        k_b = b.shape[-2] if b.ndim > 1 else b.shape[0]
        if k_a != k_b:
            raise ValueError(f"matmul: {a.shape} @ {b.shape}: inner dimensions {k_a} and {k_b} differ")
        # Treat vectors as matrices (a row for a, a column for b), as numpy does.
        self.a_shape, self.b_shape = a.shape, b.shape
        self.a = a[None, :] if a.ndim == 1 else a
        self.b = b[:, None] if b.ndim == 1 else b
        try:
            out = self.a @ self.b
        except ValueError:
            raise ValueError(f"matmul: {a.shape} @ {b.shape}: batch dimensions do not broadcast") from None
        self.out_shape = out.shape
        if a.ndim == 1:
            out = out[..., 0, :]
        if b.ndim == 1:
            out = out[..., 0]
        return out

    def backward(self, grad):
        grad = grad.reshape(self.out_shape)
        ga = gb = None
        if self.needs_input_grad[0]:
            ga = sum_to(grad @ self.b.swapaxes(-1, -2), self.a.shape).reshape(self.a_shape)
        if self.needs_input_grad[1]:
            gb = sum_to(self.a.swapaxes(-1, -2) @ grad, self.b.shape).reshape(self.b_shape)
        return ga, gb


class Linear(Function):
    """y = x W^T + b over any number of leading dimensions, as one (N, in) x (in, out) GEMM."""

    @staticmethod
    def check_shapes(x, weight) -> None:
        """A clear error when x's last axis is not weight's in_features."""
        if x.shape[-1] != weight.shape[1]:
            raise ValueError(
                f"linear: input {x.shape} has {x.shape[-1]} features but weight {weight.shape} expects "
                f"{weight.shape[1]} (weight is (out_features, in_features))"
            )

    def forward(self, x, weight, bias=None):
        self.check_shapes(x, weight)
        self.x_shape = x.shape
        self.x2d = x.reshape(-1, x.shape[-1])  # flatten (batch, seq, in) -> (batch*seq, in)
        self.weight = weight
        self.has_bias = bias is not None
        out = self.x2d @ weight.T
        if bias is not None:
            out += bias
        return out.reshape(*x.shape[:-1], weight.shape[0])

    def backward(self, grad):
        g2d = grad.reshape(-1, grad.shape[-1])  # (N, out)
        gx = gw = gb = None
        if self.needs_input_grad[0]:
            gx = (g2d @ self.weight).reshape(self.x_shape)  # dx = dy W
        if self.needs_input_grad[1]:
            gw = g2d.T @ self.x2d  # dW = dy^T x
        if self.has_bias and self.needs_input_grad[2]:
            gb = g2d.sum(axis=0)  # db = sum over rows of dy
        return gx, gw, gb


def matmul(a, b) -> Tensor:
    """Matrix product with numpy's rules: batch dimensions broadcast, vectors are promoted."""
    return MatMul.apply(a, b)


def linear(x, weight, bias=None) -> Tensor:
    """``x @ weight.T + bias``: the affine map of a ``Linear`` layer, weight (out, in)."""
    return Linear.apply(x, weight, bias)
