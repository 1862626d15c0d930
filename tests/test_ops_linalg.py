"""matmul (numpy's rules: broadcast batch dimensions, promote vectors) and linear (x W^T + b)."""
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minillm import Tensor, ops
from tests.gradcheck import OP_SETTINGS, assert_same_on_gpu, broadcastable_shapes, gradcheck, normal, seeds


@OP_SETTINGS
@given(batch=broadcastable_shapes(max_dims=2), mkn=st.tuples(*[st.integers(1, 3)] * 3), seed=seeds)
def test_matmul_gradient_matches_central_differences_with_broadcast_batch_dims(batch, mkn, seed):
    m, k, n = mkn
    rng = np.random.default_rng(seed)
    a, b = normal(rng, batch[0] + (m, k)), normal(rng, batch[1] + (k, n))
    np.testing.assert_allclose(ops.matmul(Tensor(a), Tensor(b)).data, np.matmul(a, b), rtol=1e-13)
    gradcheck(ops.matmul, a, b)


@pytest.mark.parametrize("a_shape, b_shape", [
    ((3,), (3,)),  # vector . vector -> scalar
    ((3,), (3, 2)),  # vector @ matrix
    ((2, 3), (3,)),  # matrix @ vector
    ((3,), (4, 3, 2)),  # vector @ batch of matrices
    ((4, 2, 3), (3,)),  # batch of matrices @ vector
])
def test_matmul_with_one_dimensional_operands_matches_numpy_and_central_differences(a_shape, b_shape, rng):
    a, b = normal(rng, a_shape), normal(rng, b_shape)
    out = ops.matmul(Tensor(a), Tensor(b))
    assert out.shape == np.matmul(a, b).shape
    np.testing.assert_allclose(out.data, np.matmul(a, b), rtol=1e-13)
    gradcheck(ops.matmul, a, b)


def test_matmul_operator_is_matmul(rng):
    a, b = normal(rng, (2, 3)), normal(rng, (3, 4))
    np.testing.assert_allclose((Tensor(a) @ Tensor(b)).data, a @ b)
    np.testing.assert_allclose((a @ Tensor(b)).data, a @ b)


def test_matmul_error_names_the_op_and_both_shapes():
    with pytest.raises(ValueError, match=re.escape("matmul: (2, 3) @ (4, 5): inner dimensions 3 and 4 differ")):
        ops.matmul(Tensor(np.ones((2, 3))), Tensor(np.ones((4, 5))))


def test_matmul_error_for_batch_dims_that_do_not_broadcast():
    message = "matmul: (2, 1, 3) @ (3, 3, 4): batch dimensions do not broadcast"
    with pytest.raises(ValueError, match=re.escape(message)):
        ops.matmul(Tensor(np.ones((2, 1, 3))), Tensor(np.ones((3, 3, 4))))


def test_matmul_rejects_a_scalar_operand():
    with pytest.raises(ValueError, match=re.escape("matmul: () @ (3,)")):
        ops.matmul(Tensor(np.array(2.0)), Tensor(np.ones(3)))


# ------------------------------------------------------------------------------ linear
@pytest.mark.parametrize("x_shape", [(4,), (3, 4), (2, 3, 4)], ids=["1d", "2d", "3d"])
@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no_bias"])
def test_linear_gradient_matches_central_differences(x_shape, with_bias, rng):
    x, w, b = normal(rng, x_shape), normal(rng, (5, 4)), normal(rng, (5,))
    expected = x @ w.T + (b if with_bias else 0.0)
    if with_bias:
        np.testing.assert_allclose(ops.linear(Tensor(x), Tensor(w), Tensor(b)).data, expected, rtol=1e-13)
        gradcheck(ops.linear, x, w, b)
    else:
        np.testing.assert_allclose(ops.linear(Tensor(x), Tensor(w)).data, expected, rtol=1e-13)
        gradcheck(ops.linear, x, w)


def test_linear_error_names_the_op_and_both_shapes():
    message = "linear: input (2, 3) has 3 features but weight (4, 5) expects 5"
    with pytest.raises(ValueError, match=re.escape(message)):
        ops.linear(Tensor(np.ones((2, 3))), Tensor(np.ones((4, 5))))


@pytest.mark.gpu
@pytest.mark.parametrize("case", ["matmul_batched", "matmul_vector", "linear_3d"])
def test_linalg_op_on_cupy_matches_numpy(case, rng):
    if case == "matmul_batched":
        assert_same_on_gpu(ops.matmul, normal(rng, (2, 1, 3, 4)), normal(rng, (3, 4, 5)))
    elif case == "matmul_vector":
        assert_same_on_gpu(ops.matmul, normal(rng, (4,)), normal(rng, (2, 4, 3)))
    else:
        assert_same_on_gpu(ops.linear, normal(rng, (2, 3, 4)), normal(rng, (5, 4)), normal(rng, (5,)))
