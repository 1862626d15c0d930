"""LoRA: a frozen weight plus a trained low-rank update (Hu et al., 2021).

The forward pass, for a Linear y = x W^T with W (d_out, d_in):

    y = x W^T + s * dropout(x) A^T B^T          A (r, d_in), B (d_out, r), s = alpha / r
      = x (W + s B A)^T                          (without dropout: one dense layer, W_eff = W + s B A)

Only A and B train: r (d_in + d_out) numbers instead of d_in d_out. With G = dL/dW_eff, the chain
rule through W_eff = W + s B A gives

    dL/dB = s G A^T          dL/dA = s B^T G

so LoRA's gradients are the full fine-tuning gradient projected onto the current factors. B starts
at zero, so the model starts exactly equal to the base model, and the first step moves W_eff by
-lr s^2 G A^T A: a full update restricted to the row space of A (rank <= r).

``merge`` adds s B A into W once, so inference costs nothing extra; ``unmerge`` subtracts it.
"""
from __future__ import annotations

import copy
import math

import numpy as np

from .. import ops
from ..nn import Linear, Module, Parameter, init
from .config import LoraConfig
from .tuners import AdapterDict, TunerLayer, find_targets, replace_module


def lora_scaling(config: LoraConfig) -> float:
    """s = alpha / r, or alpha / sqrt(r) with rsLoRA (keeps the update's scale stable as r grows)."""
    return config.lora_alpha / (math.sqrt(config.r) if config.use_rslora else config.r)


class LoraLinear(TunerLayer):
    """A frozen ``Linear`` (``base_layer``) plus, per adapter name, A = ``lora_A[name]`` and B = ``lora_B[name]``."""

    def __init__(self, base_layer: Linear):
        super().__init__(base_layer)
        self.lora_A = AdapterDict()
        self.lora_B = AdapterDict()
        self.scaling: dict = {}
        self.dropout_p: dict = {}
        self.merged_adapters: list = []

    def update_layer(self, name: str, config: LoraConfig) -> None:
        """Add adapter ``name``: A kaiming-uniform (or gaussian), B zeros, so B A = 0 at the start."""
        d_out, d_in = self.base_layer.weight.shape
        dtype = self.base_layer.weight.dtype
        a = Linear(d_in, config.r, bias=False)
        b = Linear(config.r, d_out, bias=False)
        if config.init_lora_weights == "gaussian":
            a.weight = Parameter(init.normal((config.r, d_in), std=1.0 / config.r, dtype=dtype))
        else:  # a = sqrt(5): bound 1/sqrt(d_in), PyTorch's nn.Linear default, as PEFT
            a.weight = Parameter(init.kaiming_uniform((config.r, d_in), a=math.sqrt(5), dtype=dtype))
        if config.init_lora_weights is False:  # both random: only for tests and parity checks
            b.weight = Parameter(init.kaiming_uniform((d_out, config.r), a=math.sqrt(5), dtype=dtype))
        else:
            b.weight = Parameter(init.zeros((d_out, config.r), dtype=dtype))
        self.lora_A[name], self.lora_B[name] = a, b
        self.scaling[name] = lora_scaling(config)
        self.dropout_p[name] = config.lora_dropout

    # ------------------------------------------------------------------ tuner-layer protocol
    def adapter_names(self) -> list:
        return self.lora_A.keys()

    def adapter_parameters(self, name: str) -> dict:
        return {"lora_A.weight": self.lora_A[name].weight, "lora_B.weight": self.lora_B[name].weight}

    def delete_adapter(self, name: str) -> None:
        if name in self.merged_adapters:
            self.unmerge()
        del self.lora_A[name], self.lora_B[name]
        self.scaling.pop(name)
        self.dropout_p.pop(name)

    # ------------------------------------------------------------------ math
    def delta_weight(self, name: str) -> np.ndarray:
        """s B A, the (d_out, d_in) update this adapter adds to W."""
        return self.scaling[name] * (self.lora_B[name].weight.data @ self.lora_A[name].weight.data)

    def forward(self, x):
        y = self.base_layer(x)  # x W^T (+ bias), W frozen
        name = self.active_adapter
        if not self.is_active() or name in self.merged_adapters:
            return y  # disabled, or s B A already lives inside W
        h = x
        if self.dropout_p[name] > 0 and self.training:
            h = ops.dropout(x, self.dropout_p[name], True)
        # (..., d_in) -> (..., r) -> (..., d_out): two thin GEMMs, never the (d_out, d_in) product
        return y + self.lora_B[name](self.lora_A[name](h)) * self.scaling[name]

    def merge(self, safe_merge: bool = False) -> None:
        """W <- W + s B A for the active adapter; with ``safe_merge``, refuse a result with NaN/inf."""
        name = self.active_adapter
        if name is None or name in self.merged_adapters:
            return
        weight = self.base_layer.weight
        merged = weight.data + self.delta_weight(name).astype(weight.dtype)
        if safe_merge and not np.isfinite(merged).all():
            raise ValueError(f"safe_merge: merging adapter {name!r} would put NaN/inf into the weight; "
                             "the adapter is broken (diverged training?). Nothing was changed.")
        weight.data = merged
        self.merged_adapters.append(name)

    def unmerge(self) -> None:
        """W <- W - s B A for every merged adapter (restores W to float rounding)."""
        while self.merged_adapters:
            name = self.merged_adapters.pop()
            weight = self.base_layer.weight
            weight.data = weight.data - self.delta_weight(name).astype(weight.dtype)

    def extra_repr(self) -> str:
        return f"adapters={self.adapter_names()}, merged={self.merged_adapters}"


