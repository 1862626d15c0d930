"""kernels/attention.cu on the CPU emulator, against a materialized softmax in NumPy float64.

Hypothesis picks head dims, batch/heads, sequence lengths from 1 to 300 (mostly not multiples of the
64/32 tiles), causal or not, bias shared by the batch / per batch / none, and key padding masks
(sometimes masking a whole batch row). Outputs start as NaN, so unwritten elements fail.
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from minillm.fast import cuda_attention
from tests.kernels import reference
from tests.kernels.problems import HEAD_DIMS, make_problem
from tests.kernels.reference import assert_close

FORWARD_TOL = dict(atol=2e-5, rtol=1e-4)
GRAD_TOL = dict(atol=1e-4, rtol=1e-3)


@st.composite
def attention_problems(draw):
    head_dim = draw(st.sampled_from(HEAD_DIMS))
    lengths = st.one_of(st.integers(1, 80), st.integers(1, 300))
    problem = dict(
        batch=draw(st.integers(1, 2)), heads=draw(st.integers(1, 2)),
        q_len=draw(lengths), k_len=draw(lengths), head_dim=head_dim,
        bias_kind=draw(st.sampled_from(["none", "shared", "shared4d", "per_batch"])),
        mask_kind=draw(st.sampled_from(["none", "random", "one_row_fully_masked"])),
    )
    options = dict(causal=draw(st.booleans()), scale=draw(st.sampled_from([1.0, 0.5, head_dim ** -0.5])))
    seed = draw(st.integers(0, 2**32 - 1))
    return problem, options, seed


def run_forward(emulator, q, k, v, bias, key_mask, **options):
    return cuda_attention._attention_forward(emulator.backend(), q, k, v, bias, key_mask,
                                             options["causal"], options["scale"])


def run_backward(emulator, q, k, v, out, lse, grad_out, bias, key_mask, version="two_pass", **options):
    return cuda_attention._attention_backward(emulator.backend(), q, k, v, out, lse, grad_out, bias, key_mask,
                                              options["causal"], options["scale"], version)


BACKWARDS = ["two_pass", "fa2"]  # a dQ kernel + a dK/dV kernel, or FlashAttention-2's one kernel


@settings(max_examples=30, deadline=None)
@given(attention_problems())
def test_attention_forward_matches_materialized_softmax(emulator, drawn):
    problem, options, seed = drawn
    q, k, v, _, bias, key_mask = make_problem(np.random.default_rng(seed), **problem)
    out, lse = run_forward(emulator, q, k, v, bias, key_mask, **options)
    expected_out, expected_lse = reference.attention_forward(q, k, v, bias, key_mask, **options)
    assert_close(out, expected_out, **FORWARD_TOL, name="out")
    assert_close(lse, expected_lse, **FORWARD_TOL, name="lse")


@pytest.mark.parametrize("version", BACKWARDS)
@settings(max_examples=25, deadline=None)
@given(drawn=attention_problems())
def test_attention_backward_matches_materialized_softmax(emulator, version, drawn):
    problem, options, seed = drawn
    q, k, v, grad_out, bias, key_mask = make_problem(np.random.default_rng(seed), **problem)
    out, lse = run_forward(emulator, q, k, v, bias, key_mask, **options)
    grads = run_backward(emulator, q, k, v, out, lse, grad_out, bias, key_mask, version, **options)
    expected = reference.attention_backward(q, k, v, grad_out, bias, key_mask, **options)
    for name, actual, wanted in zip(["dq", "dk", "dv", "dbias"], grads, expected):
        if wanted is None:
            assert actual is None, f"{name} should be None without a bias"
        else:
            assert_close(actual, wanted, **GRAD_TOL, name=name)


@pytest.mark.parametrize("version", BACKWARDS)
@pytest.mark.parametrize("head_dim", HEAD_DIMS)
def test_every_head_dim_handles_bias_mask_and_causal_across_several_tiles(emulator, head_dim, version):
    options = dict(causal=True, scale=1.0)
    q, k, v, grad_out, bias, key_mask = make_problem(
        np.random.default_rng(head_dim), batch=2, heads=2, q_len=97, k_len=75, head_dim=head_dim,
        bias_kind="shared", mask_kind="random")
    out, lse = run_forward(emulator, q, k, v, bias, key_mask, **options)
    expected_out, expected_lse = reference.attention_forward(q, k, v, bias, key_mask, **options)
    assert_close(out, expected_out, **FORWARD_TOL, name="out")
    assert_close(lse, expected_lse, **FORWARD_TOL, name="lse")
    grads = run_backward(emulator, q, k, v, out, lse, grad_out, bias, key_mask, version, **options)
    for name, actual, wanted in zip(["dq", "dk", "dv", "dbias"], grads,
                                    reference.attention_backward(q, k, v, grad_out, bias, key_mask, **options)):
        assert_close(actual, wanted, **GRAD_TOL, name=name)


@pytest.mark.parametrize("version", BACKWARDS)
def test_fully_masked_rows_give_zero_output_infinite_lse_and_zero_gradients(emulator, version):
    options = dict(causal=False, scale=1.0)
    q, k, v, grad_out, bias, key_mask = make_problem(
        np.random.default_rng(1), batch=2, heads=1, q_len=10, k_len=12, head_dim=32,
        bias_kind="per_batch", mask_kind="one_row_fully_masked")  # batch 0 sees no key at all
    out, lse = run_forward(emulator, q, k, v, bias, key_mask, **options)
    assert (out[0] == 0).all() and np.isposinf(lse[0]).all()
    assert np.isfinite(out[1]).all() and np.isfinite(lse[1]).all()
    dq, dk, dv, dbias = run_backward(emulator, q, k, v, out, lse, grad_out, bias, key_mask, version, **options)
    for grad in (dq, dk, dv, dbias):
        assert np.isfinite(grad).all()
        assert (grad[0] == 0).all()


def test_keys_past_the_sequence_end_never_leak_into_a_one_key_attention(emulator):
    # k_len = 1: every query sees exactly one key, so out = v and lse = its score.
    q, k, v, _, _, _ = make_problem(np.random.default_rng(2), batch=1, heads=1, q_len=5, k_len=1,
                                    head_dim=64, bias_kind="none", mask_kind="none")
    out, lse = run_forward(emulator, q, k, v, None, None, causal=False, scale=1.0)
    assert_close(out, np.broadcast_to(v, out.shape), atol=1e-6, rtol=1e-6)
    assert_close(lse, (q @ k.swapaxes(-1, -2))[..., 0], atol=1e-6, rtol=1e-5)


def test_reference_gradients_agree_with_central_differences():
    """The float64 reference backward is itself checked, so the kernels are held to true gradients."""
    rng = np.random.default_rng(3)
    q, k, v = (rng.standard_normal((2, 1, 3, 4)) for _ in range(3))
    bias, grad_out = rng.standard_normal((1, 3, 3)), rng.standard_normal((2, 1, 3, 4))
    key_mask = np.array([[True, False, True], [True, True, True]])
    options = dict(key_mask=key_mask, causal=True, scale=0.7)

    def loss(q, k, v, bias):
        return (reference.attention_forward(q, k, v, bias, **options)[0] * grad_out).sum()

    analytic = reference.attention_backward(q, k, v, grad_out, bias, **options)
    inputs = [q, k, v, bias]
    for index, (array, grad) in enumerate(zip(inputs, analytic)):
        numeric = np.zeros_like(array)
        for position in np.ndindex(array.shape):
            for sign in (1, -1):
                shifted = [x.copy() for x in inputs]
                shifted[index][position] += sign * 1e-6
                numeric[position] += sign * loss(*shifted) / 2e-6
        np.testing.assert_allclose(grad, numeric, atol=1e-6)
