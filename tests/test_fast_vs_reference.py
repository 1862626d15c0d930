"""The two layers agree: every fast op in ``minillm/fast/`` equals its reference formula in ``ops/``.

Each case runs one op twice on the same inputs, once with the fast layer on and once inside
``minillm.fast_paths(False)``, and compares the outputs and the gradients of sum(out * R):

- bitwise, where the fast kernel does the reference's arithmetic step for step (blocked
  RMSNorm and dropout; cross-entropy apart from its flushed entries);
- within float32 rounding otherwise, with the reason next to the case (products split over
  threads are separate BLAS calls; GELU's kernel groups its polynomial differently; the
  embedding gradient adds the same rows in another order; the subnormal flush changes entries
  by less than float32's smallest normal number).

Inputs are float32, the precision that training runs in. ``_split_small_work`` lowers the
thread module's size thresholds and asks for three threads, so that even these small inputs are
cut into row blocks and shared out, as a training step's activations are.

The last tests keep the set complete: every op with a registered fast version must have a case
here, and every reference op (a ``Function`` subclass outside ``fast/``) must have its row in
docs/gradients.md.
"""
from __future__ import annotations

import contextlib
import inspect
import pathlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minillm
from minillm import Tensor, ops
from minillm.autograd import Function
from minillm.fast import dispatch, threads
from minillm.fast.subnormals import count_subnormals
from tests.gradcheck import forward_and_grads

FAST_SETTINGS = settings(max_examples=20, deadline=None)
TINY32 = float(np.finfo(np.float32).tiny)


@contextlib.contextmanager
def _split_small_work():
    saved = threads.MIN_ELEMENTS, threads.BLOCK_ELEMENTS, threads.MIN_MATMUL_FLOPS, threads.num_threads()
    threads.MIN_ELEMENTS, threads.BLOCK_ELEMENTS, threads.MIN_MATMUL_FLOPS = 4, 3, 1
    threads.set_threads(3)
    try:
        yield
    finally:
        threads.MIN_ELEMENTS, threads.BLOCK_ELEMENTS, threads.MIN_MATMUL_FLOPS = saved[:3]
        threads.set_threads(saved[3])


def fast_and_reference(fn, *inputs, seed=0):
    """(outputs + gradients) of ``fn`` with the fast layer on (split over threads), then off.

    minillm's generator is reseeded before each run, so both draw the same dropout masks.
    """
    minillm.manual_seed(seed)
    with _split_small_work(), minillm.fast_paths(True):  # on even under MINILLM_FAST=0
        fast = forward_and_grads(fn, *inputs)
    minillm.manual_seed(seed)
    with minillm.fast_paths(False):
        reference = forward_and_grads(fn, *inputs)
    return fast[0] + fast[1], reference[0] + reference[1]


def assert_bitwise(fast, reference):
    for i, (a, b) in enumerate(zip(fast, reference)):
        np.testing.assert_array_equal(a, b, err_msg=f"array {i} (outputs first, then gradients)")


def assert_float32_close(fast, reference, ulps=8):
    """|fast - reference| within a few float32 roundings of the largest entry of each array."""
    for i, (a, b) in enumerate(zip(fast, reference)):
        scale = max(float(np.abs(b).max(initial=0.0)), 1e-30)
        np.testing.assert_allclose(a, b, rtol=ulps * 2.0 ** -23, atol=ulps * 2.0 ** -23 * scale,
                                   err_msg=f"array {i} (outputs first, then gradients)")


