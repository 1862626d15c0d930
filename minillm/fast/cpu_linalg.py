"""Matrix products on minillm's CPU threads, and OpenBLAS's few-rows case turned around.

``threads.matmul`` splits one product into blocks of output rows (or columns, or of the batch),
each a single-threaded BLAS call on its own thread. Every output element is still one dot
product over the whole inner dimension, but separate calls may take different kernel paths, so
the results agree with the reference's single ``a @ b`` within float32 rounding, not bitwise.
"""
from __future__ import annotations

from ..ops.elementwise import sum_to
from ..ops.linalg import Linear, MatMul
from . import threads
from .dispatch import numpy_float, register
from .gemm_linear import GemmLinear


def gemm(a, b, transpose_a=False, transpose_b=False):
    """op(a) @ op(b) for 2-D NumPy arrays, split over the threads."""
    if transpose_b and not transpose_a and 1 < a.shape[0] <= 64:
        # A few rows times a transposed matrix (x W^T in one decoding step) is a slow case for
        # OpenBLAS. Computed as (W x^T)^T, the same product took 0.33-0.80 of the time for 8 to
        # 32 rows of width 256 (one thread), and about the same at 64; generation gained ~5%.
        return threads.matmul(b, a.T).T
    return threads.matmul(a.T if transpose_a else a, b.T if transpose_b else b)


@register(MatMul, accepts=lambda a, b: numpy_float(a) and numpy_float(b))
class ThreadedMatMul(MatMul):
    """``MatMul`` of two matrices (or stacks of them) split over the threads; vectors: the reference."""

    def forward(self, a, b):
        self.split = a.ndim >= 2 and b.ndim >= 2 and a.shape[-1] == b.shape[-2]
        if not self.split:
            return super().forward(a, b)  # vector rules, and the reference's shape errors
        try:
            out = threads.matmul(a, b)
        except ValueError:
            return super().forward(a, b)  # batch dimensions that do not broadcast: its error
        self.a_shape, self.b_shape, self.a, self.b, self.out_shape = a.shape, b.shape, a, b, out.shape
        return out

    def backward(self, grad):
        if not self.split:
            return super().backward(grad)
        ga = gb = None
        if self.needs_input_grad[0]:
            ga = sum_to(threads.matmul(grad, self.b.swapaxes(-1, -2)), self.a.shape)
        if self.needs_input_grad[1]:
            gb = sum_to(threads.matmul(self.a.swapaxes(-1, -2), grad), self.b.shape)
        return ga, gb


@register(Linear, accepts=lambda x, weight, bias=None: numpy_float(x) and numpy_float(weight))
class ThreadedLinear(GemmLinear):
    """``Linear``'s three GEMMs (``gemm_linear.py``) through ``gemm``: split over the threads."""

    gemm = staticmethod(gemm)
