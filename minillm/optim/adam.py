"""Adam (Kingma & Ba, 2015) and AdamW (Loshchilov & Hutter, 2019).

Adam keeps two exponential moving averages per parameter: of the gradient (m, "first moment")
and of its square (v, "second moment"). The step is m / sqrt(v): large where the gradient
is consistent, small where it is noisy, and roughly invariant to the gradient's scale.

The two classes differ only in how weight decay enters:
    Adam   adds λθ to the gradient (an L2 penalty), so the decay is rescaled by 1/sqrt(v) too;
    AdamW  shrinks θ directly by (1 - ηλ), "decoupled" from the adaptive step.
"""
from __future__ import annotations

import math

from .. import backend
from .optimizer import Optimizer


class Adam(Optimizer):
    """Adam, with the same semantics and defaults as ``torch.optim.Adam``.

    With gradient g_t at step t = 1, 2, ..., learning rate η, betas (β1, β2), eps ε, weight decay λ
    (Kingma & Ba, 2015, "Adam: A Method for Stochastic Optimization", Algorithm 1):

        g_t ← g_t + λ θ_{t-1}                      (L2 penalty; only when λ ≠ 0)
        m_t = β1 m_{t-1} + (1 - β1) g_t
        v_t = β2 v_{t-1} + (1 - β2) g_t²
        θ_t = θ_{t-1} - η/(1 - β1^t) · m_t / (sqrt(v_t)/sqrt(1 - β2^t) + ε)

    The factors 1/(1 - β^t) undo the bias of m and v towards their zero initialisation.

    Args:
        params: Parameters or param-group dicts.
        lr: learning rate η.
        betas: (β1, β2), the decay rates of the two moving averages.
        eps: ε, added to the denominator for numerical stability.
        weight_decay: λ, an L2 penalty added to the gradient.
    """

    decoupled_weight_decay = False

    def __init__(self, params, lr: float = 1e-3, betas: tuple = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        if lr < 0:
            raise ValueError(f"{type(self).__name__}: invalid learning rate {lr}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"{type(self).__name__}: betas must be in [0, 1), got {betas}")
        if eps < 0 or weight_decay < 0:
            raise ValueError(f"{type(self).__name__}: eps and weight_decay must be >= 0")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    def _update(self, p, grad, state, group):
        xp = backend.get_array_module(p.data)
        # Python floats keep float32 arithmetic in float32 (a NumPy float64 scalar would not).
        lr, eps, weight_decay = float(group["lr"]), float(group["eps"]), float(group["weight_decay"])
        beta1, beta2 = float(group["betas"][0]), float(group["betas"][1])
        if not state:
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(p.data)       # m
            state["exp_avg_sq"] = xp.zeros_like(p.data)    # v
        state["step"] += 1
        t = state["step"]
        m, v, theta = state["exp_avg"], state["exp_avg_sq"], p.data

        if weight_decay != 0:
            if self.decoupled_weight_decay:
                xp.multiply(theta, 1.0 - lr * weight_decay, out=theta)   # θ ← (1 - ηλ) θ
            else:
                grad = grad + weight_decay * theta                         # g ← g + λθ

        # One scratch array serves every intermediate below, so a step allocates it once.
        scratch = xp.multiply(grad, 1.0 - beta1)
        xp.multiply(m, beta1, out=m)
        xp.add(m, scratch, out=m)                          # m = β1 m + (1-β1) g
        xp.multiply(grad, grad, out=scratch)
        xp.multiply(scratch, 1.0 - beta2, out=scratch)
        xp.multiply(v, beta2, out=v)
        xp.add(v, scratch, out=v)                          # v = β2 v + (1-β2) g²

        step_size = lr / (1.0 - beta1 ** t)
        bias_correction2_sqrt = math.sqrt(1.0 - beta2 ** t)
        xp.sqrt(v, out=scratch)
        xp.divide(scratch, bias_correction2_sqrt, out=scratch)
        xp.add(scratch, eps, out=scratch)                  # sqrt(v̂) + ε
        xp.divide(m, scratch, out=scratch)
        xp.multiply(scratch, -step_size, out=scratch)
        xp.add(theta, scratch, out=theta)                  # θ -= η m̂ / (sqrt(v̂) + ε)


class AdamW(Adam):
    """Adam with decoupled weight decay, with the same semantics and defaults as ``torch.optim.AdamW``.

    (Loshchilov & Hutter, 2019, "Decoupled Weight Decay Regularization", Algorithm 2.) The only
    change from ``Adam``: instead of adding λθ to the gradient, every step first shrinks

        θ_{t-1} ← (1 - η λ) θ_{t-1}

    and then applies the Adam step with the raw gradient. Weight decay then acts the same on
    every parameter, whatever its gradient history; with Adam's L2 it is divided by sqrt(v).
    The default λ is 0.01, as in PyTorch.
    """

    decoupled_weight_decay = True

    def __init__(self, params, lr: float = 1e-3, betas: tuple = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
