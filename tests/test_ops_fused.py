"""Fused ops: central-difference gradients, and agreement (values and gradients) with the same
computation composed from primitive ops, whose gradients come from the primitives' own backward."""
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minillm
from minillm import Tensor, ops
from tests.gradcheck import (OP_SETTINGS, assert_same_computation, assert_same_on_gpu, gradcheck, normal,
                             positive, seeds, shapes)


# ------------------------------------------------------------------------------ references
def composed_softmax(x, axis=-1):
    """exp(x - c) / sum(exp(x - c)), with c = max(x) held constant (softmax is shift-invariant)."""
    e = ops.exp(x - Tensor(x.data.max(axis=axis, keepdims=True)))
    return e / ops.sum(e, axis=axis, keepdims=True)


def composed_log_softmax(x, axis=-1):
    return ops.log(composed_softmax(x, axis))


def composed_cross_entropy(logits, targets, ignore_index=-100, label_smoothing=0.0):
    """-(1-eps) log p[target] - eps/C sum_c log p[c], averaged over the rows whose target is kept."""
    num_classes = logits.shape[-1]
    log_p = composed_log_softmax(ops.reshape(logits, (-1, num_classes)))
    t = np.asarray(targets).reshape(-1)
    rows = np.nonzero(t != ignore_index)[0]
    picked = log_p[rows, t[rows]]  # integer-array getitem
    per_row = -(1 - label_smoothing) * picked
    if label_smoothing:
        per_row = per_row - label_smoothing / num_classes * ops.sum(log_p[rows], axis=1)
    return ops.mean(per_row)


def composed_rms_norm(x, weight, eps=1e-6):
    return weight * x / ops.sqrt(ops.mean(x * x, axis=-1, keepdims=True) + eps)


def composed_layer_norm(x, weight, bias=None, eps=1e-5):
    centered = x - ops.mean(x, axis=-1, keepdims=True)
    variance = ops.mean(centered * centered, axis=-1, keepdims=True)
    out = weight * centered / ops.sqrt(variance + eps)
    return out if bias is None else out + bias


def allowed_positions(q_len, k_len, key_mask=None, causal=False):
    """Boolean (..., q_len, k_len): query i sits at absolute position k_len - q_len + i."""
    allowed = np.ones((q_len, k_len), dtype=bool)
    if causal:
        for i in range(q_len):
            for j in range(k_len):
                allowed[i, j] = j <= k_len - q_len + i
    return allowed if key_mask is None else allowed & key_mask


def composed_attention(q, k, v, bias=None, allowed=None, scale=1.0):
    scores = ops.matmul(q, ops.transpose(k, -1, -2)) * scale  # (batch, heads, q_len, k_len)
    if bias is not None:
        scores = scores + bias
    if allowed is not None:
        scores = ops.where(allowed, scores, -1e9)
    return ops.matmul(composed_softmax(scores), v)


# ------------------------------------------------------------------------------ softmax / log_softmax
@pytest.mark.parametrize("fused, composed", [(ops.softmax, composed_softmax),
                                             (ops.log_softmax, composed_log_softmax)],
                         ids=["softmax", "log_softmax"])
@OP_SETTINGS
@given(shape=shapes(min_dims=1), seed=seeds, data=st.data())
def test_softmax_family_matches_central_differences_and_its_composition(fused, composed, shape, seed, data):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = normal(np.random.default_rng(seed), shape, scale=2.0)
    gradcheck(lambda a: fused(a, axis=axis), x)
    assert_same_computation(lambda a: fused(a, axis=axis), lambda a: composed(a, axis=axis), x)


def test_softmax_rows_sum_to_one_and_survive_huge_logits():
    x = Tensor(np.array([[1000.0, 1000.0, -1000.0], [0.0, 0.0, 0.0]]))
    with np.errstate(over="raise"):
        p = ops.softmax(x).data
        log_p = ops.log_softmax(x).data
    np.testing.assert_allclose(p, [[0.5, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3]], atol=1e-15)
    np.testing.assert_allclose(log_p[0, :2], [-np.log(2.0)] * 2)


