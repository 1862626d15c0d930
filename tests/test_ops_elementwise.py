"""Elementwise ops: values against NumPy/SciPy, gradients against central differences."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minillm import Tensor, ops
from tests.gradcheck import (OP_SETTINGS, assert_same_on_gpu, away_from_zero, broadcastable_shapes,
                             gradcheck, normal, positive, seeds, shapes)

# ------------------------------------------------------------------------------ binary arithmetic
BINARY = {
    "add": (ops.add, np.add),
    "sub": (ops.sub, np.subtract),
    "mul": (ops.mul, np.multiply),
    "div": (ops.div, np.divide),
}


@pytest.mark.parametrize("name", BINARY)
@OP_SETTINGS
@given(pair=broadcastable_shapes(), seed=seeds)
def test_binary_op_gradient_matches_central_differences_under_broadcasting(name, pair, seed):
    rng = np.random.default_rng(seed)
    a = normal(rng, pair[0])
    b = away_from_zero(rng, pair[1], low=0.5)  # keeps the divisor clear of 0
    gradcheck(BINARY[name][0], a, b)


@pytest.mark.parametrize("name", BINARY)
def test_binary_op_value_matches_numpy_with_broadcasting(name, rng):
    a, b = normal(rng, (2, 1, 3)), away_from_zero(rng, (4, 1))
    op, reference = BINARY[name]
    np.testing.assert_allclose(op(Tensor(a), Tensor(b)).data, reference(a, b), rtol=1e-15)


def test_python_operators_call_the_ops_with_scalars_on_either_side():
    x = Tensor(np.array([1.0, 2.0, 4.0]))
    np.testing.assert_allclose((2.0 - x).data, [1.0, 0.0, -2.0])
    np.testing.assert_allclose((1.0 / x).data, [1.0, 0.5, 0.25])
    np.testing.assert_allclose((x ** 2).data, [1.0, 4.0, 16.0])
    np.testing.assert_allclose((2.0 ** x).data, [2.0, 4.0, 16.0])
    np.testing.assert_allclose((-x).data, [-1.0, -2.0, -4.0])


def test_sum_to_undoes_broadcasting_by_summing_the_copies():
    grad = np.arange(24.0).reshape(2, 3, 4)
    expected = np.arange(24.0).reshape(2, 3, 4).sum(axis=(0, 2)).reshape(3, 1)
    np.testing.assert_array_equal(ops.sum_to(grad, (3, 1)), expected)
    assert ops.sum_to(grad, (2, 3, 4)) is grad


@OP_SETTINGS
@given(shape=shapes(), seed=seeds)
def test_neg_gradient_matches_central_differences(shape, seed):
    gradcheck(ops.neg, normal(np.random.default_rng(seed), shape))


# ------------------------------------------------------------------------------ pow
@pytest.mark.parametrize("exponent", [2, 3.0, 0.5, -1.5])
@OP_SETTINGS
@given(shape=shapes(), seed=seeds)
def test_pow_with_scalar_exponent_gradient_matches_central_differences(exponent, shape, seed):
    base = positive(np.random.default_rng(seed), shape)
    gradcheck(lambda a: ops.pow(a, exponent), base)


@OP_SETTINGS
@given(pair=broadcastable_shapes(), seed=seeds)
def test_pow_with_tensor_exponent_gradient_matches_central_differences(pair, seed):
    rng = np.random.default_rng(seed)
    gradcheck(ops.pow, positive(rng, pair[0]), normal(rng, pair[1]))


def test_pow_with_scalar_base_differentiates_the_exponent(rng):
    exponent = normal(rng, (3,))
    gradcheck(lambda e: 2.0 ** e, exponent)


# ------------------------------------------------------------------------------ unary math
UNARY = {
    "exp": (ops.exp, np.exp, normal),
    "log": (ops.log, np.log, positive),
    "sqrt": (ops.sqrt, np.sqrt, positive),
    "tanh": (ops.tanh, np.tanh, normal),
    "sigmoid": (ops.sigmoid, lambda x: 1.0 / (1.0 + np.exp(-x)), normal),
    "relu": (ops.relu, lambda x: np.where(x > 0, x, 0.0), away_from_zero),
}


@pytest.mark.parametrize("name", UNARY)
@OP_SETTINGS
@given(shape=shapes(), seed=seeds)
def test_unary_op_gradient_matches_central_differences(name, shape, seed):
    op, _, sample = UNARY[name]
    gradcheck(op, sample(np.random.default_rng(seed), shape))


@pytest.mark.parametrize("name", UNARY)
def test_unary_op_value_matches_numpy(name, rng):
    op, reference, sample = UNARY[name]
    x = sample(rng, (3, 4))
    np.testing.assert_allclose(op(Tensor(x)).data, reference(x), rtol=1e-14, atol=1e-15)


def test_sigmoid_does_not_overflow_for_large_negative_inputs():
    with np.errstate(over="raise"):
        y = ops.sigmoid(Tensor(np.array([-1000.0, 0.0, 1000.0]))).data
    np.testing.assert_allclose(y, [0.0, 0.5, 1.0])


def test_relu_gradient_is_zero_at_zero():
    x = Tensor(np.array([-1.0, 0.0, 2.0]), requires_grad=True)
    ops.relu(x).backward(np.ones(3))
    np.testing.assert_array_equal(x.grad, [0.0, 0.0, 1.0])


# ------------------------------------------------------------------------------ gelu
def _gelu_reference(x, approximate):
    if approximate == "tanh":
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    return np.array([v * 0.5 * (1 + math.erf(v / math.sqrt(2))) for v in x.ravel()]).reshape(x.shape)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@OP_SETTINGS
@given(shape=shapes(), seed=seeds)
def test_gelu_gradient_matches_central_differences(approximate, shape, seed):
    x = normal(np.random.default_rng(seed), shape, scale=2.0)
    gradcheck(lambda a: ops.gelu(a, approximate=approximate), x)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_value_matches_its_formula(approximate, rng):
    x = normal(rng, (5, 3), scale=3.0)
    np.testing.assert_allclose(ops.gelu(Tensor(x), approximate=approximate).data,
                               _gelu_reference(x, approximate), rtol=1e-12, atol=1e-15)


def test_gelu_rejects_an_unknown_approximation():
    with pytest.raises(ValueError, match="gelu: approximate"):
        ops.gelu(Tensor([1.0]), approximate="fast")


# ------------------------------------------------------------------------------ selection
@OP_SETTINGS
@given(triple=broadcastable_shapes(num_shapes=3), seed=seeds)
def test_where_gradient_matches_central_differences(triple, seed):
    rng = np.random.default_rng(seed)
    cond = rng.random(triple[0]) < 0.5
    gradcheck(lambda a, b: ops.where(cond, a, b), normal(rng, triple[1]), normal(rng, triple[2]))


def test_where_sends_each_gradient_only_to_the_chosen_side():
    cond = np.array([True, False, True])
    a = Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    b = Tensor(np.array([4.0, 5.0, 6.0]), requires_grad=True)
    out = ops.where(cond, a, b)
    np.testing.assert_array_equal(out.data, [1.0, 5.0, 3.0])
    out.backward(np.array([10.0, 20.0, 30.0]))
    np.testing.assert_array_equal(a.grad, [10.0, 0.0, 30.0])
    np.testing.assert_array_equal(b.grad, [0.0, 20.0, 0.0])


def _untied_pair(rng, shape_a, shape_b):
    """a on the grid k/4, b on the grid k/4 + 1/8: never equal, always at least 1/8 apart."""
    a = rng.integers(-8, 8, size=shape_a) / 4.0
    b = rng.integers(-8, 8, size=shape_b) / 4.0 + 0.125
    return a, b


@pytest.mark.parametrize("op", [ops.maximum, ops.minimum], ids=["maximum", "minimum"])
@OP_SETTINGS
@given(pair=broadcastable_shapes(), seed=seeds)
def test_maximum_minimum_gradient_matches_central_differences_without_ties(op, pair, seed):
    gradcheck(op, *_untied_pair(np.random.default_rng(seed), *pair))


def test_maximum_and_minimum_split_the_gradient_equally_on_ties():
    for op in (ops.maximum, ops.minimum):
        a = Tensor(np.array([1.0, 2.0, 5.0]), requires_grad=True)
        b = Tensor(np.array([1.0, 3.0, 4.0]), requires_grad=True)
        op(a, b).backward(np.ones(3))
        winner_a = [0.5, 0.0, 1.0] if op is ops.maximum else [0.5, 1.0, 0.0]
        np.testing.assert_array_equal(a.grad, winner_a)
        np.testing.assert_array_equal(b.grad, 1.0 - np.array(winner_a))


@OP_SETTINGS
@given(shape=shapes(), seed=seeds, bounds=st.sampled_from([(-0.5, 0.5), (None, 0.5), (-0.5, None)]))
def test_clip_gradient_matches_central_differences_away_from_the_bounds(shape, seed, bounds):
    rng = np.random.default_rng(seed)
    x = rng.integers(-6, 6, size=shape) / 4.0 + 0.125  # never within 1/8 of +-0.5
    gradcheck(lambda a: ops.clip(a, *bounds), x)


def test_clip_passes_the_gradient_at_a_bound_and_blocks_it_outside():
    x = Tensor(np.array([-2.0, -1.0, 0.0, 1.0, 2.0]), requires_grad=True)
    out = ops.clip(x, -1.0, 1.0)
    np.testing.assert_array_equal(out.data, [-1.0, -1.0, 0.0, 1.0, 1.0])
    out.backward(np.ones(5))
    np.testing.assert_array_equal(x.grad, [0.0, 1.0, 1.0, 1.0, 0.0])


# ------------------------------------------------------------------------------ GPU
GPU_CASES = {
    "add": (ops.add, [(2, 3), (3,)]),
    "mul": (ops.mul, [(2, 3), (2, 1)]),
    "div": (lambda a, b: a / (ops.exp(b) + 1.0), [(2, 3), (3,)]),
    "pow": (lambda a: ops.pow(ops.exp(a), 1.5), [(4,)]),
    "gelu_tanh": (lambda a: ops.gelu(a, approximate="tanh"), [(3, 4)]),
    "gelu": (ops.gelu, [(3, 4)]),
    "sigmoid": (ops.sigmoid, [(3, 4)]),
    "maximum": (ops.maximum, [(2, 3), (3,)]),
    "where": (lambda a, b: ops.where(a.data > 0, a, b), [(2, 3), (2, 3)]),
}


@pytest.mark.gpu
@pytest.mark.parametrize("name", GPU_CASES)
def test_elementwise_op_on_cupy_matches_numpy(name, rng):
    fn, input_shapes = GPU_CASES[name]
    assert_same_on_gpu(fn, *[normal(rng, s) for s in input_shapes])
