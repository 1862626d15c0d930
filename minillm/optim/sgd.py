"""Stochastic gradient descent with momentum, Nesterov momentum and L2 weight decay."""
from __future__ import annotations

from .. import backend
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
        xp = backend.get_array_module(p.data)
        lr, momentum = float(group["lr"]), float(group["momentum"])
        weight_decay = float(group["weight_decay"])
        if weight_decay != 0:
            grad = grad + weight_decay * p.data          # a new array: p.grad stays untouched
        if momentum != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = grad.copy()
            else:
                xp.multiply(buf, momentum, out=buf)
                if group["dampening"] == 0:
                    xp.add(buf, grad, out=buf)
                else:
                    buf += (1.0 - float(group["dampening"])) * grad
            grad = grad + momentum * buf if group["nesterov"] else buf
        p.data -= lr * grad
