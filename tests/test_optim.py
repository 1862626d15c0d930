"""Optimizers: one step of each against a hand computation from its update rule, plus the API contract."""
import json

import numpy as np
import pytest

from minillm.nn import Parameter
from minillm.optim import SGD, Adafactor, Adam, AdamW, clip_grad_norm_


def param(values, grad=None, dtype=np.float32):
    p = Parameter(np.array(values, dtype=dtype))
    if grad is not None:
        p.grad = np.array(grad, dtype=dtype)
    return p


# ------------------------------------------------------------------------------ SGD
def test_sgd_plain_step_is_theta_minus_lr_grad():
    p = param([1.0, 2.0], grad=[0.5, -1.0])
    SGD([p], lr=0.1).step()
    np.testing.assert_allclose(p.data, [1.0 - 0.05, 2.0 + 0.1], rtol=1e-6)


def test_sgd_momentum_accumulates_a_velocity_over_two_steps():
    # b1 = g1 = 1; θ1 = 0 - 0.1·1 = -0.1.   b2 = 0.9·1 + 2 = 2.9; θ2 = -0.1 - 0.1·2.9 = -0.39.
    p = param([0.0], grad=[1.0])
    opt = SGD([p], lr=0.1, momentum=0.9)
    opt.step()
    np.testing.assert_allclose(p.data, [-0.1], rtol=1e-6)
    p.grad = np.array([2.0], np.float32)
    opt.step()
    np.testing.assert_allclose(p.data, [-0.39], rtol=1e-6)


def test_sgd_nesterov_with_weight_decay_looks_ahead_along_the_velocity():
    # g' = g + λθ = 0.5 + 0.1·1 = 0.6;  b = 0.6;  d = g' + μ b = 0.6 + 0.9·0.6 = 1.14;  θ = 1 - 0.1·1.14.
    p = param([1.0], grad=[0.5])
    SGD([p], lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1).step()
    np.testing.assert_allclose(p.data, [1.0 - 0.114], rtol=1e-6)


def test_sgd_rejects_nesterov_without_momentum():
    with pytest.raises(ValueError, match="nesterov"):
        SGD([param([1.0])], lr=0.1, nesterov=True)


# ------------------------------------------------------------------------------ Adam / AdamW
def test_adam_first_step_is_lr_times_sign_of_gradient():
    # t = 1: m = (1-β1) g, v = (1-β2) g²; bias correction gives m̂ = g, v̂ = g², so
    # θ1 = θ0 - η g / (|g| + ε): a step of size η against the sign of g, whatever the scale of g.
    theta, g, lr, eps = np.array([1.0, -2.0, 3.0]), np.array([1e-3, 5.0, -40.0]), 0.01, 1e-8
    p = param(theta, grad=g)
    Adam([p], lr=lr, eps=eps).step()
    np.testing.assert_allclose(p.data, theta - lr * g / (np.abs(g) + eps), rtol=1e-6)


def test_adam_two_steps_follow_the_bias_corrected_moments():
    b1, b2, lr, eps = 0.9, 0.999, 0.1, 1e-8
    theta, g1, g2 = np.array([0.5, -0.5]), np.array([1.0, -2.0]), np.array([3.0, 0.5])
    m1, v1 = (1 - b1) * g1, (1 - b2) * g1 ** 2
    theta1 = theta - lr * (m1 / (1 - b1)) / (np.sqrt(v1 / (1 - b2)) + eps)
    m2, v2 = b1 * m1 + (1 - b1) * g2, b2 * v1 + (1 - b2) * g2 ** 2
    theta2 = theta1 - lr * (m2 / (1 - b1 ** 2)) / (np.sqrt(v2 / (1 - b2 ** 2)) + eps)
    p = param(theta, grad=g1)
    opt = Adam([p], lr=lr, betas=(b1, b2), eps=eps)
    opt.step()
    p.grad = g2.astype(np.float32)
    opt.step()
    np.testing.assert_allclose(p.data, theta2, rtol=1e-6)
    assert opt.state[p]["step"] == 2
    np.testing.assert_allclose(opt.state[p]["exp_avg"], m2, rtol=1e-6)


def test_adam_weight_decay_is_an_l2_penalty_added_to_the_gradient():
    # g' = g + λθ = 2 + 0.5·4 = 4 > 0, so the first step is -η·sign(g') = -0.01.
    p = param([4.0], grad=[2.0])
    Adam([p], lr=0.01, weight_decay=0.5).step()
    np.testing.assert_allclose(p.data, [4.0 - 0.01], rtol=1e-6)


def test_adamw_weight_decay_shrinks_the_weights_before_the_adam_step():
    # θ ← (1 - ηλ) θ = (1 - 0.01·0.5)·4 = 3.98, then the Adam step -η·sign(g) = -0.01.
    p = param([4.0], grad=[2.0])
    AdamW([p], lr=0.01, weight_decay=0.5).step()
    np.testing.assert_allclose(p.data, [3.98 - 0.01], rtol=1e-6)