# ------------------------------------------------------------------------------ cross_entropy
def _targets(rng, shape, num_classes, ignored_fraction):
    targets = rng.integers(0, num_classes, size=shape)
    targets[rng.random(shape) < ignored_fraction] = -100
    targets.reshape(-1)[0] = 0  # at least one position counts
    return targets


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("target_shape", [(5,), (2, 3)], ids=["flat", "batch_seq"])
def test_cross_entropy_matches_central_differences_and_its_composition(label_smoothing, target_shape, rng):
    logits = normal(rng, target_shape + (4,), scale=2.0)
    targets = _targets(rng, target_shape, 4, ignored_fraction=0.3)

    def fused(x):
        return ops.cross_entropy(x, targets, label_smoothing=label_smoothing)

    gradcheck(fused, logits)
    assert_same_computation(fused, lambda x: composed_cross_entropy(x, targets, label_smoothing=label_smoothing),
                            logits)


def test_cross_entropy_honours_a_custom_ignore_index(rng):
    logits, targets = normal(rng, (4, 3)), np.array([2, 7, 0, 7])
    assert_same_computation(lambda x: ops.cross_entropy(x, targets, ignore_index=7),
                            lambda x: composed_cross_entropy(x, targets, ignore_index=7), logits)


def test_cross_entropy_ignored_positions_get_no_gradient(rng):
    x = Tensor(normal(rng, (3, 4)), requires_grad=True)
    ops.cross_entropy(x, np.array([1, -100, 2])).backward()
    np.testing.assert_array_equal(x.grad[1], np.zeros(4))
    assert np.all(x.grad[[0, 2]] != 0)


def test_cross_entropy_with_every_position_ignored_is_zero_not_nan():
    x = Tensor(np.ones((2, 3)), requires_grad=True)
    loss = ops.cross_entropy(x, np.array([-100, -100]))
    loss.backward()
    assert loss.item() == 0.0
    np.testing.assert_array_equal(x.grad, np.zeros((2, 3)))


def test_cross_entropy_of_uniform_logits_is_log_num_classes():
    loss = ops.cross_entropy(Tensor(np.zeros((3, 5))), [0, 4, 2])
    assert loss.item() == pytest.approx(np.log(5.0), rel=1e-6)


def test_cross_entropy_shape_error_names_the_op_and_both_shapes():
    message = "cross_entropy: logits (2, 3) need targets of shape (2,), got (3,)"
    with pytest.raises(ValueError, match=re.escape(message)):
        ops.cross_entropy(Tensor(np.ones((2, 3))), np.array([0, 1, 2]))


def test_cross_entropy_rejects_targets_out_of_range():
    with pytest.raises(ValueError, match=re.escape("cross_entropy: targets must be in [0, 3)")):
        ops.cross_entropy(Tensor(np.ones((2, 3))), np.array([0, 3]))


# ------------------------------------------------------------------------------ rms_norm / layer_norm
@OP_SETTINGS
@given(shape=shapes(min_dims=1, max_dims=3), seed=seeds)
def test_rms_norm_matches_central_differences_and_its_composition(shape, seed):
    rng = np.random.default_rng(seed)
    x, w = normal(rng, shape), normal(rng, shape[-1:])
    gradcheck(ops.rms_norm, x, w)
    assert_same_computation(ops.rms_norm, composed_rms_norm, x, w)


@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no_bias"])
@OP_SETTINGS
@given(shape=shapes(min_dims=1, max_dims=3), seed=seeds)
def test_layer_norm_matches_central_differences_and_its_composition(with_bias, shape, seed):
    rng = np.random.default_rng(seed)
    x, w, b = normal(rng, shape), normal(rng, shape[-1:]), normal(rng, shape[-1:])
    inputs = (x, w, b) if with_bias else (x, w)
    gradcheck(ops.layer_norm, *inputs)
    assert_same_computation(ops.layer_norm, composed_layer_norm, *inputs)


