"""Edges of the optimizers and schedules, pinned by hand-worked numbers (issue 26).

Each expectation below is worked out in the comment beside it, never by calling the code under
test: Adafactor's parameter-scale floor max(ε2, RMS(θ)), the inverse-square-root schedule's shift
s - w, the p-norm's root in gradient clipping, and every schedule at t = w - 1, w, w + 1 and
T - 1, T, T + 1. The same quantities are compared with transformers and torch in
tests/parity/test_edges_parity.py, but these tests catch a slip on their own.
"""
import math

import numpy as np
import pytest

import minillm
from minillm.nn import Parameter
from minillm.optim import SGD, Adafactor, LambdaLR, clip_grad_norm_, get_scheduler

# ------------------------------------------------------------------------------ Adafactor's floor


def _group(**overrides):
    group = dict(lr=None, eps=(1e-30, 1e-3), relative_step=True, warmup_init=False, scale_parameter=True)
    return {**group, **overrides}


@pytest.mark.parametrize("param_rms, expected", [
    (0.0, 1e-3 * 1e-2),      # a zero parameter: the floor ε2 = 1e-3 stands in for RMS(θ)
    (5e-4, 1e-3 * 1e-2),     # below the floor: still ε2
    (1e-3, 1e-3 * 1e-2),     # equal to it
    (4e-3, 4e-3 * 1e-2),     # above it: RMS(θ) itself
])
def test_adafactor_step_size_uses_the_larger_of_eps2_and_the_parameter_rms(param_rms, expected):
    # relative_step at t = 1: ρ = min(1e-2, 1/sqrt(1)) = 1e-2; α = max(ε2, RMS(θ)) ρ.
    assert Adafactor.get_lr(_group(), 1, param_rms) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("step, expected", [
    (1, 1e-2), (9_999, 1e-2),           # 1/sqrt(t) > 1e-2 until t = 10⁴
    (10_000, 1e-2), (40_000, 5e-3),     # 1/sqrt(10⁴) = 1e-2, 1/sqrt(4·10⁴) = 5e-3
])
def test_adafactor_relative_step_is_capped_at_1e_2_then_decays_as_one_over_sqrt_t(step, expected):
    got = Adafactor.get_lr(_group(scale_parameter=False), step, 123.0)  # no parameter scale: RMS ignored
    assert got == pytest.approx(expected, rel=1e-12)


def test_adafactor_warmup_init_ramps_as_1e_6_t_and_a_fixed_lr_is_used_as_is():
    assert Adafactor.get_lr(_group(warmup_init=True, scale_parameter=False), 3, 0.0) == pytest.approx(3e-6)
    # warmup_init at t = 10⁶: min(1e-6 · 10⁶, 1/sqrt(10⁶)) = min(1, 1e-3) = 1e-3
    assert Adafactor.get_lr(_group(warmup_init=True, scale_parameter=False), 10 ** 6, 0.0) == pytest.approx(1e-3)
    fixed = _group(lr=0.25, relative_step=False)
    assert Adafactor.get_lr(fixed, 7, 0.5) == pytest.approx(0.25 * 0.5)   # α = RMS(θ) · lr
    assert Adafactor.get_lr(fixed, 7, 0.0) == pytest.approx(0.25 * 1e-3)  # α = ε2 · lr
    assert Adafactor.get_lr({**fixed, "scale_parameter": False}, 7, 0.0) == pytest.approx(0.25)


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("theta, scale", [
    ([0.0, 0.0], 1e-3),              # RMS 0: the floor
    ([2e-3, -2e-3], 2e-3),           # RMS 2e-3: the parameter's own scale
])
def test_adafactor_first_step_of_a_vector_moves_by_the_floored_scale_times_lr(theta, scale, fast):
    # t = 1: β̂2 = 1 - 1^-0.8 = 0, so V = G² + 1e-30 and U = G/sqrt(V) = sign(G) (|G| >= 1 here),
    # RMS(U) = 1 is not above d = 1: no clipping. θ ← θ - α sign(G), α = max(ε2, RMS(θ)) · 0.1.
    theta = np.array(theta)
    p = Parameter(theta.copy())
    p.grad = np.array([1.0, -2.0])
    with minillm.fast_paths(fast):
        Adafactor([p], lr=0.1, relative_step=False).step()
    np.testing.assert_allclose(p.data, theta - 0.1 * scale * np.array([1.0, -1.0]), rtol=1e-12, atol=1e-18)


