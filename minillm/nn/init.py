"""Weight initialisers. All draw from minillm's seeded generator (``manual_seed``).

T5 initialises every weight from a normal distribution whose standard deviation depends on the
layer's fan-in (Mesh TensorFlow's convention, as in Hugging Face's ``T5PreTrainedModel._init_weights``):
    q:  std = (d_model * d_kv) ** -0.5     k, v:  std = d_model ** -0.5     o:  std = (heads * d_kv) ** -0.5
    wi: std = d_model ** -0.5              wo:    std = d_ff ** -0.5
    embeddings: std = 1.0 (factor 1.0)     lm_head: std = d_model ** -0.5
The q scale folds in the 1/sqrt(d_kv) that T5's attention leaves out.
"""
from __future__ import annotations

import math

import numpy as np

from ..backend import DEFAULT_DTYPE, get_rng


def normal(shape, std: float = 1.0, mean: float = 0.0, dtype=DEFAULT_DTYPE) -> np.ndarray:
    """Samples from N(mean, std^2)."""
    return (get_rng(np).standard_normal(shape) * std + mean).astype(dtype)


def uniform(shape, low: float, high: float, dtype=DEFAULT_DTYPE) -> np.ndarray:
    """Samples from U[low, high)."""
    return get_rng(np).uniform(low, high, size=shape).astype(dtype)


def kaiming_uniform(shape, a: float = math.sqrt(5), dtype=DEFAULT_DTYPE) -> np.ndarray:
    """He-uniform init for a (fan_out, fan_in) weight, as torch.nn.init.kaiming_uniform_.

    bound = gain * sqrt(3 / fan_in), gain = sqrt(2 / (1 + a^2)). With a = sqrt(5) (PyTorch's
    nn.Linear default and PEFT's LoRA A init) the bound is 1/sqrt(fan_in).
    """
    fan_in = shape[1] if len(shape) > 1 else shape[0]
    gain = math.sqrt(2.0 / (1 + a * a))
    bound = gain * math.sqrt(3.0 / fan_in)
    return uniform(shape, -bound, bound, dtype)


def zeros(shape, dtype=DEFAULT_DTYPE) -> np.ndarray:
    """All zeros."""
    return np.zeros(shape, dtype=dtype)


def ones(shape, dtype=DEFAULT_DTYPE) -> np.ndarray:
    """All ones."""
    return np.ones(shape, dtype=dtype)
