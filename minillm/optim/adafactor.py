"""Adafactor (Shazeer & Stern, 2018): Adam-like steps with sublinear memory, the optimizer of T5.

Adam stores v, a second-moment estimate as large as the parameter. For a matrix of shape (n, m),
Adafactor stores only its row sums R (n values) and column sums C (m values) and rebuilds
v̂ ≈ R Cᵀ / sum(R): the best rank-1 approximation in the sense of the I-divergence. It also drops
the first moment by default, so a T5 matrix costs n + m floats of optimizer state instead of 2nm.
"""
from __future__ import annotations

import math

from .. import backend
from .optimizer import Optimizer


class Adafactor(Optimizer):
    """Adafactor with the semantics and defaults of ``transformers.optimization.Adafactor``.

    (Shazeer & Stern, 2018, "Adafactor: Adaptive Learning Rates with Sublinear Memory Cost",
    Algorithms 4 and 5.) At step t = 1, 2, ... with gradient G_t:

        β̂2_t = 1 - t^decay_rate                                  (decay_rate = -0.8: β̂2_1 = 0)
        ρ_t  = min(1e-2, 1/sqrt(t))      if relative_step        (× 1e-6 t instead of 1e-2 with
             = lr                        otherwise                 warmup_init)
        α_t  = max(ε2, RMS(θ_{t-1})) ρ_t if scale_parameter else ρ_t
        for a matrix (factored: the last two axes):
            R_t = β̂2_t R_{t-1} + (1 - β̂2_t) mean_cols(G² + ε1)  (one value per row)
            C_t = β̂2_t C_{t-1} + (1 - β̂2_t) mean_rows(G² + ε1)  (one value per column)
            U_t = G_t / sqrt(V̂_t),   V̂_t = R_t C_tᵀ / mean(R_t)
        for a vector:
            V_t = β̂2_t V_{t-1} + (1 - β̂2_t)(G² + ε1),   U_t = G_t / sqrt(V_t)
        Û_t = α_t U_t / max(1, RMS(U_t)/d)                       (update clipping, d = clip_threshold)
        M_t = β1 M_{t-1} + (1 - β1) Û_t,  Û_t ← M_t             (only when beta1 is not None)
        θ_t = θ_{t-1} - α_t λ θ_{t-1} - Û_t                      (λ = weight_decay)

    RMS(x) = sqrt(mean(x²)). With relative_step (the default) the step size 1/sqrt(t), capped at
    1e-2, is T5's "inverse square root" schedule, 1/sqrt(max(t, 10⁴)), built in; then ``lr``
    must be None. For fine-tuning T5 with a fixed rate, Hugging Face recommends
    ``Adafactor(params, lr=1e-3, relative_step=False, scale_parameter=False, warmup_init=False)``.

    Args:
        params: Parameters or param-group dicts.
        lr: external learning rate (only with ``relative_step=False``).
        eps: (ε1, ε2): regulariser of the squared gradient, and floor of the parameter scale.
        clip_threshold: d, the RMS above which an update is scaled down.
        decay_rate: exponent of the β̂2 schedule (-0.8 in the paper).
        beta1: first-moment decay; None (the default) keeps no first moment.
        weight_decay: λ, decoupled and scaled by α_t.
        scale_parameter: scale the step by the RMS of the parameter.
        relative_step: use the time-dependent ρ_t instead of ``lr``.
        warmup_init: ramp ρ_t up as 1e-6 t (needs ``relative_step``).
    """

    def __init__(self, params, lr: float | None = None, eps: tuple = (1e-30, 1e-3),
                 clip_threshold: float = 1.0, decay_rate: float = -0.8, beta1: float | None = None,
                 weight_decay: float = 0.0, scale_parameter: bool = True, relative_step: bool = True,
                 warmup_init: bool = False):
        if lr is not None and relative_step:
            raise ValueError("Adafactor: cannot combine a manual lr with relative_step=True")
        if warmup_init and not relative_step:
            raise ValueError("Adafactor: warmup_init=True requires relative_step=True")
        if lr is None and not relative_step:
            raise ValueError("Adafactor: relative_step=False needs an lr")
        super().__init__(params, dict(lr=lr, eps=tuple(eps), clip_threshold=clip_threshold,
                                      decay_rate=decay_rate, beta1=beta1, weight_decay=weight_decay,
                                      scale_parameter=scale_parameter, relative_step=relative_step,
                                      warmup_init=warmup_init))

    @staticmethod
    def rms(x) -> float:
        """sqrt(mean(x²)), as a Python float."""
        flat = x.reshape(-1)
        return math.sqrt(float(flat @ flat) / max(flat.size, 1))

    @staticmethod
    def get_lr(group: dict, step: int, param_rms: float) -> float:
        """α_t: the step size of this group at step ``step`` for a parameter whose RMS is ``param_rms``."""
        rel_step_size = group["lr"]
        if group["relative_step"]:
            min_step = 1e-6 * step if group["warmup_init"] else 1e-2
            rel_step_size = min(min_step, 1.0 / math.sqrt(step))
        param_scale = max(group["eps"][1], param_rms) if group["scale_parameter"] else 1.0
        return param_scale * rel_step_size

    def _update(self, p, grad, state, group):
        xp = backend.get_array_module(p.data)
        theta, beta1 = p.data, group["beta1"]
        if not state:
            state.update(self.initial_state(theta, beta1 is not None))
        state["step"] += 1
        t = state["step"]
        lr = self.get_lr(group, t, self.rms(theta) if group["scale_parameter"] else 0.0)   # α_t
        beta2t = 1.0 - t ** float(group["decay_rate"])
        squared = grad ** 2 + float(group["eps"][0])                      # G² + ε1
        if "exp_avg_sq_row" in state:
            row = state["exp_avg_sq_row"] = beta2t * state["exp_avg_sq_row"] + (1 - beta2t) * squared.mean(axis=-1)
            col = state["exp_avg_sq_col"] = beta2t * state["exp_avg_sq_col"] + (1 - beta2t) * squared.mean(axis=-2)
            # 1/sqrt(V̂) = 1/sqrt(R / mean(R)) · 1/sqrt(C): one factor per row, one per column.
            row_factor = 1 / xp.sqrt(row / row.mean(axis=-1, keepdims=True))   # (..., n)
            col_factor = 1 / xp.sqrt(col)                                       # (..., m)
            update = row_factor[..., :, None] * col_factor[..., None, :] * grad   # U = G / sqrt(V̂)
        else:
            v = state["exp_avg_sq"] = beta2t * state["exp_avg_sq"] + (1 - beta2t) * squared
            update = grad / xp.sqrt(v)                                          # U = G / sqrt(V)
        update = (lr / max(1.0, self.rms(update) / float(group["clip_threshold"]))) * update   # Û
        if beta1 is not None:
            update = state["exp_avg"] = float(beta1) * state["exp_avg"] + (1 - float(beta1)) * update
        if group["weight_decay"] != 0:
            theta *= 1 - float(group["weight_decay"]) * lr                     # θ ← (1 - α_t λ) θ
        theta -= update                                                         # θ ← θ - Û

    @staticmethod
    def initial_state(theta, first_moment: bool) -> dict:
        """Zero statistics: R (..., n) and C (..., m) for a matrix, V like θ for a vector; M if β1 is set."""
        xp = backend.get_array_module(theta)
        state = {"step": 0}
        if first_moment:
            state["exp_avg"] = xp.zeros_like(theta)
        if theta.ndim >= 2:
            state["exp_avg_sq_row"] = xp.zeros(theta.shape[:-1], dtype=theta.dtype)
            state["exp_avg_sq_col"] = xp.zeros(theta.shape[:-2] + theta.shape[-1:], dtype=theta.dtype)
        else:
            state["exp_avg_sq"] = xp.zeros_like(theta)
        return state
