"""Adam (Kingma & Ba, 2015) and AdamW (Loshchilov & Hutter, 2019).

Adam keeps two exponential moving averages per parameter: of the gradient (m, "first moment")
and of its square (v, "second moment"). The step is m / sqrt(v): large where the gradient
is consistent, small where it is noisy, and roughly invariant to the gradient's scale.

The two classes differ only in how weight decay enters:
    Adam   adds λθ to the gradient (an L2 penalty), so the decay is rescaled by 1/sqrt(v) too;
    AdamW  shrinks θ directly by (1 - ηλ), "decoupled" from the adaptive step.
"""
from __future__ import annotations

from .. import backend
from .optimizer import Optimizer


class Adam(Optimizer):
    """Adam, with the same semantics and defaults as ``torch.optim.Adam``.

    With gradient g_t at step t = 1, 2, ..., learning rate η, betas (β1, β2), eps ε, weight decay λ
    (Kingma & Ba, 2015, "Adam: A Method for Stochastic Optimization", Algorithm 1):

        g_t ← g_t + λ θ_{t-1}                      (L2 penalty; only when λ ≠ 0)
        m_t = β1 m_{t-1} + (1 - β1) g_t            (first moment)
        v_t = β2 v_{t-1} + (1 - β2) g_t²           (second moment)
        m̂_t = m_t / (1 - β1^t),  v̂_t = v_t / (1 - β2^t)
        θ_t = θ_{t-1} - η m̂_t / (sqrt(v̂_t) + ε)

    The factors 1/(1 - β^t) undo the bias of m and v towards their zero initialisation.
    ``_update`` is these lines on whole arrays; the fast layer (``minillm/fast/cpu_optim.py``)
    runs the same arithmetic in place and over threads.

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
            state.update(step=0, exp_avg=xp.zeros_like(p.data), exp_avg_sq=xp.zeros_like(p.data))
        state["step"] += 1
        t, theta = state["step"], p.data

        if weight_decay != 0 and not self.decoupled_weight_decay:
            grad = grad + weight_decay * theta                           # Adam's L2: g ← g + λθ
        m = state["exp_avg"] = beta1 * state["exp_avg"] + (1 - beta1) * grad         # first moment
        v = state["exp_avg_sq"] = beta2 * state["exp_avg_sq"] + (1 - beta2) * grad ** 2  # second
        m_hat = m / (1 - beta1 ** t)                                     # bias corrections
        v_hat = v / (1 - beta2 ** t)
        if weight_decay != 0 and self.decoupled_weight_decay:
            theta *= 1 - lr * weight_decay                               # AdamW: θ ← (1 - ηλ) θ
        theta -= lr * m_hat / (xp.sqrt(v_hat) + eps)                     # θ ← θ - η m̂ / (√v̂ + ε)


class AdamW(Adam):
    """Adam with decoupled weight decay, with the same semantics and defaults as ``torch.optim.AdamW``.

    (Loshchilov & Hutter, 2019, "Decoupled Weight Decay Regularization", Algorithm 2):

        m_t = β1 m_{t-1} + (1 - β1) g_t            (the raw gradient: no λθ added)
        v_t = β2 v_{t-1} + (1 - β2) g_t²
        m̂_t = m_t / (1 - β1^t),  v̂_t = v_t / (1 - β2^t)
        θ_t = θ_{t-1} - η (m̂_t / (sqrt(v̂_t) + ε) + λ θ_{t-1})

    The paper writes the step as η_t (α m̂/(...) + λθ) with a schedule multiplier η_t; as in
    PyTorch, ``lr`` is the product η = η_t α, so the decay is ηλθ. The code applies it first,
    θ ← (1 - ηλ) θ, then the Adam step, which is the same sum. Weight decay then acts the same
    on every parameter, whatever its gradient history; with Adam's L2 it is divided by sqrt(v).
    The default λ is 0.01, as in PyTorch.
    """

    decoupled_weight_decay = True

    def __init__(self, params, lr: float = 1e-3, betas: tuple = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
