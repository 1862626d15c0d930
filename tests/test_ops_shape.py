"""Shape ops move values without changing them; their gradients move back to where values came from."""
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minillm import Tensor, ops
from tests.gradcheck import (OP_SETTINGS, assert_same_on_gpu, broadcastable_shapes, gradcheck, normal,
                             seeds, shapes)


# ------------------------------------------------------------------------------ reshape / permute
@OP_SETTINGS
@given(shape=shapes(min_dims=1), seed=seeds, data=st.data())
def test_reshape_gradient_matches_central_differences(shape, seed, data):
    x = normal(np.random.default_rng(seed), shape)
    target = data.draw(st.sampled_from([(-1,), (x.size, 1), (1, -1), tuple(reversed(shape))]))
    out = ops.reshape(Tensor(x), target)
    np.testing.assert_array_equal(out.data, x.reshape(target))
    gradcheck(lambda a: ops.reshape(a, target), x)


def test_reshape_accepts_sizes_as_separate_arguments_and_view_is_reshape():
    x = Tensor(np.arange(6.0))
    assert ops.reshape(x, 2, 3).shape == (2, 3)
    assert x.view(3, -1).shape == (3, 2)


@OP_SETTINGS
@given(shape=shapes(min_dims=1), seed=seeds, data=st.data())
def test_permute_gradient_matches_central_differences(shape, seed, data):
    axes = tuple(data.draw(st.permutations(range(len(shape)))))
    x = normal(np.random.default_rng(seed), shape)
    np.testing.assert_array_equal(ops.permute(Tensor(x), axes).data, np.transpose(x, axes))
    gradcheck(lambda a: ops.permute(a, axes), x)


@OP_SETTINGS
@given(shape=shapes(min_dims=2), seed=seeds, data=st.data())
def test_transpose_of_two_axes_gradient_matches_central_differences(shape, seed, data):
    ndim = len(shape)
    axis0, axis1 = data.draw(st.integers(-ndim, ndim - 1)), data.draw(st.integers(-ndim, ndim - 1))
    x = normal(np.random.default_rng(seed), shape)
    np.testing.assert_array_equal(ops.transpose(Tensor(x), axis0, axis1).data, np.swapaxes(x, axis0, axis1))
    gradcheck(lambda a: ops.transpose(a, axis0, axis1), x)


def test_T_reverses_all_axes():
    x = np.arange(24.0).reshape(2, 3, 4)
    np.testing.assert_array_equal(Tensor(x).T.data, x.T)


def test_permute_rejects_a_non_permutation():
    with pytest.raises(ValueError, match=re.escape("permute: (0, 0) is not a permutation")):
        ops.permute(Tensor(np.ones((2, 3))), (0, 0))


# ------------------------------------------------------------------------------ broadcast_to
@OP_SETTINGS
@given(pair=broadcastable_shapes(), seed=seeds)
def test_broadcast_to_gradient_matches_central_differences(pair, seed):
    target = np.broadcast_shapes(*pair)
    x = normal(np.random.default_rng(seed), pair[0])
    gradcheck(lambda a: ops.broadcast_to(a, target), x)


def test_broadcast_to_gradient_sums_the_copies():
    x = Tensor(np.array([[1.0], [2.0]]), requires_grad=True)  # (2, 1)
    ops.broadcast_to(x, (3, 2, 4)).backward(np.ones((3, 2, 4)))
    np.testing.assert_array_equal(x.grad, [[12.0], [12.0]])


# ------------------------------------------------------------------------------ concat / stack / split
@OP_SETTINGS
@given(shape=shapes(min_dims=1), seed=seeds, data=st.data())
def test_concat_gradient_matches_central_differences(shape, seed, data):
    rng = np.random.default_rng(seed)
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    lengths = data.draw(st.lists(st.integers(1, 3), min_size=1, max_size=3))
    parts = []
    for n in lengths:
        part_shape = list(shape)
        part_shape[axis] = n
        parts.append(normal(rng, tuple(part_shape)))
    np.testing.assert_array_equal(ops.concat([Tensor(p) for p in parts], axis=axis).data,
                                  np.concatenate(parts, axis=axis))
    gradcheck(lambda *ts: ops.concat(list(ts), axis=axis), *parts)


@OP_SETTINGS
@given(shape=shapes(), seed=seeds, count=st.integers(1, 3), data=st.data())
def test_stack_gradient_matches_central_differences(shape, seed, count, data):
    rng = np.random.default_rng(seed)
    axis = data.draw(st.integers(-len(shape) - 1, len(shape)))
    parts = [normal(rng, shape) for _ in range(count)]
    np.testing.assert_array_equal(ops.stack([Tensor(p) for p in parts], axis=axis).data,
                                  np.stack(parts, axis=axis))
    gradcheck(lambda *ts: ops.stack(list(ts), axis=axis), *parts)


@pytest.mark.parametrize("sections", [2, [1, 3, 1], [5]])
@pytest.mark.parametrize("axis", [0, -1])
def test_split_gradient_matches_central_differences(sections, axis, rng):
    x = normal(rng, (5, 5))
    pieces = ops.split(Tensor(x), sections, axis=axis)
    sizes = [p.shape[axis] for p in pieces]
    assert sizes == ([2, 2, 1] if sections == 2 else sections)
    np.testing.assert_array_equal(np.concatenate([p.data for p in pieces], axis=axis), x)
    gradcheck(lambda a: ops.split(a, sections, axis=axis), x)


def test_split_rejects_sizes_that_do_not_add_up():
    with pytest.raises(ValueError, match=re.escape("split: sizes [2, 2] do not add up to 5")):
        ops.split(Tensor(np.ones(5)), [2, 2])


