"""Flushing subnormal floats to zero: numerical hygiene that buys speed.

A float32 below ``finfo(float32).tiny`` (about 1.18e-38) in magnitude, but not zero, is
*subnormal*: stored with fewer significant bits, and on x86 CPUs handled by a slow microcode
path. A matrix product whose input holds many of them runs several times slower (OpenBLAS's
SGEMM does), and so does elementwise arithmetic on them. They arise where a probability is
exponentially small: softmax of well-separated logits, e^(-100) ~ 4e-44. Their value is below
anything float32 training can resolve next to numbers near 1, so setting them to zero changes
no result beyond float32 rounding. See docs/speed.md for where they come from and what it costs.

PyTorch does not flush by default either (``torch.set_flush_denormal`` is off). minillm flushes
where subnormals are made, in the fast layer, so the reference formulas in ops/ stay exact.
"""
from __future__ import annotations

import numpy as np

from .threads import for_each_row_block

_EXPONENT_BITS = {np.dtype(np.float32): (np.int32, 0x7F800000),
                  np.dtype(np.float64): (np.int64, 0x7FF0000000000000)}


def flush_subnormals(array):
    """Set every entry of ``array`` with 0 < |x| < tiny to 0, in place; return ``array``.

    A float is subnormal (or zero) exactly when its exponent bits are all 0, so the test is one
    integer AND per entry on the float's bits (no ``abs`` temporary), in cache-sized row blocks
    over the threads.
    """
    int_type, exponent = _EXPONENT_BITS[array.dtype]

    def block(a):
        np.copyto(a, 0, where=(a.view(int_type) & exponent) == 0)

    for_each_row_block(block, array)
    return array


def count_subnormals(array) -> int:
    """How many entries of ``array`` are subnormal (nonzero and below ``tiny`` in magnitude)."""
    magnitude = np.abs(array)
    return int(np.count_nonzero((magnitude < np.finfo(array.dtype).tiny) & (magnitude > 0)))
