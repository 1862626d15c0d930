"""Shared pytest fixtures and markers for minillm's tests.

Keep this file small: helpers that tests import live in their own modules (tests/gradcheck.py).
"""
import numpy as np
import pytest

import minillm


def pytest_collection_modifyitems(config, items):
    """Skip every ``@pytest.mark.gpu`` test when CuPy has no CUDA device to run on."""
    if minillm.cuda_available():
        return
    skip = pytest.mark.skip(reason="needs CuPy and a CUDA GPU (minillm.cuda_available() is False)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def rng():
    """A fresh, fixed-seed NumPy generator for test inputs (independent of minillm's own RNG)."""
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def _reset_minillm_seed():
    """Every test starts from ``manual_seed(0)``, so tests do not depend on the order they run in."""
    minillm.manual_seed(0)
    yield
