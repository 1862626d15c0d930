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


def flush_subnormals(array):
    """Set every entry of ``array`` with 0 < |x| < tiny to 0, in place; return ``array``."""
    tiny = np.finfo(array.dtype).tiny
    np.copyto(array, 0, where=np.abs(array) < tiny)
    return array


def count_subnormals(array) -> int:
    """How many entries of ``array`` are subnormal (nonzero and below ``tiny`` in magnitude)."""
    magnitude = np.abs(array)
    return int(np.count_nonzero((magnitude < np.finfo(array.dtype).tiny) & (magnitude > 0)))
