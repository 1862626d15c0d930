"""Which implementation runs an op: its reference formula, or a registered fast one.

An op's class (``ops.RMSNorm``, ``optim.AdamW``...) is its key. A fast implementation registers
itself under that key with a predicate saying which arrays it handles; ``lookup`` returns the
first one that accepts, or None, and the reference formula runs. ``MINILLM_FAST=0`` in the
environment, or ``with minillm.fast_paths(False):``, turns every fast path off, on CPU and GPU.

The switch is per thread, as grad mode is (``autograd.no_grad``): ``fast_paths(False)`` in one
thread (a test comparing the two layers, say) leaves the fast paths of other threads alone. Every
thread starts from ``MINILLM_FAST``.
"""
from __future__ import annotations

import contextlib
import os
import threading

import numpy as np

_ENABLED_BY_DEFAULT = os.environ.get("MINILLM_FAST", "1").strip() not in ("0", "false", "False", "no")
_state = threading.local()  # .enabled, once fast_paths has set it in this thread
_registry: dict = {}  # key -> [(accepts, implementation), ...] in registration order


def register(key, accepts=lambda *arrays: True):
    """Decorator: ``implementation`` is a fast version of ``key`` for arrays that ``accepts``."""
    def add(implementation):
        _registry.setdefault(key, []).append((accepts, implementation))
        return implementation
    return add


def lookup(key, *arrays):
    """The first fast implementation of ``key`` that accepts ``arrays``, or None for the reference."""
    if fast_paths_enabled():
        for accepts, implementation in _registry.get(key, ()):
            if accepts(*arrays):
                return implementation
    return None


def context(key):
    """The context manager the fast layer registered for ``key``, entered; a do-nothing one if none.

    For code whose thread use the fast layer arranges without changing a formula: ``generate``
    enters ``context("decoding")``, and ``threads.py`` registers its BLAS hand-off under that name.
    """
    implementation = lookup(key)
    return contextlib.nullcontext() if implementation is None else implementation()


def numpy_float(array) -> bool:
    """For ``accepts``: ``array`` is a float32 or float64 NumPy array (what the CPU kernels take)."""
    return isinstance(array, np.ndarray) and array.dtype in (np.float32, np.float64)


def fast_paths_enabled() -> bool:
    """Whether fast implementations may run in this thread (``MINILLM_FAST`` unset or 1, and no ``fast_paths(False)``)."""
    return getattr(_state, "enabled", _ENABLED_BY_DEFAULT)


@contextlib.contextmanager
def fast_paths(enabled: bool = True):
    """Run the enclosed code, in this thread, with fast paths on or off: ``with minillm.fast_paths(False): ...``."""
    previous, _state.enabled = fast_paths_enabled(), bool(enabled)
    try:
        yield
    finally:
        _state.enabled = previous
