"""The optimizers' fast path on the CPU: the update rules of ``optim/``, in place and over threads.

Read ``optim/adam.py`` first. There ``Adam._update`` is Algorithm 1 of Kingma & Ba (2015) on
whole arrays (with decoupled weight decay, AdamW's Algorithm 2 of Loshchilov & Hutter, 2019): ``m = β1 m + (1 - β1) g`` builds a new array for every product and sum, thirteen arrays
as large as the parameter per step. For T5-small (60M parameters, 240 MB per float32 copy)
that is about 3 GB allocated and written per step, and each one leaves the cache before the
next line reads it.

This module runs the same arithmetic with NumPy's ``out=`` arguments: each product is written
into one of two scratch arrays or straight into the state (m, v) and the parameter. Parameters
update independently of one another, so the updates are also shared out over minillm's threads
(``threads.map_in_threads``; NumPy releases the GIL inside its loops).

Every line performs the same float operations, on the same operands and in the same order, as
its reference: the results are bitwise equal, and ``tests/test_optim_fast.py`` checks exactly
that. (Addition and multiplication are commutative in IEEE arithmetic, so ``a + b`` may become
``add(b, a)``; but never ``(a·b)·c`` for ``a·(b·c)``, and never ``x · (1/y)`` for ``x / y``.)

Each fast version is a subclass of its reference optimizer, registered as ops register theirs:
``dispatch.lookup(AdamW, *arrays)`` returns ``InPlaceAdamW``. ``Optimizer.step`` then runs
``InPlaceAdamW.update_all`` on the user's optimizer (``Optimizer.viewed_as``: the same groups and
state), instead of its own one-thread loop.
"""
from __future__ import annotations

import numpy as np

from ..optim.adafactor import Adafactor
from ..optim.adam import Adam, AdamW
from ..optim.sgd import SGD
from .dispatch import register
from .threads import map_in_threads


def _all_numpy(*arrays) -> bool:
    """The fast path is for NumPy arrays; CuPy parameters take the reference path."""
    return all(isinstance(a, np.ndarray) for a in arrays)


class ThreadedUpdates:
    """Mixin: parameters update independently, so ``update_all`` shares them out over the threads."""

    def update_all(self, jobs: list) -> None:
        """Run ``_update(p, grad, state, group)`` for every job, each parameter whole on one thread."""
        map_in_threads(lambda job: self._update(*job), jobs, sizes=[p.data.size for p, *_ in jobs])


@register(Adam, accepts=_all_numpy)
class InPlaceAdam(ThreadedUpdates, Adam):
    """``Adam._update`` in place: two scratch arrays per parameter and step."""

    def _update(self, p, grad, state, group) -> None:
        _adam_in_place(p, grad, state, group, self.decoupled_weight_decay)


@register(AdamW, accepts=_all_numpy)
class InPlaceAdamW(InPlaceAdam, AdamW):
    """``AdamW._update`` in place: InPlaceAdam's arithmetic, the decay decoupled (AdamW's flag)."""


def _adam_in_place(p, grad, state, group, decoupled: bool) -> None:
    """Adam's and AdamW's update, line by line as ``Adam._update``, with ``out=``."""
    lr, eps, weight_decay = float(group["lr"]), float(group["eps"]), float(group["weight_decay"])
    beta1, beta2 = float(group["betas"][0]), float(group["betas"][1])
    if not state:
        state.update(step=0, exp_avg=np.zeros_like(p.data), exp_avg_sq=np.zeros_like(p.data))
    state["step"] += 1
    t, theta, m, v = state["step"], p.data, state["exp_avg"], state["exp_avg_sq"]

    if weight_decay != 0 and not decoupled:
        grad = np.add(grad, np.multiply(theta, weight_decay))     # g + λθ, a new array
    scratch = np.multiply(grad, 1 - beta1)
    np.multiply(m, beta1, out=m)
    np.add(m, scratch, out=m)                                     # m = β1 m + (1-β1) g
    np.multiply(grad, grad, out=scratch)
    np.multiply(scratch, 1 - beta2, out=scratch)
    np.multiply(v, beta2, out=v)
    np.add(v, scratch, out=v)                                     # v = β2 v + (1-β2) g²
    denom = np.divide(v, 1 - beta2 ** t)
    np.sqrt(denom, out=denom)
    np.add(denom, eps, out=denom)                                 # √v̂ + ε
    np.divide(m, 1 - beta1 ** t, out=scratch)
    np.multiply(scratch, lr, out=scratch)                         # η m̂
    np.divide(scratch, denom, out=scratch)
    if weight_decay != 0 and decoupled:
        np.multiply(theta, 1 - lr * weight_decay, out=theta)      # θ ← (1 - ηλ) θ
    np.subtract(theta, scratch, out=theta)                        # θ ← θ - η m̂ / (√v̂ + ε)


