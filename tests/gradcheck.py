"""Numerical gradient checking, and the hypothesis strategies the op tests draw inputs from.

``gradcheck(fn, *arrays)`` is the test that every backward is right. It picks a fixed random
projection R of the output, so the scalar L = sum(out * R) depends on every output element, then
compares the analytic dL/dx from ``backward`` with central differences,

    dL/dx_j ~ (L(x + eps e_j) - L(x - eps e_j)) / (2 eps),

in float64, on the reference formulas (``minillm.fast_paths(False)``): the fast layer is checked
against those in tests/test_fast_vs_reference.py. The error of a central difference is O(eps^2) from truncation plus O(1e-16 / eps) from
rounding: about 1e-10 at eps = 1e-6, far inside rtol = 1e-5, atol = 1e-7. A wrong backward (a
missing factor, a transposed matrix, a forgotten sum over a broadcast axis) is off by O(1), so it
fails loudly.
"""
from __future__ import annotations

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import mutually_broadcastable_shapes

import minillm
from minillm import Tensor

OP_SETTINGS = settings(max_examples=15, deadline=None)
"""Hypothesis settings for op tests: few examples (each one runs many forward passes), no deadline."""


def _as_list(out):
    return list(out) if isinstance(out, (list, tuple)) else [out]


def gradcheck(fn, *inputs, eps: float = 1e-6, rtol: float = 1e-5, atol: float = 1e-7, seed: int = 0):
    """Assert that the gradients ``backward`` gives for ``fn`` match central differences, with the
    fast layer off (every op runs its reference formula).

    Args:
        fn: takes one Tensor per input and returns a Tensor or a list of Tensors. Constants
            (integer ids, masks, options) should be closed over, not passed.
        inputs: float arrays; each becomes a float64 leaf that requires grad.
        eps, rtol, atol: step and tolerances of the comparison.
        seed: seed of the random projection R.
    """
    with minillm.fast_paths(False):
        _gradcheck(fn, inputs, eps, rtol, atol, seed)


def _gradcheck(fn, inputs, eps, rtol, atol, seed):
    arrays = [np.array(x, dtype=np.float64) for x in inputs]
    leaves = [Tensor(a.copy(), requires_grad=True) for a in arrays]
    outs = _as_list(fn(*leaves))
    rng = np.random.default_rng(seed)
    projections = [rng.standard_normal(o.shape) for o in outs]
    for out, r in zip(outs, projections):
        assert out.dtype == np.float64, f"float64 inputs gave a {out.dtype} output"
        if out.requires_grad:  # dL/dout = R, so backward(R) gives dL/dinputs
            out.backward(r, retain_graph=True)

    def loss(values) -> float:
        with minillm.no_grad():
            outs = _as_list(fn(*[Tensor(v) for v in values]))
        return float(sum((o.data * r).sum() for o, r in zip(outs, projections)))

    for i, (leaf, a) in enumerate(zip(leaves, arrays)):
        analytic = np.zeros_like(a) if leaf.grad is None else leaf.grad
        assert analytic.shape == a.shape and analytic.dtype == np.float64, (
            f"input {i}: gradient has shape {analytic.shape} dtype {analytic.dtype}, "
            f"input has shape {a.shape} dtype float64")
        numeric = np.zeros_like(a)
        work = [x.copy() for x in arrays]
        for j in np.ndindex(a.shape):
            work[i][j] = a[j] + eps
            plus = loss(work)
            work[i][j] = a[j] - eps
            minus = loss(work)
            work[i][j] = a[j]
            numeric[j] = (plus - minus) / (2 * eps)
        np.testing.assert_allclose(analytic, numeric, rtol=rtol, atol=atol,
                                   err_msg=f"analytic vs numerical gradient of input {i}, shape {a.shape}")


def forward_and_grads(fn, *inputs, seed: int = 0):
    """``fn``'s outputs and the gradients of sum(out * R) for each input, as NumPy arrays.

    Used to compare two computations of the same function (a fused op against its composition
    from primitives, or CuPy against NumPy). Inputs are used as given (dtype and device kept).
    """
    leaves = [Tensor(x, requires_grad=True) for x in inputs]
    outs = _as_list(fn(*leaves))
    rng = np.random.default_rng(seed)
    for out in outs:
        r = minillm.to_device(rng.standard_normal(out.shape).astype(out.dtype), out.device)
        out.backward(r, retain_graph=True)
    grads = [np.zeros(leaf.shape) if leaf.grad is None else minillm.to_device(leaf.grad, "cpu")
             for leaf in leaves]
    return [o.numpy() for o in outs], grads


def assert_same_computation(fn_a, fn_b, *inputs, rtol: float = 1e-9, atol: float = 1e-10):
    """Assert that two functions agree in their outputs and in their gradients on ``inputs``."""
    out_a, grads_a = forward_and_grads(fn_a, *inputs)
    out_b, grads_b = forward_and_grads(fn_b, *inputs)
    assert len(out_a) == len(out_b)
    for a, b in zip(out_a, out_b):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg="outputs differ")
    for i, (a, b) in enumerate(zip(grads_a, grads_b)):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=f"gradients of input {i} differ")


def assert_same_on_gpu(fn, *inputs, rtol: float = 1e-4, atol: float = 1e-5):
    """Run ``fn`` on NumPy and on CuPy float32 copies of ``inputs``; outputs and gradients must agree."""
    cpu = [np.asarray(x, dtype=np.float32) for x in inputs]
    gpu = [minillm.to_device(x, "cuda") for x in cpu]
    out_cpu, grads_cpu = forward_and_grads(fn, *cpu)
    out_gpu, grads_gpu = forward_and_grads(fn, *gpu)
    for a, b in zip(out_cpu + grads_cpu, out_gpu + grads_gpu):
        np.testing.assert_allclose(b, a, rtol=rtol, atol=atol)


# ---------------------------------------------------------------------------------- strategies
def shapes(min_dims: int = 0, max_dims: int = 3, max_side: int = 4):
    """Array shapes with small sides, size-1 sides included."""
    return st.lists(st.integers(1, max_side), min_size=min_dims, max_size=max_dims).map(tuple)


def broadcastable_shapes(num_shapes: int = 2, min_dims: int = 0, max_dims: int = 3, max_side: int = 3):
    """``num_shapes`` shapes that broadcast together (missing leading axes and size-1 axes)."""
    return mutually_broadcastable_shapes(num_shapes=num_shapes, min_dims=min_dims, max_dims=max_dims,
                                         min_side=1, max_side=max_side).map(lambda b: b.input_shapes)


seeds = st.integers(0, 2**32 - 1)
"""Seeds for NumPy generators: values come from a generator, shapes and options from hypothesis."""


def normal(rng, shape, scale: float = 1.0):
    """Standard-normal float64 values."""
    return scale * rng.standard_normal(shape)


def away_from_zero(rng, shape, low: float = 0.2, high: float = 2.0):
    """Values with low <= |x| <= high and a random sign (clear of a kink or pole at 0)."""
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(low, high, size=shape)


def positive(rng, shape, low: float = 0.5, high: float = 2.0):
    """Values in [low, high] (the domain of log, sqrt and a tensor exponent)."""
    return rng.uniform(low, high, size=shape)