# ------------------------------------------------------------------------------ schedules


def lrs(name, steps, lr=1.0, **kwargs):
    """The lr at t = 0 .. steps - 1 (t counts the scheduler.step() calls so far)."""
    scheduler = get_scheduler(name, SGD([Parameter(np.zeros(1))], lr=lr), **kwargs)
    out = []
    for _ in range(steps):
        out.append(scheduler.get_last_lr()[0])
        scheduler.step()
    return out


def test_inverse_sqrt_with_the_default_timescale_is_sqrt_w_over_t_after_warmup():
    # w = 4, s = w = 4: t/4 for t < 4, then 1/sqrt((t + 0)/4) = sqrt(4/t): t = 4 → 1, 9 → 2/3, 16 → 1/2.
    got = lrs("inverse_sqrt", 17, num_warmup_steps=4)
    assert got[:5] == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])
    assert got[5] == pytest.approx(math.sqrt(4 / 5)) and got[9] == pytest.approx(2 / 3)
    assert got[16] == pytest.approx(0.5)


def test_inverse_sqrt_shifts_by_timescale_minus_warmup():
    # w = 4, s = 10: shift 6, λ(t) = 1/sqrt((t + 6)/10): t = 4 → 1 (no jump at the end of warmup),
    # t = 14 → 1/sqrt(2), t = 34 → 1/2. Without the shift (t/10) it would be 1/sqrt(0.4) at t = 4.
    got = lrs("inverse_sqrt", 35, num_warmup_steps=4, scheduler_specific_kwargs={"timescale": 10})
    assert got[3] == pytest.approx(0.75) and got[4] == pytest.approx(1.0)
    assert got[5] == pytest.approx(1 / math.sqrt(1.1))
    assert got[14] == pytest.approx(1 / math.sqrt(2)) and got[34] == pytest.approx(0.5)


def test_inverse_sqrt_without_warmup_uses_a_timescale_of_ten_thousand():
    # w = 0, s = 10⁴: λ(t) = 1/sqrt((t + 10⁴)/10⁴): 1 at t = 0, 1/2 at t = 3·10⁴.
    scheduler = get_scheduler("inverse_sqrt", SGD([Parameter(np.zeros(1))], lr=2.0))
    assert scheduler.get_last_lr() == [pytest.approx(2.0)]
    assert scheduler.lr_lambdas[0](30_000) == pytest.approx(0.5)
    assert scheduler.lr_lambdas[0](10_000) == pytest.approx(1 / math.sqrt(2))


@pytest.mark.parametrize("name, expected", [
    # w = 2, T = 5. Warmup t/2 at t = 0, 1; then:
    ("constant", [1, 1, 1, 1, 1, 1, 1]),
    ("constant_with_warmup", [0, 0.5, 1, 1, 1, 1, 1]),
    ("linear", [0, 0.5, 1, 2 / 3, 1 / 3, 0, 0]),                     # (5 - t)/3, floored at 0
    ("cosine", [0, 0.5, 1, 0.75, 0.25, 0, 0.25]),                   # ½(1 + cos(π (t - 2)/3)): past T it rises
    ("rsqrt", [1, 1, 1, math.sqrt(2 / 3), math.sqrt(2 / 4), math.sqrt(2 / 5), math.sqrt(2 / 6)]),
])
def test_every_schedule_at_the_end_of_warmup_and_around_num_training_steps(name, expected):
    got = lrs(name, 7, num_warmup_steps=2, num_training_steps=5)
    assert got == pytest.approx(expected, abs=1e-12)