@register(SGD, accepts=_all_numpy)
class InPlaceSGD(ThreadedUpdates, SGD):
    """``SGD._update`` in place: the momentum buffer is updated where it lies."""

    def _update(self, p, grad, state, group) -> None:
        _sgd_in_place(p, grad, state, group)


def _sgd_in_place(p, grad, state, group) -> None:
    """SGD's update, line by line as ``SGD._update``, with ``out=``."""
    lr, momentum = float(group["lr"]), float(group["momentum"])
    weight_decay, dampening = float(group["weight_decay"]), float(group["dampening"])
    if weight_decay != 0:
        grad = np.add(grad, np.multiply(p.data, weight_decay))   # g + λθ, a new array
    if momentum != 0:
        buf = state.get("momentum_buffer")
        if buf is None:
            buf = state["momentum_buffer"] = grad.copy()
        else:
            np.multiply(buf, momentum, out=buf)
            # (1 - τ) g with τ = 0 multiplies by exactly 1: skip it.
            np.add(buf, grad if dampening == 0 else np.multiply(grad, 1 - dampening), out=buf)
        grad = np.add(grad, np.multiply(buf, momentum)) if group["nesterov"] else buf
    np.subtract(p.data, np.multiply(grad, lr), out=p.data)       # θ ← θ - η d


@register(Adafactor, accepts=_all_numpy)
class InPlaceAdafactor(ThreadedUpdates, Adafactor):
    """``Adafactor._update`` in place: one scratch array as large as the parameter."""

    def _update(self, p, grad, state, group) -> None:
        _adafactor_in_place(p, grad, state, group)


def _adafactor_in_place(p, grad, state, group) -> None:
    """Adafactor's update, line by line as ``Adafactor._update``, with ``out=``."""
    theta, beta1 = p.data, group["beta1"]
    if not state:
        state.update(Adafactor.initial_state(theta, beta1 is not None))
    state["step"] += 1
    t = state["step"]
    lr = Adafactor.get_lr(group, t, Adafactor.rms(theta) if group["scale_parameter"] else 0.0)
    beta2t = 1.0 - t ** float(group["decay_rate"])
    update = np.multiply(grad, grad)
    np.add(update, float(group["eps"][0]), out=update)           # G² + ε1
    if "exp_avg_sq_row" in state:
        row, col = state["exp_avg_sq_row"], state["exp_avg_sq_col"]
        np.multiply(row, beta2t, out=row)
        np.add(row, (1 - beta2t) * update.mean(axis=-1), out=row)
        np.multiply(col, beta2t, out=col)
        np.add(col, (1 - beta2t) * update.mean(axis=-2), out=col)
        row_factor = 1 / np.sqrt(row / row.mean(axis=-1, keepdims=True))
        col_factor = 1 / np.sqrt(col)
        np.multiply(row_factor[..., :, None], col_factor[..., None, :], out=update)
        np.multiply(update, grad, out=update)                    # U = G / sqrt(V̂)
    else:
        v = state["exp_avg_sq"]
        np.multiply(v, beta2t, out=v)
        np.multiply(update, 1 - beta2t, out=update)
        np.add(v, update, out=v)
        np.sqrt(v, out=update)
        np.divide(grad, update, out=update)                      # U = G / sqrt(V)
    np.multiply(update, lr / max(1.0, Adafactor.rms(update) / float(group["clip_threshold"])), out=update)
    if beta1 is not None:
        m = state["exp_avg"]
        np.multiply(m, float(beta1), out=m)
        np.multiply(update, 1 - float(beta1), out=update)
        np.add(m, update, out=m)
        update = m
    if group["weight_decay"] != 0:
        np.multiply(theta, 1 - float(group["weight_decay"]) * lr, out=theta)
    np.subtract(theta, update, out=theta)                        # θ ← θ - Û

