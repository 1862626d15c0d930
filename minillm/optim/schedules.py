"""Learning-rate schedules: the lr of step t is ``base_lr × λ(t)`` for a multiplier λ.

The names and formulas are those of ``transformers.get_scheduler`` (which builds on
``torch.optim.lr_scheduler.LambdaLR``), so a schedule here gives the same numbers:

    sched = get_scheduler("linear", opt, num_warmup_steps=100, num_training_steps=1000)
    for batch in data:
        loss.backward(); opt.step(); sched.step(); opt.zero_grad()

Multipliers λ(t) with warmup w and total steps T (t counts the optimizer steps done so far):

    constant              1
    constant_with_warmup  t/w for t < w, then 1
    linear                t/w for t < w, then max(0, (T - t)/(T - w))
    cosine                t/w for t < w, then max(0, ½(1 + cos(2π c p))), p = (t - w)/(T - w),
                          c = num_cycles = 0.5 (half a cosine, from 1 down to 0)
    inverse_sqrt          t/w for t < w, then 1/sqrt((t + s - w)/s), s = timescale (default w,
                          or 10 000 when w = 0)

    rsqrt                 sqrt(w / max(t, w)): T5's schedule (not in transformers)

T5 (Raffel et al., 2020) pre-trained with lr = 1/sqrt(max(t, 10⁴)): a constant 0.01 for 10⁴ steps,
then inverse-square-root decay. That is ``rsqrt`` with base lr 0.01 and w = 10⁴, and also exactly
Adafactor's built-in ``relative_step`` rate. ``inverse_sqrt`` has the same decay (with s = w) but
ramps linearly from 0 during warmup instead of holding the lr constant.
"""
from __future__ import annotations

import math
from functools import partial


class LambdaLR:
    """Set each group's lr to ``initial_lr × lr_lambda(step)``; like ``torch.optim.lr_scheduler.LambdaLR``.

    Creating the scheduler applies λ(0) at once (so a warmup schedule starts at lr 0), and each
    ``step()``, called after ``optimizer.step()``, advances t by one.

    Args:
        optimizer: a minillm Optimizer.
        lr_lambda: a function of the step count t, or one function per param group.
    """

    def __init__(self, optimizer, lr_lambda):
        self.optimizer = optimizer
        groups = optimizer.param_groups
        self.lr_lambdas = list(lr_lambda) if isinstance(lr_lambda, (list, tuple)) else [lr_lambda] * len(groups)
        if len(self.lr_lambdas) != len(groups):
            raise ValueError(f"LambdaLR: {len(self.lr_lambdas)} lr_lambdas for {len(groups)} param groups")
        for group in groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs = [group["initial_lr"] for group in groups]
        self.last_epoch = -1  # PyTorch's name for the step count: -1 before the first step()
        self._last_lr: list[float] = []
        self.step()

    def get_lr(self) -> list[float]:
        """The lr of every group at the current step t = ``last_epoch``."""
        return [base_lr * lmbda(self.last_epoch) for lmbda, base_lr in zip(self.lr_lambdas, self.base_lrs)]

    def step(self) -> None:
        """Advance one step and write the new lr into the optimizer's param groups."""
        self.last_epoch += 1
        self._last_lr = [float(lr) for lr in self.get_lr()]
        for group, lr in zip(self.optimizer.param_groups, self._last_lr):
            group["lr"] = lr

    def get_last_lr(self) -> list[float]:
        """The lr of every group set by the last ``step()``."""
        return list(self._last_lr)

    def state_dict(self) -> dict:
        """JSON-able state: the step count and the base learning rates (the lambdas are code, not state)."""
        return {"last_epoch": self.last_epoch, "base_lrs": list(self.base_lrs), "_last_lr": list(self._last_lr)}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore a ``state_dict()`` (the optimizer's lr is restored by the optimizer's own state)."""
        self.last_epoch = int(state_dict["last_epoch"])
        self.base_lrs = [float(lr) for lr in state_dict["base_lrs"]]
        self._last_lr = [float(lr) for lr in state_dict["_last_lr"]]


# ---------------------------------------------------------------------------------- multipliers
def _warmup(step: int, num_warmup_steps: int) -> float:
    """The linear ramp t/w used by every warmup."""
    return float(step) / float(max(1, num_warmup_steps))


def constant_lambda(step: int) -> float:
    """λ(t) = 1."""
    return 1.0


def constant_with_warmup_lambda(step: int, *, num_warmup_steps: int) -> float:
    """λ(t) = t/w during warmup, then 1."""
    return _warmup(step, num_warmup_steps) if step < num_warmup_steps else 1.0


def linear_lambda(step: int, *, num_warmup_steps: int, num_training_steps: int) -> float:
    """λ(t) = t/w during warmup, then a straight line down to 0 at t = T."""
    if step < num_warmup_steps:
        return _warmup(step, num_warmup_steps)
    return max(0.0, float(num_training_steps - step) / float(max(1, num_training_steps - num_warmup_steps)))


def cosine_lambda(step: int, *, num_warmup_steps: int, num_training_steps: int, num_cycles: float = 0.5) -> float:
    """λ(t) = t/w during warmup, then ½(1 + cos(2π c p)) with progress p from 0 to 1."""
    if step < num_warmup_steps:
        return _warmup(step, num_warmup_steps)
    progress = float(step - num_warmup_steps) / float(max(1, num_training_steps - num_warmup_steps))
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * float(num_cycles) * 2.0 * progress)))


def inverse_sqrt_lambda(step: int, *, num_warmup_steps: int, timescale: int) -> float:
    """λ(t) = t/w during warmup, then 1/sqrt((t + s - w)/s): equal to sqrt(w/t) when s = w."""
    if step < num_warmup_steps:
        return _warmup(step, num_warmup_steps)
    shift = timescale - num_warmup_steps
    return 1.0 / math.sqrt((step + shift) / timescale)


def rsqrt_lambda(step: int, *, num_warmup_steps: int) -> float:
    """λ(t) = sqrt(w / max(t, w)): 1 during warmup, then T5's 1/sqrt(t) decay (scaled to start at 1)."""
    warmup = max(1, num_warmup_steps)
    return math.sqrt(warmup / max(step, warmup))