def test_cosine_with_more_cycles_and_the_base_lr_scaling():
    # num_cycles = 1: a full cosine after warmup, ½(1 + cos(2π p)) with p = t/4: 1, ½, 0, ½, 1.
    got = lrs("cosine", 5, lr=0.5, num_warmup_steps=0, num_training_steps=4,
              scheduler_specific_kwargs={"num_cycles": 1.0})
    assert got == pytest.approx([0.5, 0.25, 0.0, 0.25, 0.5], abs=1e-12)


def test_a_warmup_of_one_step_and_a_training_length_equal_to_the_warmup():
    # w = 1: λ(0) = 0/1, then decay. T = w = 3 for linear: (3 - t)/max(1, 0) → 0 at t = 3.
    assert lrs("constant_with_warmup", 3, num_warmup_steps=1) == [0.0, 1.0, 1.0]
    assert lrs("constant_with_warmup", 2, num_warmup_steps=0) == [1.0, 1.0]   # no warmup: the base lr at t = 0
    assert lrs("linear", 5, num_warmup_steps=3, num_training_steps=3) == pytest.approx([0, 1 / 3, 2 / 3, 0, 0])
    # rsqrt with w = 0 uses max(1, w) = 1: sqrt(1/max(t, 1)).
    assert lrs("rsqrt", 5) == pytest.approx([1, 1, math.sqrt(1 / 2), math.sqrt(1 / 3), 0.5])


def test_a_decay_of_a_single_step_after_warmup():
    # T - w = 1: linear (T - t)/1 and cosine ½(1 + cos(π (t - w))) reach 0 one step after warmup.
    assert lrs("linear", 4, num_warmup_steps=2, num_training_steps=3) == pytest.approx([0, 0.5, 1, 0])
    assert lrs("cosine", 3, num_warmup_steps=0, num_training_steps=1) == pytest.approx([1, 0, 1], abs=1e-12)


def test_unknown_schedule_specific_arguments_are_refused_as_transformers_does():
    for name in ("inverse_sqrt", "linear", "cosine"):
        with pytest.raises(TypeError, match="unexpected keyword argument 'cycles'"):
            lrs(name, 1, num_warmup_steps=1, num_training_steps=4, scheduler_specific_kwargs={"cycles": 2})


def test_lambda_lr_per_group_multipliers_and_a_restored_state():
    groups = [{"params": [Parameter(np.zeros(1))], "lr": 1.0}, {"params": [Parameter(np.zeros(1))], "lr": 3.0}]
    opt = SGD(groups, lr=1.0)
    scheduler = LambdaLR(opt, [lambda t: t, lambda t: 0.5 ** t])
    assert [g["lr"] for g in opt.param_groups] == [0.0, 3.0]     # λ(0) applied at once
    scheduler.step()
    scheduler.step()
    assert [g["lr"] for g in opt.param_groups] == [2.0, 0.75]    # 1·2, 3·0.25
    assert scheduler.get_last_lr() == [2.0, 0.75]
    state = scheduler.state_dict()
    assert state == {"last_epoch": 2, "base_lrs": [1.0, 3.0], "_last_lr": [2.0, 0.75]}
    other = LambdaLR(SGD([dict(g) for g in groups], lr=1.0), [lambda t: t, lambda t: 0.5 ** t])
    other.load_state_dict(state)
    assert other.get_last_lr() == [2.0, 0.75] and other.base_lrs == [1.0, 3.0]
    other.step()
    assert other.get_last_lr() == [3.0, 0.375]                   # t = 3
    with pytest.raises(ValueError, match="1 lr_lambdas for 2 param groups"):
        LambdaLR(opt, [lambda t: 1.0])


