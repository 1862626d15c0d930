"""kernels/matmul.cu on the CPU emulator, against NumPy float64.

Every version (naive, tiled, blocked, warptiled, double_buffered) and every transpose pair, for shapes that are mostly not
multiples of the tiles, batched or not, with aligned and misaligned pointers (the blocked kernel's
float4 path and its scalar fallback).
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from minillm.fast import cuda as kernels
from tests.kernels.reference import assert_close

VERSIONS = ["naive", "tiled", "blocked", "warptiled", "double_buffered"]
# Largest M, N per version: past one block tile (32x8, 16x16, 128x128 for the last three) but cheap to emulate.
MAX_MN = {"naive": 48, "tiled": 40, "blocked": 160, "warptiled": 160, "double_buffered": 160}


def float32_array(rng, shape, misaligned=False):
    """Random float32 array; ``misaligned`` starts it 4 bytes past a 16-byte boundary."""
    values = rng.uniform(-1, 1, size=shape).astype(np.float32)
    if not misaligned:
        return values
    buffer = np.empty(values.size + 1, np.float32)
    array = buffer[1:].reshape(shape)
    array[...] = values
    return array


def stored_shape(rows, cols, transpose):
    return (cols, rows) if transpose else (rows, cols)


def reference_matmul(a, b, transpose_a, transpose_b):
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    return (a.swapaxes(-1, -2) if transpose_a else a) @ (b.swapaxes(-1, -2) if transpose_b else b)


def check(emulator, a, b, transpose_a, transpose_b, version):
    c = kernels._matmul(emulator.backend(), a, b, transpose_a, transpose_b, version)
    k = a.shape[-1 if not transpose_a else -2]
    # fp32 accumulation of k products of numbers in [-1, 1]
    assert_close(c, reference_matmul(a, b, transpose_a, transpose_b), atol=1e-6 * k, rtol=1e-5, name=version)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("transpose_a", [False, True], ids=["a", "aT"])
@pytest.mark.parametrize("transpose_b", [False, True], ids=["b", "bT"])
def test_every_matmul_kernel_matches_numpy_on_a_ragged_shape(emulator, version, transpose_a, transpose_b):
    rng = np.random.default_rng(0)
    m, n, k = 33, 37, 35  # no tile size divides any of them
    a = float32_array(rng, stored_shape(m, k, transpose_a))
    b = float32_array(rng, stored_shape(k, n, transpose_b))
    check(emulator, a, b, transpose_a, transpose_b, version)


@st.composite
def matmul_problems(draw, version):
    m = draw(st.integers(1, MAX_MN[version]))
    n = draw(st.integers(1, MAX_MN[version]))
    k = draw(st.integers(1, 70))
    transpose_a, transpose_b, misaligned = draw(st.booleans()), draw(st.booleans()), draw(st.booleans())
    batching = draw(st.sampled_from(["none", "both", "a_only", "b_only"]))
    batch = draw(st.integers(2, 3)) if batching != "none" else None
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    a_shape = stored_shape(m, k, transpose_a)
    b_shape = stored_shape(k, n, transpose_b)
    if batching in ("both", "a_only"):
        a_shape = (batch,) + a_shape
    if batching in ("both", "b_only"):
        b_shape = (batch,) + b_shape
    return float32_array(rng, a_shape, misaligned), float32_array(rng, b_shape, misaligned), transpose_a, transpose_b


@pytest.mark.parametrize("version", VERSIONS)
@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_matmul_matches_float64_for_any_shape_layout_and_batch(emulator, version, data):
    a, b, transpose_a, transpose_b = data.draw(matmul_problems(version))
    check(emulator, a, b, transpose_a, transpose_b, version)
