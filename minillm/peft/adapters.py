"""Houlsby bottleneck adapters (Houlsby et al., 2019, "Parameter-Efficient Transfer Learning for NLP").

A small two-layer network with its own residual connection goes on the output of a sub-layer:

    adapter(h) = h + W_up act(W_down h + b_down) + b_up      W_down (m, d), W_up (d, m), m << d

Per adapter that is 2 d m + d + m trainable numbers. In a T5 block the sub-layer output passes
through the adapter *before* the block's own residual add (the paper's Figure 2):

    h <- h + Dropout(Adapter(SelfAttention(RMSNorm(h))))
    h <- h + Dropout(Adapter(DenseReluDense(RMSNorm(h))))

W_up starts at zero, so every adapter starts as the identity and the adapted model starts equal to
the base model (the paper draws both projections near zero; an exact zero is the same idea taken
to its limit, and gradients still reach W_up at once: dL/dW_up = (dL/dout)^T act(W_down h)).
Unlike LoRA, an adapter cannot be merged into the base weights: it contains a nonlinearity.
"""
from __future__ import annotations

from .. import ops
from ..nn import Linear, Module, Parameter, init
from .config import AdapterConfig
from .tuners import AdapterDict, TunerLayer, replace_module

# position -> (index of the sub-layer in a block's ``layer`` list, attribute of the sub-layer module)
_POSITIONS = {"attention": (0, "SelfAttention"), "cross_attention": (1, "EncDecAttention"),
              "ffn": (-1, "DenseReluDense")}


class HoulsbyAdapter(Module):
    """h + up(act(down(h))): a bottleneck d -> m -> d with its own residual connection."""

    def __init__(self, d_model: int, adapter_size: int, non_linearity: str = "relu",
                 init_std: float = 1e-2, dtype=None):
        super().__init__()
        self.non_linearity = non_linearity
        self.down = Linear(d_model, adapter_size, bias=True)
        self.up = Linear(adapter_size, d_model, bias=True)
        kwargs = {} if dtype is None else {"dtype": dtype}
        self.down.weight = Parameter(init.normal((adapter_size, d_model), std=init_std, **kwargs))
        self.down.bias = Parameter(init.zeros((adapter_size,), **kwargs))
        self.up.weight = Parameter(init.zeros((d_model, adapter_size), **kwargs))  # identity at start
        self.up.bias = Parameter(init.zeros((d_model,), **kwargs))

    def forward(self, h):
        z = self.down(h)  # (batch, len, m)
        z = ops.gelu(z, approximate="tanh") if self.non_linearity == "gelu" else ops.relu(z)
        return h + self.up(z)  # (batch, len, d): the adapter's own residual


class SublayerWithAdapter(TunerLayer):
    """A sub-layer (``SelfAttention``, ``EncDecAttention`` or ``DenseReluDense``) followed by the active adapter."""

    def __init__(self, base_layer: Module):
        super().__init__(base_layer)
        self.adapter = AdapterDict()

    def update_layer(self, name: str, config: AdapterConfig, d_model: int, dtype) -> None:
        """Add adapter ``name`` of width ``config.adapter_size``."""
        self.adapter[name] = HoulsbyAdapter(d_model, config.adapter_size, config.non_linearity,
                                            config.init_std, dtype)

    def adapter_names(self) -> list:
        return self.adapter.keys()

    def adapter_parameters(self, name: str) -> dict:
        return {f"adapter.{k}": p for k, p in self.adapter[name].named_parameters()}

    def delete_adapter(self, name: str) -> None:
        del self.adapter[name]

    def forward(self, *args, **kwargs):
        out = self.base_layer(*args, **kwargs)
        return self.adapter[self.active_adapter](out) if self.is_active() else out


def adapter_sites(model: Module, config: AdapterConfig) -> list:
    """Dotted names of the sub-layers that get an adapter, e.g. ``encoder.block.0.layer.1.DenseReluDense``."""
    sites = []
    for stack in config.stacks:
        for i, block in enumerate(model.get_submodule(stack).block):
            for position in config.positions:
                index, attr = _POSITIONS[position]
                if position == "cross_attention" and not block.is_decoder:
                    continue  # the encoder has no cross-attention
                index = index % len(block.layer)
                sites.append(f"{stack}.block.{i}.layer.{index}.{attr}")
    return sites


def inject_adapters(model: Module, name: str, config: AdapterConfig) -> list:
    """Put adapter ``name`` after every configured sub-layer of ``model``; return the sites."""
    d_model = model.config.d_model
    sites = adapter_sites(model, config)
    if not sites:
        raise ValueError(f"AdapterConfig(positions={config.positions}, stacks={config.stacks}) "
                         "selects no sub-layer (cross_attention exists only in the decoder)")
    for site in sites:
        module = model.get_submodule(site)
        if not isinstance(module, SublayerWithAdapter):
            if isinstance(module, TunerLayer):
                raise TypeError(f"{site} is already wrapped by {type(module).__name__}")
            module = SublayerWithAdapter(module)
            replace_module(model, site, module)
        dtype = next(module.base_layer.parameters()).dtype
        module.update_layer(name, config, d_model, dtype)
    return sites