def test_layer_norm_output_has_zero_mean_and_unit_variance_per_row(rng):
    x = normal(rng, (4, 16), scale=3.0) + 5.0
    y = ops.layer_norm(Tensor(x), Tensor(np.ones(16)), eps=0.0).data
    np.testing.assert_allclose(y.mean(axis=-1), 0.0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=-1), 1.0, rtol=1e-12)


def test_rms_norm_output_has_unit_root_mean_square_per_row(rng):
    y = ops.rms_norm(Tensor(normal(rng, (4, 16), scale=3.0)), Tensor(np.ones(16)), eps=0.0).data
    np.testing.assert_allclose(np.sqrt((y * y).mean(axis=-1)), 1.0, rtol=1e-12)


# ------------------------------------------------------------------------------ gated_gelu
def composed_gated_gelu(gate, up):
    return ops.gelu(gate, approximate="tanh") * up


@OP_SETTINGS
@given(shape=shapes(), seed=seeds)
def test_gated_gelu_matches_central_differences_and_its_composition(shape, seed):
    rng = np.random.default_rng(seed)
    gate, up = normal(rng, shape, scale=2.0), normal(rng, shape)
    gradcheck(ops.gated_gelu, gate, up)
    assert_same_computation(ops.gated_gelu, composed_gated_gelu, gate, up)


def test_gated_gelu_gives_only_the_gradients_asked_for(rng):
    g, u = normal(rng, (3, 4)), normal(rng, (3, 4))
    gate, up = Tensor(g, requires_grad=True), Tensor(u)
    ops.gated_gelu(gate, up).sum().backward()
    assert gate.grad is not None and up.grad is None
    reference = Tensor(g, requires_grad=True)
    composed_gated_gelu(reference, Tensor(u)).sum().backward()
    np.testing.assert_allclose(gate.grad, reference.grad, rtol=1e-12)


def test_gated_gelu_rejects_different_shapes():
    with pytest.raises(ValueError, match=re.escape("gated_gelu: gate (2, 3) and up (3,)")):
        ops.gated_gelu(Tensor(np.ones((2, 3))), Tensor(np.ones(3)))


# ------------------------------------------------------------------------------ dropout
@pytest.mark.parametrize("p", [0.1, 0.5])
def test_dropout_gradient_is_the_mask_over_one_minus_p_read_from_the_output(p, rng):
    x = Tensor(positive(rng, (50, 40)), requires_grad=True)  # no zeros: a zero output means dropped
    y = ops.dropout(x, p)
    kept = y.data != 0
    np.testing.assert_allclose(y.data[kept], x.data[kept] / (1 - p), rtol=1e-15)
    r = normal(rng, x.shape)
    y.backward(r)
    np.testing.assert_allclose(x.grad, r * kept / (1 - p), rtol=1e-15)
    assert abs((1 - kept.mean()) - p) < 0.03  # 2000 draws: the dropped fraction is close to p


def test_dropout_with_a_fixed_seed_matches_central_differences(rng):
    def seeded_dropout(a):
        minillm.manual_seed(7)  # the same mask on every call
        return ops.dropout(a, 0.3)

    gradcheck(seeded_dropout, normal(rng, (4, 5)))


def test_dropout_masks_repeat_under_the_same_seed_and_differ_otherwise():
    x = Tensor(np.ones((20, 20)))
    minillm.manual_seed(3)
    first, second = ops.dropout(x, 0.5).data, ops.dropout(x, 0.5).data
    minillm.manual_seed(3)
    np.testing.assert_array_equal(ops.dropout(x, 0.5).data, first)
    assert not np.array_equal(first, second)


