"""Learning-rate schedules: the lr after each step, checked against the formulas by hand."""
import json
import math

import numpy as np
import pytest

from minillm.nn import Parameter
from minillm.optim import SGD, LambdaLR, get_scheduler


def make_optimizer(lr=1.0):
    return SGD([Parameter(np.zeros(2, np.float32))], lr=lr)


def lrs(name, steps, lr=1.0, **kwargs):
    """The lr at t = 0, 1, ..., steps - 1 (t = number of scheduler.step() calls so far)."""
    scheduler = get_scheduler(name, make_optimizer(lr), **kwargs)
    out = []
    for _ in range(steps):
        out.append(scheduler.get_last_lr()[0])
        scheduler.step()
    return out


def test_constant_keeps_the_base_lr():
    assert lrs("constant", 4, lr=0.3) == [0.3] * 4


def test_constant_with_warmup_ramps_linearly_then_holds():
    assert lrs("constant_with_warmup", 6, num_warmup_steps=4) == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]


def test_linear_warms_up_then_decays_to_zero_at_num_training_steps():
    # w = 2, T = 6: t/2 for t < 2, then (6 - t)/4, and 0 from t = 6 on.
    got = lrs("linear", 8, num_warmup_steps=2, num_training_steps=6)
    assert got == pytest.approx([0.0, 0.5, 1.0, 0.75, 0.5, 0.25, 0.0, 0.0])


def test_cosine_is_half_a_cosine_from_one_to_zero_after_warmup():
    # w = 2, T = 10: progress p = (t - 2)/8; lr = ½(1 + cos(π p)): 1 at p = 0, ½ at p = ½, 0 at p = 1.
    got = lrs("cosine", 11, num_warmup_steps=2, num_training_steps=10)
    assert got[:3] == pytest.approx([0.0, 0.5, 1.0])
    assert got[6] == pytest.approx(0.5)
    assert got[4] == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert got[10] == pytest.approx(0.0, abs=1e-12)


def test_inverse_sqrt_decays_as_sqrt_of_warmup_over_step():
    # w = 4, timescale s = w: after warmup lr = 1/sqrt(t/4) = 2/sqrt(t).
    got = lrs("inverse_sqrt", 17, num_warmup_steps=4)
    assert got[:5] == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])
    assert got[16] == pytest.approx(0.5)


def test_rsqrt_is_t5s_one_over_sqrt_max_step_warmup():
    # T5: lr = 1/sqrt(max(t, 10⁴)) = base 0.01 × sqrt(10⁴ / max(t, 10⁴)).
    scheduler = get_scheduler("rsqrt", make_optimizer(0.01), num_warmup_steps=10_000)
    for t in [0, 1, 9_999, 10_000, 40_000]:
        scheduler.last_epoch = t - 1
        scheduler.step()
        assert scheduler.get_last_lr()[0] == pytest.approx(1 / math.sqrt(max(t, 10_000)))


def test_scheduler_writes_the_lr_into_every_param_group():
    a, b = Parameter(np.zeros(1, np.float32)), Parameter(np.zeros(1, np.float32))
    opt = SGD([{"params": [a], "lr": 1.0}, {"params": [b], "lr": 0.1}], lr=0.5)
    scheduler = get_scheduler("linear", opt, num_warmup_steps=2, num_training_steps=10)
    assert [g["lr"] for g in opt.param_groups] == [0.0, 0.0]  # warmup starts at 0 at once
    scheduler.step()
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.5, 0.05])
    assert scheduler.get_last_lr() == pytest.approx([0.5, 0.05])


def test_lambda_lr_accepts_any_multiplier():
    opt = make_optimizer(2.0)
    scheduler = LambdaLR(opt, lambda t: 0.5 ** t)
    scheduler.step()
    scheduler.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5)


def test_state_dict_round_trip_continues_the_same_sequence():
    straight = lrs("cosine", 12, num_warmup_steps=3, num_training_steps=12)
    first = get_scheduler("cosine", make_optimizer(), num_warmup_steps=3, num_training_steps=12)
    for _ in range(5):
        first.step()
    state = json.loads(json.dumps(first.state_dict()))
    opt = make_optimizer()
    resumed = get_scheduler("cosine", opt, num_warmup_steps=3, num_training_steps=12)
    resumed.load_state_dict(state)
    got = []
    for _ in range(7):
        resumed.step()
        got.append(resumed.get_last_lr()[0])
    assert got == pytest.approx(straight[6:] + [0.0])
    assert opt.param_groups[0]["lr"] == pytest.approx(got[-1])


def test_unknown_name_and_missing_training_steps_are_clear_errors():
    with pytest.raises(ValueError, match="unknown schedule 'cosin'"):
        get_scheduler("cosin", make_optimizer())
    with pytest.raises(ValueError, match="num_training_steps"):
        get_scheduler("linear", make_optimizer(), num_warmup_steps=10)