def test_adamw_default_weight_decay_is_torchs():
    assert AdamW([param([1.0])]).defaults["weight_decay"] == 0.01
    assert Adam([param([1.0])]).defaults["weight_decay"] == 0.0


# ------------------------------------------------------------------------------ Adafactor
def rms(x):
    return np.sqrt(np.mean(np.square(x)))


def test_adafactor_first_step_on_a_rank_one_gradient_is_alpha_times_sign():
    # t = 1: β̂2 = 1 - 1^-0.8 = 0, so R = mean_cols(G²), C = mean_rows(G²). For G = a bᵀ, G² is rank
    # one and V̂ = R Cᵀ / mean(R) = G² exactly: U = G/|G| = sign(G), RMS(U) = 1 (no clipping), and
    # α = max(ε2, RMS(θ)) · min(1e-2, 1/sqrt(1)) = 1e-2 · RMS(θ).
    rng = np.random.default_rng(0)
    theta = rng.standard_normal((4, 6))
    g = np.outer([1.0, -2.0, 0.5, 3.0], [0.1, 1.0, -1.0, 2.0, -0.3, 0.7])
    p = param(theta, grad=g)
    opt = Adafactor([p])
    opt.step()
    np.testing.assert_allclose(p.data, theta - 1e-2 * rms(theta) * np.sign(g), rtol=1e-5)
    # The factored second moment: n + m numbers instead of n·m.
    assert opt.state[p]["exp_avg_sq_row"].shape == (4,) and opt.state[p]["exp_avg_sq_col"].shape == (6,)
    assert "exp_avg_sq" not in opt.state[p] and "exp_avg" not in opt.state[p]


def test_adafactor_first_step_on_a_general_matrix_with_clipping_and_fixed_lr():
    lr, eps1, d = 0.1, 1e-30, 0.5
    rng = np.random.default_rng(1)
    theta, g = rng.standard_normal((3, 5)), rng.standard_normal((3, 5))
    row, col = (g ** 2 + eps1).mean(axis=1), (g ** 2 + eps1).mean(axis=0)
    v_hat = np.outer(row, col) / row.mean()
    u = g / np.sqrt(v_hat)
    u_hat = lr * u / max(1.0, rms(u) / d)
    p = param(theta, grad=g)
    Adafactor([p], lr=lr, relative_step=False, scale_parameter=False, clip_threshold=d).step()
    np.testing.assert_allclose(p.data, theta - u_hat, rtol=1e-5)


def test_adafactor_vector_with_first_moment_and_weight_decay():
    # A vector is not factored: V = G² + ε1, U = sign(G), RMS(U) = 1; with β1 the first step is
    # M = (1 - β1) Û, and decoupled decay subtracts α λ θ.
    lr, beta1, wd = 0.1, 0.9, 0.2
    theta, g = np.array([1.0, -2.0, 0.5]), np.array([3.0, 0.25, -1.0])
    p = param(theta, grad=g)
    opt = Adafactor([p], lr=lr, relative_step=False, scale_parameter=False, beta1=beta1, weight_decay=wd)
    opt.step()
    np.testing.assert_allclose(p.data, theta - lr * wd * theta - (1 - beta1) * lr * np.sign(g), rtol=1e-5)
    assert opt.state[p]["exp_avg_sq"].shape == (3,)


def test_adafactor_relative_step_with_warmup_init_grows_linearly():
    # ρ_t = min(1e-6 t, 1/sqrt(t)) with warmup_init; without scale_parameter α = ρ.
    p = param(np.zeros(4), grad=np.ones(4))
    opt = Adafactor([p], scale_parameter=False, warmup_init=True)
    for _ in range(3):
        opt.step()
    np.testing.assert_allclose(p.data, -(1e-6 + 2e-6 + 3e-6) * np.ones(4), rtol=1e-5)


def test_adafactor_validates_its_options_like_transformers():
    with pytest.raises(ValueError, match="relative_step"):
        Adafactor([param([1.0])], lr=1e-3)
    with pytest.raises(ValueError, match="warmup_init"):
        Adafactor([param([1.0])], lr=1e-3, relative_step=False, warmup_init=True)


# ------------------------------------------------------------------------------ the API contract
ALL_OPTIMIZERS = [
    lambda ps: SGD(ps, lr=0.1, momentum=0.9),
    lambda ps: Adam(ps, lr=0.1),
    lambda ps: AdamW(ps, lr=0.1),
    lambda ps: Adafactor(ps, beta1=0.9),
]


@pytest.mark.parametrize("make", ALL_OPTIMIZERS)
def test_step_skips_frozen_parameters_and_parameters_without_grad(make):
    trained, frozen, no_grad = param([[1.0, 2.0]], [[1.0, 1.0]]), param([3.0], [1.0]), param([5.0])
    frozen.requires_grad = False
    opt = make([trained, frozen, no_grad])
    opt.step()
    assert not np.allclose(trained.data, [[1.0, 2.0]])
    assert frozen.data.tolist() == [3.0] and no_grad.data.tolist() == [5.0]
    assert frozen not in opt.state and no_grad not in opt.state