class ModulesToSave(TunerLayer):
    """A whole module trained per adapter (``modules_to_save``): a copy per name, the original frozen."""

    def __init__(self, base_layer: Module):
        super().__init__(base_layer)
        self.modules_to_save = AdapterDict()

    def update_layer(self, name: str, config=None) -> None:
        """Add a trainable copy of the original module for adapter ``name``."""
        self.modules_to_save[name] = copy.deepcopy(self.base_layer)

    def adapter_names(self) -> list:
        return self.modules_to_save.keys()

    def adapter_parameters(self, name: str) -> dict:
        # PEFT saves the copy under the original module's own keys (lm_head.weight).
        return dict(self.modules_to_save[name].named_parameters())

    def delete_adapter(self, name: str) -> None:
        del self.modules_to_save[name]

    def forward(self, *args, **kwargs):
        module = self.modules_to_save[self.active_adapter] if self.is_active() else self.base_layer
        return module(*args, **kwargs)


def inject_lora(model: Module, name: str, config: LoraConfig) -> list:
    """Wrap every targeted Linear of ``model`` in a LoraLinear (or extend an existing one); return their names."""
    wrapped = []
    for module_name in find_targets(model, config.target_modules):
        module = model.get_submodule(module_name)
        if not isinstance(module, LoraLinear):
            if isinstance(module, TunerLayer):
                raise TypeError(f"{module_name} already holds a {type(module).__name__}; "
                                "LoRA and other adapters cannot wrap the same module")
            module = LoraLinear(module)
            replace_module(model, module_name, module)
        module.update_layer(name, config)
        wrapped.append(module_name)
    for module_name in find_targets(model, config.modules_to_save, Module, "modules_to_save") \
            if config.modules_to_save else []:
        module = model.get_submodule(module_name)
        if not isinstance(module, ModulesToSave):
            module = ModulesToSave(module)
            replace_module(model, module_name, module)
        module.update_layer(name)
    return wrapped


def lora_bias_parameters(model: Module, config: LoraConfig) -> dict:
    """{name: Parameter} of the biases that ``bias="all"|"lora_only"`` trains."""
    if config.bias == "all":
        return {n: p for n, p in model.named_parameters() if n.endswith(".bias")}
    if config.bias == "lora_only":
        return {f"{n}.base_layer.bias": m.base_layer.bias for n, m in model.named_modules()
                if isinstance(m, LoraLinear) and m.base_layer.bias is not None}
    return {}
