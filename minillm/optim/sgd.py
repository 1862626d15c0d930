"""Stochastic gradient descent with momentum, Nesterov momentum and L2 weight decay."""
from __future__ import annotations

from .optimizer import Optimizer


class SGD(Optimizer):
    """Stochastic gradient descent, with the same semantics as ``torch.optim.SGD``.

    With gradient g_t, parameter θ, learning rate η, momentum μ, dampening τ and weight decay λ:

        g_t ← g_t + λ θ_{t-1}                          (L2 penalty, coupled to the gradient)
        b_1 = g_1,   b_t = μ b_{t-1} + (1 - τ) g_t     (momentum buffer; only when μ ≠ 0)
        d_t = g_t + μ b_t   if nesterov                (Sutskever et al., 2013, "On the importance
              b_t           otherwise                   of initialization and momentum")
        θ_t = θ_{t-1} - η d_t

    Without momentum d_t = g_t: plain gradient descent.

    Args:
        params: Parameters or param-group dicts.
        lr: learning rate η.
        momentum: μ (0 disables the buffer).
        dampening: τ, scales down the new gradient in the buffer.
        weight_decay: λ, an L2 penalty added to the gradient.
        nesterov: use Nesterov momentum (needs ``momentum > 0`` and ``dampening == 0``).
    """

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False):
        if lr < 0:
            raise ValueError(f"SGD: invalid learning rate {lr}")
        if momentum < 0:
            raise ValueError(f"SGD: invalid momentum {momentum}")
        if weight_decay < 0:
            raise ValueError(f"SGD: invalid weight_decay {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: nesterov momentum requires momentum > 0 and dampening = 0")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))

    def _update(self, p, grad, state, group):
        lr, momentum = float(group["lr"]), float(group["momentum"])
        weight_decay, dampening = float(group["weight_decay"]), float(group["dampening"])
        if weight_decay != 0:
            grad = grad + weight_decay * p.data                     # g ← g + λθ (a new array)
        if momentum != 0:
            buf = state.get("momentum_buffer")
            buf = grad.copy() if buf is None else momentum * buf + (1 - dampening) * grad
            state["momentum_buffer"] = buf                          # b_t
            grad = grad + momentum * buf if group["nesterov"] else buf   # d_t
        p.data -= lr * grad                                         # θ ← θ - η d_t