@pytest.mark.parametrize("make", ALL_OPTIMIZERS)
def test_step_updates_in_place_and_keeps_float32_even_with_numpy_float64_hyperparameters(make):
    p = param(np.ones((3, 4)), grad=np.full((3, 4), 0.5))
    array = p.data
    opt = make([p])
    for group in opt.param_groups:
        if group["lr"] is not None:
            group["lr"] = np.float64(group["lr"])  # what a schedule computed with NumPy would give
    opt.step()
    assert p.data is array and p.data.dtype == np.float32
    for value in opt.state[p].values():
        if isinstance(value, np.ndarray):
            assert value.dtype == np.float32


@pytest.mark.parametrize("make", ALL_OPTIMIZERS)
def test_zero_grad_sets_grads_to_none(make):
    p = param([1.0], [2.0])
    make([p]).zero_grad()
    assert p.grad is None


def test_param_groups_carry_their_own_options_with_defaults_filled_in():
    a, b = param([1.0], [1.0]), param([1.0], [1.0])
    opt = SGD([{"params": [a], "lr": 0.5}, {"params": [b]}], lr=0.1, momentum=0.0)
    assert [g["lr"] for g in opt.param_groups] == [0.5, 0.1]
    assert opt.param_groups[1]["momentum"] == 0.0 and opt.param_groups[1]["params"] == [b]
    opt.step()
    np.testing.assert_allclose([a.data[0], b.data[0]], [0.5, 0.9], rtol=1e-6)
    with pytest.raises(ValueError, match="more than one"):
        SGD([{"params": [a]}, {"params": [a]}], lr=0.1)
    with pytest.raises(ValueError, match="twice"):
        SGD([a, a], lr=0.1)


@pytest.mark.parametrize("make", ALL_OPTIMIZERS)
def test_state_dict_round_trip_resumes_identically(make):
    rng = np.random.default_rng(0)
    grads = [[rng.standard_normal(s).astype(np.float32) for s in [(3, 4), (4,)]] for _ in range(5)]
    init = [rng.standard_normal(s).astype(np.float32) for s in [(3, 4), (4,)]]

    def run(params, opt, steps):
        for gs in steps:
            for p, g in zip(params, gs):
                p.grad = g.copy()
            opt.step()

    straight = [Parameter(w.copy()) for w in init]
    run(straight, make(straight), grads)
    first = [Parameter(w.copy()) for w in init]
    opt = make(first)
    run(first, opt, grads[:3])
    state = opt.state_dict()
    json.dumps({"param_groups": state["param_groups"],
                "scalars": {i: {k: v for k, v in s.items() if not isinstance(v, np.ndarray)}
                            for i, s in state["state"].items()}})  # everything but arrays is JSON-able
    resumed = [Parameter(p.data.copy()) for p in first]
    opt2 = make(resumed)
    opt2.load_state_dict(state)
    run(resumed, opt2, grads[3:])
    for p, q in zip(straight, resumed):
        np.testing.assert_array_equal(p.data, q.data)


def test_load_state_dict_restores_the_learning_rate_of_each_group():
    p = param([1.0], [1.0])
    opt = AdamW([p], lr=0.1, betas=(0.8, 0.9))
    opt.param_groups[0]["lr"] = 0.03
    other = AdamW([param([1.0])], lr=0.1)
    other.load_state_dict(json.loads(json.dumps(opt.state_dict())))
    assert other.param_groups[0]["lr"] == 0.03 and other.param_groups[0]["betas"] == (0.8, 0.9)


# ------------------------------------------------------------------------------ clip_grad_norm_
def test_clip_grad_norm_scales_all_grads_by_the_global_norm():
    a, b, c = param([0.0, 0.0], [3.0, 4.0]), param([0.0], [12.0]), param([0.0])
    total = clip_grad_norm_([a, b, c], max_norm=6.5)       # sqrt(9 + 16 + 144) = 13
    assert total == pytest.approx(13.0)
    np.testing.assert_allclose(a.grad, [1.5, 2.0], rtol=1e-6)  # halved: 6.5 / 13
    np.testing.assert_allclose(b.grad, [6.0], rtol=1e-6)
    assert c.grad is None


def test_clip_grad_norm_leaves_small_gradients_alone():
    a = param([0.0, 0.0], [3.0, 4.0])
    assert clip_grad_norm_([a], max_norm=10.0) == pytest.approx(5.0)
    assert a.grad.tolist() == [3.0, 4.0]


def test_clip_grad_norm_infinity_norm_is_the_largest_entry():
    a, b = param([0.0, 0.0], [3.0, -4.0]), param([0.0], [2.0])
    assert clip_grad_norm_([a, b], max_norm=2.0, norm_type=float("inf")) == pytest.approx(4.0)
    np.testing.assert_allclose(a.grad, [1.5, -2.0], rtol=1e-6)