def test_dropout_is_the_identity_in_eval_mode_and_at_p_zero():
    x = Tensor(np.ones(3), requires_grad=True)
    assert ops.dropout(x, 0.5, training=False) is x
    assert ops.dropout(x, 0.0) is x


def test_dropout_rejects_p_outside_zero_one():
    with pytest.raises(ValueError, match="dropout: p must be in"):
        ops.dropout(Tensor(np.ones(3)), 1.0)


# ------------------------------------------------------------------------------ embedding
def test_embedding_gradient_matches_central_differences_with_repeated_ids(rng):
    ids = np.array([[1, 4, 1], [0, 1, 4]])
    weight = normal(rng, (5, 3))
    np.testing.assert_array_equal(ops.embedding(Tensor(weight), ids).data, weight[ids])
    gradcheck(lambda w: ops.embedding(w, ids), weight)


def test_embedding_rows_looked_up_several_times_receive_the_summed_gradient():
    weight = Tensor(np.zeros((4, 2)), requires_grad=True)
    ops.embedding(weight, np.array([3, 1, 3, 3])).backward(np.array([[1.0, 0], [2, 0], [3, 0], [4, 1]]))
    np.testing.assert_array_equal(weight.grad, [[0, 0], [2, 0], [0, 0], [8, 1]])


def test_embedding_rejects_ids_out_of_range():
    with pytest.raises(IndexError, match=re.escape("embedding: ids must be in [0, 4)")):
        ops.embedding(Tensor(np.zeros((4, 2))), np.array([0, 4]))


# ------------------------------------------------------------------------------ attention
ATTENTION_CASES = {
    # name: (q_len, k_len, bias shape or None, key padding?, causal, scale)
    "plain": (3, 4, None, False, False, None),
    "bias_broadcast_over_batch": (3, 4, (1, 2, 3, 4), False, False, 1.0),
    "key_padding_mask": (3, 4, None, True, False, 0.5),
    "causal": (4, 4, None, False, True, None),
    "causal_shorter_queries": (2, 4, None, False, True, 1.0),
    "bias_mask_causal": (3, 4, (2, 1, 3, 4), True, True, 0.7),
}


def _attention_inputs(rng, q_len, k_len, bias_shape, padded, causal):
    batch, heads, d = 2, 2, 3
    q, k, v = normal(rng, (batch, heads, q_len, d)), normal(rng, (batch, heads, k_len, d)), \
        normal(rng, (batch, heads, k_len, d))
    bias = None if bias_shape is None else normal(rng, bias_shape)
    key_mask = None
    if padded:  # (batch, 1, 1, k_len): the second sequence is one key shorter
        key_mask = np.ones((batch, 1, 1, k_len), dtype=bool)
        key_mask[1, ..., -1] = False
    allowed = allowed_positions(q_len, k_len, key_mask, causal) if (padded or causal) else None
    return q, k, v, bias, key_mask, allowed


@pytest.mark.parametrize("name", ATTENTION_CASES)
def test_attention_matches_central_differences_and_its_composition(name, rng):
    q_len, k_len, bias_shape, padded, causal, scale = ATTENTION_CASES[name]
    q, k, v, bias, key_mask, allowed = _attention_inputs(rng, q_len, k_len, bias_shape, padded, causal)
    effective_scale = 1 / np.sqrt(q.shape[-1]) if scale is None else scale

    def fused(q, k, v, bias=None):
        return ops.scaled_dot_product_attention(q, k, v, bias=bias, mask=key_mask, causal=causal, scale=scale)

    def composed(q, k, v, bias=None):
        return composed_attention(q, k, v, bias, allowed, effective_scale)

    inputs = (q, k, v) if bias is None else (q, k, v, bias)
    gradcheck(fused, *inputs)
    assert_same_computation(fused, composed, *inputs)


