"""Parity of minillm's optimizers and schedules with torch.optim and transformers.

Each optimizer runs 6 steps from the same initial weights on the same sequence of gradients as
its reference, in float32; the parameters must agree to ~1e-6 relative after every step.
Skipped when torch (or transformers, for Adafactor and the schedules) is not installed.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from minillm.nn import Parameter  # noqa: E402
from minillm.optim import SGD, Adafactor, Adam, AdamW, get_scheduler  # noqa: E402

STEPS = 6
# A matrix (factored by Adafactor), a vector (not factored) and a 3-d tensor (factored over its last two axes).
SHAPES = [(5, 7), (7,), (2, 3, 4)]


def _run_both(make_ours, make_theirs, steps=STEPS, rtol=1e-6, atol=1e-7):
    """Step both optimizers on identical weights and gradients; compare the weights after every step."""
    rng = np.random.default_rng(0)
    init = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    grads = [[rng.standard_normal(s).astype(np.float32) for s in SHAPES] for _ in range(steps)]
    ours = [Parameter(w.copy()) for w in init]
    theirs = [torch.nn.Parameter(torch.from_numpy(w.copy())) for w in init]
    opt_ours, opt_theirs = make_ours(ours), make_theirs(theirs)
    for t in range(steps):
        for p, q, g in zip(ours, theirs, grads[t]):
            p.grad = g.copy()
            q.grad = torch.from_numpy(g.copy())
        opt_ours.step()
        opt_theirs.step()
        for p, q in zip(ours, theirs):
            assert p.data.dtype == np.float32
            np.testing.assert_allclose(p.data, q.detach().numpy(), rtol=rtol, atol=atol,
                                       err_msg=f"step {t + 1}, shape {p.shape}")


@pytest.mark.parametrize("options", [
    dict(lr=0.1),
    dict(lr=0.1, momentum=0.9),
    dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
    dict(lr=0.05, momentum=0.8, dampening=0.1, weight_decay=0.1),
])
def test_sgd_matches_torch(options):
    _run_both(lambda ps: SGD(ps, **options), lambda ps: torch.optim.SGD(ps, **options))


@pytest.mark.parametrize("options", [dict(lr=1e-2), dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)])
def test_adam_matches_torch(options):
    _run_both(lambda ps: Adam(ps, **options), lambda ps: torch.optim.Adam(ps, **options))


@pytest.mark.parametrize("options", [dict(lr=1e-2), dict(lr=1e-2, betas=(0.8, 0.99), weight_decay=0.5)])
def test_adamw_matches_torch(options):
    _run_both(lambda ps: AdamW(ps, **options), lambda ps: torch.optim.AdamW(ps, **options))


@pytest.mark.parametrize("options", [
    dict(),                                                              # T5 pre-training defaults
    dict(warmup_init=True),
    dict(lr=1e-2, relative_step=False, scale_parameter=False),           # HF's fine-tuning recipe
    dict(lr=1e-2, relative_step=False, beta1=0.9, weight_decay=0.1, clip_threshold=0.5),
])
def test_adafactor_matches_transformers(options):
    Reference = pytest.importorskip("transformers.optimization").Adafactor
    _run_both(lambda ps: Adafactor(ps, **options), lambda ps: Reference(ps, **options))


def test_param_groups_with_their_own_lr_match_torch():
    _run_both(lambda ps: AdamW([{"params": ps[:1], "lr": 0.1}, {"params": ps[1:], "weight_decay": 0.0}], lr=0.01),
              lambda ps: torch.optim.AdamW([{"params": ps[:1], "lr": 0.1}, {"params": ps[1:], "weight_decay": 0.0}],
                                           lr=0.01))


@pytest.mark.parametrize("name, kwargs", [
    ("constant", {}),
    ("constant_with_warmup", {}),
    ("linear", {}),
    ("cosine", {}),
    ("cosine", {"num_cycles": 1.5}),
    ("inverse_sqrt", {}),
    ("inverse_sqrt", {"timescale": 7}),
])
def test_schedule_matches_transformers_get_scheduler(name, kwargs):
    transformers = pytest.importorskip("transformers")
    ours_opt = SGD([Parameter(np.zeros(3, np.float32))], lr=0.5)
    ref_opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(3))], lr=0.5)
    ours = get_scheduler(name, ours_opt, num_warmup_steps=4, num_training_steps=20,
                         scheduler_specific_kwargs=kwargs)
    ref = transformers.get_scheduler(name, ref_opt, num_warmup_steps=4, num_training_steps=20,
                                     scheduler_specific_kwargs=kwargs)
    for _ in range(25):  # past num_training_steps, where linear/cosine stay at 0
        assert ours.get_last_lr() == pytest.approx(ref.get_last_lr(), rel=1e-12, abs=1e-15)
        assert ours_opt.param_groups[0]["lr"] == pytest.approx(ref_opt.param_groups[0]["lr"], rel=1e-12, abs=1e-15)
        ref_opt.step()
        ours.step()
        ref.step()
