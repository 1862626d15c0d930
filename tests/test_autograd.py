"""The engine: graph building, backward order and accumulation, no_grad, freed graphs, dtypes."""
import numpy as np
import pytest

import minillm
from minillm import Tensor, ops


def test_backward_through_a_100000_op_chain_does_not_recurse():
    x = Tensor(np.array([0.5]), requires_grad=True)
    y = x
    for _ in range(100_000):
        y = y + 1.0  # one Add node per step
    y.backward(np.ones(1))
    assert y.data[0] == pytest.approx(100_000.5)
    np.testing.assert_array_equal(x.grad, [1.0])


def test_no_grad_builds_no_graph():
    x = Tensor(np.ones(3), requires_grad=True)
    with minillm.no_grad():
        assert not minillm.is_grad_enabled()
        y = ops.exp(x * 2.0).sum()
    assert minillm.is_grad_enabled()
    assert y._ctx is None and not y.requires_grad
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward()


def test_enable_grad_records_again_inside_no_grad():
    x = Tensor(np.ones(3), requires_grad=True)
    with minillm.no_grad():
        with minillm.enable_grad():
            y = (x * 2.0).sum()
        assert not minillm.is_grad_enabled()
    y.backward()
    np.testing.assert_array_equal(x.grad, [2.0, 2.0, 2.0])


def test_no_grad_restores_the_previous_mode_after_an_exception():
    with pytest.raises(KeyError):
        with minillm.no_grad():
            raise KeyError("boom")
    assert minillm.is_grad_enabled()


def test_gradients_of_two_separate_graphs_accumulate_into_grad():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    (x * 3.0).sum().backward()
    (x * x).sum().backward()
    np.testing.assert_array_equal(x.grad, 3.0 + 2 * np.array([1.0, 2.0]))
    x.zero_grad()
    assert x.grad is None


def test_second_backward_through_a_freed_graph_raises_a_clear_error():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    loss = (x * x).sum()
    loss.backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time.*retain_graph=True"):
        loss.backward()


def test_retain_graph_allows_a_second_backward_which_accumulates():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    loss = (x * x).sum()
    loss.backward(retain_graph=True)
    loss.backward()
    np.testing.assert_array_equal(x.grad, 2 * 2 * np.array([1.0, 2.0]))


def test_backward_on_a_non_scalar_without_grad_raises():
    y = Tensor(np.ones(3), requires_grad=True) * 2.0
    with pytest.raises(RuntimeError, match=r"grad can be omitted only for a one-element tensor, got shape \(3,\)"):
        y.backward()


def test_backward_rejects_a_grad_of_the_wrong_shape():
    y = Tensor(np.ones(3), requires_grad=True) * 2.0
    with pytest.raises(ValueError, match=r"grad has shape \(2,\), tensor has shape \(3,\)"):
        y.backward(np.ones(2))


def test_a_tensor_used_twice_gets_the_sum_of_both_gradients():
    x = Tensor(np.array([3.0]), requires_grad=True)
    (x * x + x).backward(np.ones(1))  # d(x^2 + x)/dx = 2x + 1
    np.testing.assert_array_equal(x.grad, [7.0])


def test_a_node_reached_by_paths_of_different_length_is_visited_after_all_its_consumers():
    # a feeds c directly and through b; a must receive both contributions before passing on.
    x = Tensor(np.array([1.0]), requires_grad=True)
    a = x * 2.0
    b = ((a * 3.0) * 1.0) * 1.0
    c = a + b  # c = 2x + 6x
    c.backward(np.ones(1))
    np.testing.assert_array_equal(x.grad, [8.0])


def test_constants_and_leaves_without_requires_grad_get_no_gradient():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    c = Tensor(np.array([5.0, 6.0]))
    (x * c).sum().backward()
    np.testing.assert_array_equal(x.grad, [5.0, 6.0])
    assert c.grad is None


def test_only_the_leaves_keep_grad_intermediates_do_not():
    x = Tensor(np.array([1.0]), requires_grad=True)
    y = x * 2.0
    (y * 3.0).backward(np.ones(1))
    assert x.is_leaf and not y.is_leaf
    assert y.grad is None


