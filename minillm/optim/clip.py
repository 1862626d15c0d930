"""Gradient clipping by the global norm (Pascanu et al., 2013), like ``torch.nn.utils.clip_grad_norm_``."""
from __future__ import annotations

import math

from .. import backend
from ..autograd import Tensor


def clip_grad_norm_(parameters, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False) -> float:
    """Scale all gradients in place so that their global norm is at most ``max_norm``.

    The global norm treats every gradient as one long vector:

        ‖g‖ = (Σ_p Σ_i |g_{p,i}|^q)^(1/q)        (q = norm_type; max_p,i |g_{p,i}| for q = inf)

    and, when ‖g‖ > max_norm, every gradient is multiplied by max_norm / (‖g‖ + 1e-6). Directions
    are kept; only the length of the step shrinks, which tames the rare exploding batch.

    Args:
        parameters: an iterable of Parameters (or a single one); those without ``.grad`` are skipped.
        max_norm: the largest allowed global norm.
        norm_type: q, 2.0 (the default) or ``float("inf")``.
        error_if_nonfinite: raise if the norm is nan or inf (otherwise the gradients become nan).

    Returns:
        The global norm before clipping, as a Python float.
    """
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    norm_type = float(norm_type)
    total_norm = global_norm(grads, norm_type)
    if error_if_nonfinite and not math.isfinite(total_norm):
        raise RuntimeError(f"clip_grad_norm_: the total norm of order {norm_type} of the gradients is "
                           f"{total_norm}; set error_if_nonfinite=False to clip anyway")
    clip_coef = float(max_norm) / (total_norm + 1e-6)
    if not clip_coef >= 1.0:  # also true for nan, so a nan norm propagates, as in PyTorch
        for g in grads:
            g *= clip_coef
    return total_norm


def global_norm(arrays, norm_type: float = 2.0) -> float:
    """(Σ_arrays Σ_i |a_i|^q)^(1/q) of all ``arrays`` as one long vector (q = inf: the largest |a_i|)."""
    if norm_type == math.inf:
        return max(float(abs(a).max()) for a in arrays)
    if norm_type == 2.0:
        # Σ a² per array as a dot product: one pass, no a² temporary.
        return math.sqrt(sum(float(a.reshape(-1) @ a.reshape(-1)) for a in arrays))
    xp = backend.get_array_module(arrays[0])
    return sum(float(xp.sum(abs(a) ** norm_type)) for a in arrays) ** (1.0 / norm_type)
