"""Reductions over axis=None / int / negative int / tuple, with and without keepdims."""
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from minillm import Tensor, ops
from tests.gradcheck import OP_SETTINGS, assert_same_on_gpu, gradcheck, normal, seeds, shapes


@st.composite
def shape_axis_keepdims(draw, min_dims=1):
    """A shape, an axis spec valid for it (None, int, negative int or tuple), and keepdims."""
    shape = draw(shapes(min_dims=min_dims, max_dims=3))
    ndim = len(shape)
    if ndim == 0:  # a 0-d array has no axis to name
        return shape, None, draw(st.booleans())
    axis = draw(st.one_of(
        st.none(),
        st.integers(-ndim, ndim - 1),
        st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True).map(tuple),
    ))
    return shape, axis, draw(st.booleans())


def _distinct(rng, shape):
    """Values that are pairwise at least 0.1 apart, so the maximum is unique."""
    return rng.permutation(int(np.prod(shape))).reshape(shape) * 0.1 - 0.5


REDUCTIONS = {
    "sum": (ops.sum, lambda x, axis, keepdims: np.sum(x, axis=axis, keepdims=keepdims)),
    "mean": (ops.mean, lambda x, axis, keepdims: np.mean(x, axis=axis, keepdims=keepdims)),
    "max": (ops.max, lambda x, axis, keepdims: np.max(x, axis=axis, keepdims=keepdims)),
    "var": (ops.var, lambda x, axis, keepdims: np.var(x, axis=axis, keepdims=keepdims)),
    "logsumexp": (ops.logsumexp,
                  lambda x, axis, keepdims: np.log(np.sum(np.exp(x), axis=axis, keepdims=keepdims))),
}


@pytest.mark.parametrize("name", REDUCTIONS)
@OP_SETTINGS
@given(case=shape_axis_keepdims(), seed=seeds)
def test_reduction_gradient_matches_central_differences(name, case, seed):
    shape, axis, keepdims = case
    x = _distinct(np.random.default_rng(seed), shape)
    gradcheck(lambda a: REDUCTIONS[name][0](a, axis=axis, keepdims=keepdims), x)


@pytest.mark.parametrize("name", REDUCTIONS)
@OP_SETTINGS
@given(case=shape_axis_keepdims(min_dims=0), seed=seeds)
def test_reduction_value_and_shape_match_numpy(name, case, seed):
    shape, axis, keepdims = case
    x = normal(np.random.default_rng(seed), shape)
    op, reference = REDUCTIONS[name]
    out = op(Tensor(x), axis=axis, keepdims=keepdims)
    expected = reference(x, axis, keepdims)
    assert out.shape == np.shape(expected)
    np.testing.assert_allclose(out.data, expected, rtol=1e-12, atol=1e-14)


@OP_SETTINGS
@given(case=shape_axis_keepdims(), seed=seeds)
def test_unbiased_var_gradient_matches_central_differences(case, seed):
    shape, axis, keepdims = case
    x = normal(np.random.default_rng(seed), shape)
    count = x.size // np.sum(x, axis=axis, keepdims=True).size
    assume(count >= 2)  # correction=1 needs at least two elements per reduction
    gradcheck(lambda a: ops.var(a, axis=axis, keepdims=keepdims, correction=1), x)


def test_var_with_correction_one_matches_numpy_ddof_one(rng):
    x = normal(rng, (3, 5))
    np.testing.assert_allclose(ops.var(Tensor(x), axis=1, correction=1).data, np.var(x, axis=1, ddof=1))


def test_max_ties_share_the_gradient_equally():
    x = Tensor(np.array([[3.0, 1.0, 3.0], [0.0, 2.0, 1.0]]), requires_grad=True)
    ops.max(x, axis=1).backward(np.array([1.0, 1.0]))
    np.testing.assert_array_equal(x.grad, [[0.5, 0.0, 0.5], [0.0, 1.0, 0.0]])


def test_logsumexp_does_not_overflow_for_large_inputs():
    x = Tensor(np.array([1000.0, 1000.0, -1000.0]))
    with np.errstate(over="raise"):
        out = ops.logsumexp(x).item()
    assert out == pytest.approx(1000.0 + np.log(2.0), rel=1e-15)


def test_reduction_rejects_an_out_of_range_axis():
    with pytest.raises(ValueError, match="axis 2 is out of range for a tensor with 2 dimensions"):
        ops.sum(Tensor(np.ones((2, 3))), axis=2)


def test_tensor_methods_reduce_like_the_functions(rng):
    x = normal(rng, (2, 3))
    np.testing.assert_allclose(Tensor(x).sum(axis=0).data, x.sum(axis=0))
    np.testing.assert_allclose(Tensor(x).mean(axis=-1, keepdims=True).data, x.mean(axis=-1, keepdims=True))


@pytest.mark.gpu
@pytest.mark.parametrize("name", REDUCTIONS)
def test_reduction_on_cupy_matches_numpy(name, rng):
    assert_same_on_gpu(lambda a: REDUCTIONS[name][0](a, axis=1), _distinct(rng, (3, 4, 2)))
