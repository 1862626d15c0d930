"""Basic layers: Linear, Embedding, RMSNorm, LayerNorm, Dropout. Each is a thin shell around an op."""
from __future__ import annotations

from .. import ops
from . import init
from .module import Module, Parameter


class Linear(Module):
    """y = x W^T + b, with W of shape (out_features, in_features) as in PyTorch and Hugging Face."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, std: float | None = None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        shape = (out_features, in_features)
        self.weight = Parameter(init.kaiming_uniform(shape) if std is None else init.normal(shape, std))
        if bias:
            bound = in_features ** -0.5
            self.bias = Parameter(init.uniform((out_features,), -bound, bound))
        else:
            self.register_parameter("bias", None)

    def forward(self, x):
        return ops.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Embedding(Module):
    """A lookup table: row ``i`` of ``weight`` is the vector of token ``i``."""

    def __init__(self, num_embeddings: int, embedding_dim: int, std: float = 1.0):
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.weight = Parameter(init.normal((num_embeddings, embedding_dim), std))

    def forward(self, ids):
        return ops.embedding(self.weight, ids)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}"


class RMSNorm(Module):
    """T5's LayerNorm: scale only, no mean subtraction, no bias (Zhang & Sennrich, 2019)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = Parameter(init.ones((dim,)))

    def forward(self, x):
        return ops.rms_norm(x, self.weight, self.eps)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


class LayerNorm(Module):
    """Layer normalisation with a learned scale and bias (Ba et al., 2016)."""

    def __init__(self, dim: int, eps: float = 1e-5, bias: bool = True):
        super().__init__()
        self.eps = eps
        self.weight = Parameter(init.ones((dim,)))
        if bias:
            self.bias = Parameter(init.zeros((dim,)))
        else:
            self.register_parameter("bias", None)

    def forward(self, x):
        return ops.layer_norm(x, self.weight, self.bias, self.eps)


class Dropout(Module):
    """Zero activations with probability ``p`` in training mode; identity in eval mode."""

    def __init__(self, p: float = 0.1):
        super().__init__()
        self.p = p

    def forward(self, x):
        return ops.dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