def test_schedule_name_errors_say_what_to_do():
    opt = SGD([Parameter(np.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match="unknown schedule 'cosin'; choose one of constant, "):
        get_scheduler("cosin", opt)
    for name in ("linear", "cosine"):
        with pytest.raises(ValueError, match=f"schedule '{name}' needs num_training_steps"):
            get_scheduler(name, opt, num_warmup_steps=1)


# ------------------------------------------------------------------------------ clipping


def _params(*grads):
    params = []
    for g in grads:
        p = Parameter(np.zeros(len(g)))
        p.grad = np.array(g, dtype=np.float64)
        params.append(p)
    return params


@pytest.mark.parametrize("norm_type, expected", [
    (1.0, 12.0),               # |−3| + 4 + |−5|
    (2.0, math.sqrt(50.0)),    # sqrt(9 + 16 + 25)
    (3.0, 6.0),                # (27 + 64 + 125)^(1/3) = 216^(1/3): the root, not the sum 216
    (4.0, 962.0 ** 0.25),      # (81 + 256 + 625)^(1/4)
    (math.inf, 5.0),           # max |g|
])
def test_clip_grad_norm_returns_the_p_norm_over_all_parameters(norm_type, expected):
    # Signs matter: (−3)³ = −27 would give (−27 + 64 − 125)^(1/3) without the absolute value.
    params = _params([-3.0, 4.0], [-5.0]) + [Parameter(np.ones(2))]   # the last has no grad: skipped
    total = clip_grad_norm_(params, max_norm=1e9, norm_type=norm_type)
    assert total == pytest.approx(expected, rel=1e-12)
    assert params[0].grad.tolist() == [-3.0, 4.0]                     # far below max_norm: untouched


@pytest.mark.parametrize("max_norm, factor", [
    (3.0, 3.0 / (6.0 + 1e-6)),     # below the norm: scaled by max_norm/(‖g‖ + 1e-6)
    (6.0, 6.0 / (6.0 + 1e-6)),     # equal: still scaled, by 1 - 1.7e-7 (torch does the same)
    (6.0 + 1e-6, 1.0),             # one epsilon past: the coefficient is exactly 1, nothing changes
    (7.0, 1.0),                    # above: untouched
])
def test_clip_grad_norm_scales_by_max_norm_over_the_norm_plus_eps(max_norm, factor):
    params = _params([-3.0, 4.0], [-5.0])
    assert clip_grad_norm_(params, max_norm, norm_type=3) == pytest.approx(6.0)
    np.testing.assert_allclose(params[0].grad, np.array([-3.0, 4.0]) * factor, rtol=1e-15)
    np.testing.assert_allclose(params[1].grad, np.array([-5.0]) * factor, rtol=1e-15)


def test_clip_grad_norm_of_no_gradients_and_of_a_single_parameter():
    assert clip_grad_norm_([Parameter(np.ones(3))], 1.0) == 0.0
    (p,) = _params([0.0, 3.0, 4.0])
    assert clip_grad_norm_(p, 1.0) == pytest.approx(5.0)             # a lone Parameter, not a list
    np.testing.assert_allclose(p.grad, [0.0, 3.0 / (5 + 1e-6), 4.0 / (5 + 1e-6)], rtol=1e-15)


def test_clip_grad_norm_nonfinite_norm_raises_only_when_asked():
    params = _params([np.inf, 1.0])
    with pytest.raises(RuntimeError, match="total norm of order 2.0 of the gradients is inf"):
        clip_grad_norm_(params, 1.0, error_if_nonfinite=True)
    with np.errstate(invalid="ignore"):  # the coefficient 1/inf = 0 multiplies every gradient
        assert clip_grad_norm_(params, 1.0) == math.inf
    assert np.isnan(params[0].grad[0]) and params[0].grad[1] == 0.0   # inf · 0 = nan, 1 · 0 = 0