def float32s(rng, shape, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(np.float32)


rows = st.integers(1, 5)
width = st.integers(1, 9)
seeds = st.integers(0, 2**16)


# ------------------------------------------------------------------- bitwise: the same arithmetic
@FAST_SETTINGS
@given(lead=st.lists(rows, min_size=1, max_size=3), d=width, seed=seeds)
def test_blocked_rms_norm_is_bitwise_the_reference(lead, d, seed):
    rng = np.random.default_rng(seed)
    x, w = float32s(rng, (*lead, d), scale=3.0), float32s(rng, (d,))
    assert_bitwise(*fast_and_reference(ops.rms_norm, x, w))


@FAST_SETTINGS
@given(lead=st.lists(rows, min_size=1, max_size=3), d=width, p=st.sampled_from([0.1, 0.3, 0.5, 0.9]),
       seed=seeds)
def test_blocked_dropout_draws_the_reference_mask_and_is_bitwise_the_reference(lead, d, p, seed):
    # The mask comes from backend.keep_mask on both paths, so switching the fast layer off does
    # not change a training run.
    x = float32s(np.random.default_rng(seed), (*lead, d))
    assert_bitwise(*fast_and_reference(lambda a: ops.dropout(a, p), x, seed=seed))


@FAST_SETTINGS
@given(vocab=st.integers(1, 7), dim=width, ids_shape=st.lists(st.integers(0, 6), min_size=1, max_size=2),
       seed=seeds)
def test_sorted_embedding_gradient_matches_the_scatter_add_within_float32_rounding(vocab, dim, ids_shape, seed):
    # The same sums, but not added in the same order: add.at adds one position at a time, while
    # reduceat runs NumPy's reduction loop over each token's rows, which pairs them up. (Seen:
    # three rows of one token differed in the last bit.)
    rng = np.random.default_rng(seed)
    weight, ids = float32s(rng, (vocab, dim)), rng.integers(0, vocab, ids_shape)
    assert_float32_close(*fast_and_reference(lambda w: ops.embedding(w, ids), weight), ulps=2 * max(ids.size, 1))


@FAST_SETTINGS
@given(n=st.integers(1, 12), c=st.integers(2, 9), smoothing=st.sampled_from([0.0, 0.1]),
       logit_scale=st.sampled_from([1.0, 30.0, 300.0]), seed=seeds)
def test_flushed_cross_entropy_is_the_reference_with_subnormals_set_to_zero(n, c, smoothing, logit_scale,
                                                                           seed):
    # The reference gradient, entry for entry, except that its subnormal entries (a softmax
    # probability below 1.2e-38, as large logits give) are exactly 0 in the fast one.
    rng = np.random.default_rng(seed)
    logits = float32s(rng, (n, c), scale=logit_scale)
    targets = rng.integers(0, c, n)
    targets[rng.random(n) < 0.2] = -100
    fast, reference = fast_and_reference(
        lambda z: ops.cross_entropy(z, targets, label_smoothing=smoothing), logits)
    assert_bitwise(fast[:1], reference[:1])  # the loss
    (fast_grad,), (ref_grad,) = fast[1:], reference[1:]
    subnormal = (np.abs(ref_grad) < TINY32) & (ref_grad != 0)
    np.testing.assert_array_equal(fast_grad, np.where(subnormal, 0, ref_grad))
    assert count_subnormals(fast_grad) == 0


def test_large_logits_do_give_the_reference_subnormal_gradients():
    # The case the flush exists for: without it, the reference keeps e^(-100)-sized entries.
    logits = np.array([[0.0, -100.0, -95.0, 3.0]] * 4, dtype=np.float32)
    fast, reference = fast_and_reference(lambda z: ops.cross_entropy(z, np.array([0, 3, 0, 3])), logits)
    assert count_subnormals(reference[1]) > 0 and count_subnormals(fast[1]) == 0


# --------------------------------------------------------------------- within float32 rounding
@FAST_SETTINGS
@given(lead=st.lists(rows, min_size=1, max_size=3), d=width, seed=seeds)
def test_blocked_gelu_tanh_matches_the_reference_within_float32_rounding(lead, d, seed):
    # The kernel computes u = x (c0 + c1 x^2) with c1 = 0.044715 c0 folded into one constant,
    # the reference c0 (x + 0.044715 x^3): the same polynomial, rounded at other steps.
    x = float32s(np.random.default_rng(seed), (*lead, d), scale=3.0)
    assert_float32_close(*fast_and_reference(lambda a: ops.gelu(a, approximate="tanh"), x))


@FAST_SETTINGS
@given(lead=st.lists(rows, min_size=1, max_size=3), d=width, seed=seeds)
def test_blocked_gated_gelu_matches_the_reference_within_float32_rounding(lead, d, seed):
    # As for gelu: the polynomial in u is grouped differently.
    rng = np.random.default_rng(seed)
    gate, up = float32s(rng, (*lead, d), scale=3.0), float32s(rng, (*lead, d))
    assert_float32_close(*fast_and_reference(ops.gated_gelu, gate, up))


def test_gelu_erf_form_runs_the_reference_formula():
    x = float32s(np.random.default_rng(0), (4, 5))
    assert_bitwise(*fast_and_reference(ops.gelu, x))


@FAST_SETTINGS
@given(m=st.integers(1, 9), k=st.integers(1, 9), n=st.integers(1, 9),
       batch=st.sampled_from([(), (3,), (2, 1)]), seed=seeds)
def test_threaded_matmul_matches_the_reference_within_float32_rounding(m, k, n, batch, seed):
    # Each thread's block of the output is its own BLAS call, which may take another kernel
    # path (and summation order) than the reference's single call.
    rng = np.random.default_rng(seed)
    a, b = float32s(rng, (*batch, m, k)), float32s(rng, (k, n))
    assert_float32_close(*fast_and_reference(ops.matmul, a, b), ulps=4 * k)


@FAST_SETTINGS
@given(lead=st.lists(st.integers(1, 40), min_size=1, max_size=2), d_in=width, d_out=width,
       bias=st.booleans(), seed=seeds)
def test_threaded_linear_matches_the_reference_within_float32_rounding(lead, d_in, d_out, bias, seed):
    # Split products as for matmul, and x W^T for 2-64 rows computed as (W x^T)^T.
    rng = np.random.default_rng(seed)
    x, w = float32s(rng, (*lead, d_in)), float32s(rng, (d_out, d_in))
    inputs = (x, w, float32s(rng, (d_out,))) if bias else (x, w)
    assert_float32_close(*fast_and_reference(ops.linear, *inputs), ulps=4 * max(d_in, *lead))


@FAST_SETTINGS
@given(batch=st.integers(1, 3), heads=st.integers(1, 3), q_len=st.integers(1, 6), k_len=st.integers(1, 6),
       d=st.integers(1, 5), bias=st.booleans(), causal=st.booleans(), padded=st.booleans(),
       dropout_p=st.sampled_from([0.0, 0.2]), score_scale=st.sampled_from([1.0, 40.0]), seed=seeds)
def test_in_place_attention_matches_the_reference_within_float32_rounding(
        batch, heads, q_len, k_len, d, bias, causal, padded, dropout_p, score_scale, seed):
    # Split products, as for matmul, and subnormal probabilities and score gradients flushed to
    # zero (score_scale 40 makes most probabilities e^-100-small). The mask and dropout mask are
    # the reference's.
    if causal and q_len > k_len:
        k_len = q_len
    rng = np.random.default_rng(seed)
    q, k, v = (float32s(rng, (batch, heads, n, d)) for n in (q_len, k_len, k_len))
    inputs = [q, k, v] + ([float32s(rng, (1, heads, q_len, k_len))] if bias else [])
    mask = rng.random((batch, 1, 1, k_len)) > 0.3 if padded else None

    def attend(q, k, v, b=None):
        return ops.scaled_dot_product_attention(q, k, v, bias=b, mask=mask, causal=causal,
                                                scale=score_scale / np.sqrt(d), dropout_p=dropout_p)

    # exp(s) turns the rounding of a score s (|s|·u absolute) into a relative error |s|·u of its
    # probability, and the two paths round the scores differently: so the bound grows with the
    # largest |score| (up to ~135 at score_scale 40; hypothesis found 170 ulps there, seed 970).
    scores = np.einsum("bhqd,bhkd->bhqk", q.astype(np.float64), k.astype(np.float64)) * score_scale / np.sqrt(d)
    largest_score = max(1.0, float(np.abs(scores).max(initial=0.0)))
    assert_float32_close(*fast_and_reference(attend, *inputs, seed=seed),
                         ulps=16 * max(d, k_len) * largest_score)


# ------------------------------------------------------------------------------- completeness
FAST_CASES = {
    # reference op -> the test above that compares its fast version with it
    "RMSNorm": test_blocked_rms_norm_is_bitwise_the_reference,
    "Dropout": test_blocked_dropout_draws_the_reference_mask_and_is_bitwise_the_reference,
    "Embedding": test_sorted_embedding_gradient_matches_the_scatter_add_within_float32_rounding,
    "CrossEntropy": test_flushed_cross_entropy_is_the_reference_with_subnormals_set_to_zero,
    "Gelu": test_blocked_gelu_tanh_matches_the_reference_within_float32_rounding,
    "GatedGelu": test_blocked_gated_gelu_matches_the_reference_within_float32_rounding,
    "MatMul": test_threaded_matmul_matches_the_reference_within_float32_rounding,
    "Linear": test_threaded_linear_matches_the_reference_within_float32_rounding,
    "Attention": test_in_place_attention_matches_the_reference_within_float32_rounding,
}


def test_every_op_with_a_fast_path_has_a_fast_vs_reference_case():
    # Optimizers register too; their comparison lives in tests/test_optim_fast.py.
    ops_with_fast_paths = {key.__name__ for key in dispatch._registry
                           if isinstance(key, type) and issubclass(key, Function)}
    assert ops_with_fast_paths, "nothing registered: is minillm.fast.register_all() called?"
    missing = ops_with_fast_paths - set(FAST_CASES)
    assert not missing, f"fast paths with no fast-vs-reference test: {sorted(missing)}"


def test_the_switch_turns_every_fast_path_off():
    x = np.ones((2, 3), dtype=np.float32)
    with minillm.fast_paths(True):
        assert dispatch.lookup(ops.norms.RMSNorm, x, x[0]) is not None
        with minillm.fast_paths(False):
            assert not minillm.fast_paths_enabled()
            assert all(dispatch.lookup(key, x, x) is None for key in dispatch._registry)
        assert minillm.fast_paths_enabled()


def test_the_switch_is_per_thread_and_each_thread_starts_from_the_environment():
    import os
    import threading

    x = np.ones((2, 3), dtype=np.float32)
    default = os.environ.get("MINILLM_FAST", "1").strip() not in ("0", "false", "False", "no")

    def in_another_thread(fast):
        seen = []

        def record():
            seen.append(minillm.fast_paths_enabled())
            with minillm.fast_paths(fast):
                seen.append(dispatch.lookup(ops.norms.RMSNorm, x, x[0]) is not None)
        worker = threading.Thread(target=record)
        worker.start()
        worker.join()
        return seen

    with minillm.fast_paths(False):
        assert in_another_thread(True) == [default, True]  # this thread's False does not reach it
        assert not minillm.fast_paths_enabled()            # nor does the other thread's True come back
    with minillm.fast_paths(True):
        assert in_another_thread(False) == [default, False]
        assert dispatch.lookup(ops.norms.RMSNorm, x, x[0]) is not None


def _reference_ops():
    """Every Function subclass defined in minillm, except the fast layer's versions of them."""
    found, todo = set(), [Function]
    while todo:
        for sub in todo.pop().__subclasses__():
            todo.append(sub)
            if sub.__module__.startswith("minillm.") and not sub.__module__.startswith("minillm.fast"):
                found.add(sub)
    return found


def _public_functions_applying(cls):
    return [name for name in ops.__all__
            if f"{cls.__name__}.apply(" in inspect.getsource(getattr(ops, name))]


def test_every_reference_op_has_a_row_in_docs_gradients_md():
    rows = [line for line in (pathlib.Path(__file__).parents[1] / "docs" / "gradients.md").read_text().splitlines()
            if line.startswith("| `")]
    classes = _reference_ops()
    assert len(classes) > 30  # the walk found the ops (elementwise alone has 15)
    missing = []
    for cls in sorted(classes, key=lambda c: c.__name__):
        names = _public_functions_applying(cls)
        if not any(f"`{name}(" in row for name in names for row in rows):
            missing.append(f"{cls.__module__}.{cls.__name__} (public function: {names or 'none'})")
    assert not missing, f"ops with no row in docs/gradients.md: {missing}"


@pytest.mark.parametrize("name", sorted(FAST_CASES))
def test_fast_implementations_are_subclasses_of_their_reference(name):
    key = next(k for k in dispatch._registry if getattr(k, "__name__", None) == name)
    for _, implementation in dispatch._registry[key]:
        assert issubclass(implementation, key) and implementation.__module__.startswith("minillm.fast.")


@pytest.mark.parametrize("enabled, module", [(True, "minillm.fast.cpu_norms"), (False, "minillm.ops.norms")])
def test_the_switch_picks_the_implementation_that_runs(enabled, module):
    x = Tensor(np.ones((2, 3), dtype=np.float32), requires_grad=True)
    with minillm.fast_paths(enabled):
        y = ops.rms_norm(x, Tensor(np.ones(3, dtype=np.float32)))
    assert type(y._ctx).__module__ == module