def test_attention_padded_keys_receive_no_gradient(rng):
    q, k, v, _, key_mask, _ = _attention_inputs(rng, 3, 4, None, True, False)
    k, v = Tensor(k, requires_grad=True), Tensor(v, requires_grad=True)
    out = ops.scaled_dot_product_attention(Tensor(q), k, v, mask=key_mask)
    out.backward(normal(rng, out.shape))
    np.testing.assert_array_equal(k.grad[1, :, -1], 0.0)
    np.testing.assert_array_equal(v.grad[1, :, -1], 0.0)
    assert np.all(k.grad[0, :, -1] != 0)


def test_attention_with_a_fully_masked_row_matches_its_composition(rng):
    # With causal attention, the first query sees only the first key; padding that key masks
    # the whole row. Its output is then the mean of v, and q, k and bias get no gradient from it.
    q, k, v = normal(rng, (1, 1, 3, 2)), normal(rng, (1, 1, 3, 2)), normal(rng, (1, 1, 3, 2))
    bias = normal(rng, (1, 1, 3, 3))
    key_mask = np.array([False, True, True]).reshape(1, 1, 1, 3)
    allowed = allowed_positions(3, 3, key_mask, causal=True)
    assert_same_computation(
        lambda q, k, v, b: ops.scaled_dot_product_attention(q, k, v, bias=b, mask=key_mask, causal=True,
                                                            scale=1.0),
        lambda q, k, v, b: composed_attention(q, k, v, b, allowed, 1.0), q, k, v, bias)


def test_attention_dropout_with_a_fixed_seed_matches_central_differences(rng):
    q, k, v, bias, key_mask, _ = _attention_inputs(rng, 3, 4, (1, 2, 3, 4), True, True)

    def seeded(q, k, v, bias):
        minillm.manual_seed(5)  # the same dropped weights on every call
        return ops.scaled_dot_product_attention(q, k, v, bias=bias, mask=key_mask, causal=True,
                                                dropout_p=0.3)

    gradcheck(seeded, q, k, v, bias)


def test_attention_rejects_a_non_boolean_mask(rng):
    q = Tensor(normal(rng, (1, 1, 2, 3)))
    with pytest.raises(TypeError, match="attention: mask must be boolean"):
        ops.scaled_dot_product_attention(q, q, q, mask=np.ones((1, 1, 1, 2)))


def test_attention_rejects_shapes_that_do_not_fit(rng):
    q, k = Tensor(normal(rng, (1, 1, 2, 3))), Tensor(normal(rng, (1, 1, 2, 4)))
    with pytest.raises(ValueError, match=re.escape("attention: q (1, 1, 2, 3), k (1, 1, 2, 4)")):
        ops.scaled_dot_product_attention(q, k, k)


# ------------------------------------------------------------------------------ GPU
GPU_CASES = {
    "softmax": (ops.softmax, [(3, 5)]),
    "log_softmax": (ops.log_softmax, [(3, 5)]),
    "cross_entropy": (lambda x: ops.cross_entropy(x, np.array([1, -100, 4])), [(3, 5)]),
    "rms_norm": (ops.rms_norm, [(2, 3, 8), (8,)]),
    "gated_gelu": (ops.gated_gelu, [(2, 3, 8), (2, 3, 8)]),
    "layer_norm": (ops.layer_norm, [(2, 3, 8), (8,), (8,)]),
    "attention": (lambda q, k, v, b: ops.scaled_dot_product_attention(q, k, v, bias=b, causal=True),
                  [(2, 2, 4, 8), (2, 2, 4, 8), (2, 2, 4, 8), (1, 2, 4, 4)]),
}


@pytest.mark.gpu
@pytest.mark.parametrize("name", GPU_CASES)
def test_fused_op_on_cupy_matches_numpy(name, rng):
    fn, input_shapes = GPU_CASES[name]
    assert_same_on_gpu(fn, *[normal(rng, s) for s in input_shapes])
