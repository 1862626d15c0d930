"""RMSNorm as cache-sized row-block kernels over minillm's threads (the fast version of ops.RMSNorm).

The reference (``ops/norms.py``) computes ``x * r * w`` with r = (mean(x^2) + eps)^(-1/2) in
whole-array expressions, each making a temporary as large as x. Here every step writes into a
buffer given to it, on blocks of rows small enough to stay in the cache (``threads.py``). The
arithmetic is the reference's, step for step, so the results are bitwise equal.
"""
from __future__ import annotations

import numpy as np

from ..ops.elementwise import sum_to
from ..ops.norms import RMSNorm
from .dispatch import numpy_float, register
from .threads import for_each_row_block


@register(RMSNorm, accepts=lambda x, weight, *rest: numpy_float(x))
class BlockedRMSNorm(RMSNorm):
    """``RMSNorm`` with forward and backward as in-place row-block kernels."""

    def forward(self, x, weight, eps=1e-6):
        self.x, self.weight = x, weight
        self.r = np.empty(x.shape[:-1] + (1,), dtype=x.dtype)  # 1 / rms, one per row
        out = np.empty_like(x)

        def block(x, r, out):
            np.multiply(x, x, out=out)  # out is scratch until the last two lines
            out.mean(axis=-1, keepdims=True, out=r)
            r += eps
            np.sqrt(r, out=r)
            np.divide(1, r, out=r)
            np.multiply(x, r, out=out)
            out *= weight

        for_each_row_block(block, x, self.r, out)
        return out

    def backward(self, grad):
        # The reference's dx = (h - x (mean(h x) r r)) r with h = g w, and g x r for dw.
        x, weight = self.x, self.weight
        gx = np.empty_like(x) if self.needs_input_grad[0] else None
        gxr = np.empty_like(x) if self.needs_input_grad[1] else None  # g * x * r, before the row sum

        def block(x, r, g, *outs):
            outs = list(outs)
            if gx is not None:
                out = outs.pop(0)
                h = g * weight
                np.multiply(h, x, out=out)
                m = out.mean(axis=-1, keepdims=True)
                m *= r
                m *= r                              # mean(h * x) r r, one per row
                np.multiply(x, m, out=out)
                np.subtract(h, out, out=out)
                out *= r
            if gxr is not None:
                out = outs.pop(0)
                np.multiply(g, x, out=out)
                out *= r

        for_each_row_block(block, x, self.r, grad, *[o for o in (gx, gxr) if o is not None])
        gw = sum_to(gxr, weight.shape) if gxr is not None else None
        return gx, gw