# ------------------------------------------------------------------------------ pad
@OP_SETTINGS
@given(shape=shapes(min_dims=1), seed=seeds, data=st.data())
def test_pad_gradient_matches_central_differences(shape, seed, data):
    widths = tuple((data.draw(st.integers(0, 2)), data.draw(st.integers(0, 2))) for _ in shape)
    x = normal(np.random.default_rng(seed), shape)
    out = ops.pad(Tensor(x), widths, value=-1.5)
    np.testing.assert_array_equal(out.data, np.pad(x, widths, constant_values=-1.5))
    gradcheck(lambda a: ops.pad(a, widths, value=-1.5), x)


def test_pad_rejects_a_width_list_of_the_wrong_length():
    with pytest.raises(ValueError, match=re.escape("pad: pad_width has 1 entries for a tensor of shape (2, 3)")):
        ops.pad(Tensor(np.ones((2, 3))), [(1, 1)])


# ------------------------------------------------------------------------------ getitem
BASIC_INDICES = [
    1, -1, slice(1, None), slice(None, None, 2), slice(None, None, -1),
    (0, slice(1, 3)), (Ellipsis, 0), (None, slice(None), 1), (slice(0, 2), Ellipsis, slice(None, None, -2)),
]


@pytest.mark.parametrize("index", BASIC_INDICES, ids=repr)
def test_getitem_with_basic_index_gradient_matches_central_differences(index, rng):
    x = normal(rng, (3, 4, 2))
    np.testing.assert_array_equal(Tensor(x)[index].data, x[index])
    gradcheck(lambda a: a[index], x)


ARRAY_INDICES = [
    np.array([0, 2, 0, 0]),  # repeated rows
    [1, 1],  # a list is an integer array too
    (np.array([0, 1, 0]), np.array([3, 3, 3])),  # repeated (row, col) pairs
    (slice(None), np.array([[0, 0], [3, 1]])),  # 2-D integer array after a slice
    np.array([True, False, True]),  # boolean mask
]


@pytest.mark.parametrize("index", ARRAY_INDICES, ids=["rows", "list", "pairs", "slice+2d", "bool"])
def test_getitem_with_integer_array_index_gradient_matches_central_differences(index, rng):
    x = normal(rng, (3, 4))
    np_index = np.asarray(index) if isinstance(index, list) else index
    np.testing.assert_array_equal(Tensor(x)[index].data, x[np_index])
    gradcheck(lambda a: a[index], x)


def test_getitem_with_repeated_indices_scatter_adds_the_gradient():
    x = Tensor(np.zeros((3, 2)), requires_grad=True)
    out = x[np.array([2, 0, 2, 2])]
    out.backward(np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [4.0, 40.0]]))
    # Row 2 was picked three times: it gets 1+3+4 and 10+30+40.
    np.testing.assert_array_equal(x.grad, [[2.0, 20.0], [0.0, 0.0], [8.0, 80.0]])


def test_getitem_accepts_an_integer_tensor_as_index(rng):
    x = normal(rng, (4, 2))
    ids = Tensor(np.array([3, 3, 1]))
    np.testing.assert_array_equal(Tensor(x)[ids].data, x[[3, 3, 1]])
    gradcheck(lambda a: a[ids], x)


def test_getitem_out_of_range_names_the_op_and_the_shape():
    with pytest.raises(IndexError, match=re.escape("getitem: index 5 on shape (3,)")):
        Tensor(np.ones(3))[5]


# ------------------------------------------------------------------------------ errors
def test_reshape_error_names_the_op_and_both_shapes():
    with pytest.raises(ValueError, match=re.escape("reshape: cannot reshape (2, 3) (6 elements) into (4, 2)")):
        ops.reshape(Tensor(np.ones((2, 3))), (4, 2))


def test_concat_error_names_the_op_and_all_shapes():
    with pytest.raises(ValueError, match=re.escape("concat: shapes [(2, 3), (2, 4)] differ outside axis 0")):
        ops.concat([Tensor(np.ones((2, 3))), Tensor(np.ones((2, 4)))], axis=0)


def test_broadcast_to_error_names_the_op_and_both_shapes():
    with pytest.raises(ValueError, match=re.escape("broadcast_to: cannot broadcast (2, 3) to (3, 3)")):
        ops.broadcast_to(Tensor(np.ones((2, 3))), (3, 3))


def test_stack_error_names_the_op_and_the_shapes():
    with pytest.raises(ValueError, match=re.escape("stack: all shapes must be equal, got [(2,), (3,)]")):
        ops.stack([Tensor(np.ones(2)), Tensor(np.ones(3))])


# ------------------------------------------------------------------------------ GPU
GPU_CASES = {
    "reshape_permute": lambda a: ops.permute(ops.reshape(a, (2, 3, 4)), (2, 0, 1)),
    "broadcast_to": lambda a: ops.broadcast_to(ops.reshape(a, (1, 24)), (3, 24)),
    "concat_split": lambda a: ops.concat(ops.split(a, [1, 2], axis=0)[::-1], axis=0),
    "pad": lambda a: ops.pad(a, ((1, 0), (2, 1))),
    "getitem_basic": lambda a: a[1:, ::2],
    "getitem_repeated": lambda a: a[np.array([0, 0, 2])],
}


@pytest.mark.gpu
@pytest.mark.parametrize("name", GPU_CASES)
def test_shape_op_on_cupy_matches_numpy(name, rng):
    assert_same_on_gpu(GPU_CASES[name], normal(rng, (3, 8)))