def test_detach_cuts_the_graph():
    x = Tensor(np.array([2.0]), requires_grad=True)
    y = x * x.detach()  # gradient flows only through the first factor
    y.backward(np.ones(1))
    np.testing.assert_array_equal(x.grad, [2.0])


SCALAR_OPS = {
    "add": lambda t: t + 2, "radd": lambda t: 2.5 + t, "sub": lambda t: t - 1.5, "rsub": lambda t: 1 - t,
    "mul": lambda t: t * 0.5, "rmul": lambda t: 3 * t, "div": lambda t: t / 3.0, "rdiv": lambda t: 1.0 / t,
    "pow": lambda t: t ** 2, "rpow": lambda t: 2.0 ** t, "maximum": lambda t: ops.maximum(t, 0.75),
    "minimum": lambda t: ops.minimum(t, 0.75), "where": lambda t: ops.where(t.data > 1, t, 0.0),
    "clip": lambda t: ops.clip(t, 0.0, 1.0), "max": lambda t: ops.max(t * 1.0, axis=0),
    "mean": lambda t: ops.mean(t), "var": lambda t: ops.var(t), "softmax": lambda t: ops.softmax(t * 2.0),
    "cross_entropy": lambda t: ops.cross_entropy(ops.reshape(t, (1, 3)), np.array([1])),
    "layer_norm": lambda t: ops.layer_norm(t, Tensor(np.ones(3, np.float32))),
    "dropout": lambda t: ops.dropout(t, 0.25),
}


@pytest.mark.parametrize("name", SCALAR_OPS)
def test_float32_stays_float32_through_ops_with_python_scalars(name):
    x = Tensor(np.array([0.5, 1.0, 2.0], dtype=np.float32), requires_grad=True)
    out = SCALAR_OPS[name](x)
    assert out.dtype == np.float32
    out.backward(np.ones(out.shape, dtype=np.float32))
    assert x.grad.dtype == np.float32


def test_python_floats_become_float32_and_explicit_float64_stays_float64():
    assert Tensor(1.5).dtype == np.float32
    assert Tensor([1.0, 2.0]).dtype == np.float32
    assert minillm.tensor([[1.0]]).dtype == np.float32
    assert Tensor(np.array([1.0])).dtype == np.float64
    assert Tensor([1, 2]).dtype.kind == "i"


def test_tensor_of_a_tensor_honours_an_explicit_dtype():
    assert Tensor(Tensor([1.0, 2.0]), dtype=np.float64).dtype == np.float64


def test_only_floating_point_tensors_can_require_grad():
    with pytest.raises(TypeError, match="only floating-point tensors can require gradients"):
        Tensor(np.array([1, 2]), requires_grad=True)


def test_item_and_tolist_return_python_values():
    assert Tensor(np.array([[2.5]])).item() == 2.5
    assert Tensor(np.array([1.0, 2.0])).tolist() == [1.0, 2.0]
    with pytest.raises(ValueError, match="item\\(\\): tensor has 2 elements"):
        Tensor(np.array([1.0, 2.0])).item()


def test_comparisons_return_boolean_tensors_outside_the_graph():
    x = Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    mask = x > 1.5
    assert mask.dtype == bool and not mask.requires_grad
    np.testing.assert_array_equal(mask.data, [False, True, True])
    np.testing.assert_array_equal(x.eq(2.0).data, [False, True, False])


def test_a_custom_function_gets_one_gradient_per_input():
    class Scale(minillm.Function):
        """y = a * s for a constant s given as an option."""

        def forward(self, a, s=1.0):
            self.s = s
            return a * s

        def backward(self, grad):
            return grad * self.s

    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    Scale.apply(x, s=4.0).backward(np.ones(2))
    np.testing.assert_array_equal(x.grad, [4.0, 4.0])


def test_a_backward_returning_the_wrong_shape_is_reported():
    class Broken(minillm.Function):
        def forward(self, a):
            return a.sum()

        def backward(self, grad):
            return grad  # should have been broadcast back to the input's shape

    x = Tensor(np.ones(3), requires_grad=True)
    message = r"Broken.backward returned a gradient of shape \(\) for an input of shape \(3,\)"
    with pytest.raises(RuntimeError, match=message):
        Broken.apply(x).backward()