SCHEDULE_NAMES = ("constant", "constant_with_warmup", "linear", "cosine", "inverse_sqrt", "rsqrt")


def get_scheduler(name: str, optimizer, num_warmup_steps: int | None = 0,
                  num_training_steps: int | None = None,
                  scheduler_specific_kwargs: dict | None = None) -> LambdaLR:
    """A ``LambdaLR`` for a schedule by name, as ``transformers.get_scheduler`` builds it.

    Args:
        name: one of ``SCHEDULE_NAMES``.
        optimizer: the optimizer whose ``lr`` (the base lr) is scheduled.
        num_warmup_steps: w, steps of linear warmup from 0 (ignored by "constant").
        num_training_steps: T, the step where "linear" and "cosine" reach 0 (required by them).
        scheduler_specific_kwargs: ``num_cycles`` for "cosine", ``timescale`` for "inverse_sqrt".
    """
    kwargs = dict(scheduler_specific_kwargs or {})
    if name not in SCHEDULE_NAMES:
        raise ValueError(f"unknown schedule {name!r}; choose one of {', '.join(SCHEDULE_NAMES)}")
    if name == "constant":
        return LambdaLR(optimizer, constant_lambda)
    warmup = int(num_warmup_steps or 0)
    if name == "constant_with_warmup":
        return LambdaLR(optimizer, partial(constant_with_warmup_lambda, num_warmup_steps=warmup))
    if name == "rsqrt":
        return LambdaLR(optimizer, partial(rsqrt_lambda, num_warmup_steps=warmup))
    if name == "inverse_sqrt":
        timescale = kwargs.pop("timescale", None) or warmup or 10_000
        return LambdaLR(optimizer, partial(inverse_sqrt_lambda, num_warmup_steps=warmup, timescale=timescale,
                                           **kwargs))
    if num_training_steps is None:
        raise ValueError(f"schedule {name!r} needs num_training_steps")
    lmbda = linear_lambda if name == "linear" else cosine_lambda
    return LambdaLR(optimizer, partial(lmbda, num_warmup_steps=warmup,
                                       num_training_steps=int(num_training_steps), **kwargs))
