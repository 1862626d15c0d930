"""The machinery every PEFT method shares: wrapping a base layer, naming adapters, finding targets.

``TunerLayer`` is the wrapper PEFT puts around a frozen base module; ``AdapterDict`` holds one
part per adapter name (``q.lora_A.default.weight``); ``find_targets`` applies PEFT's
``target_modules`` rule; ``replace_module`` swaps the wrapper into the model.
"""
from __future__ import annotations

from ..nn import Linear, Module
from .pattern import compile_pattern


class AdapterDict(Module):
    """Adapter name -> module (PEFT's ``ModuleDict``): ``q.lora_A.default.weight`` in memory.

    The adapter name is one path segment, so several adapters can live side by side on one
    frozen layer and be switched by name.
    """

    def __getitem__(self, name: str) -> Module:
        return self._modules[name]

    def __setitem__(self, name: str, module: Module) -> None:
        setattr(self, name, module)

    def __delitem__(self, name: str) -> None:
        delattr(self, name)

    def __contains__(self, name: str) -> bool:
        return name in self._modules

    def __len__(self) -> int:
        return len(self._modules)

    def keys(self):
        """The adapter names, in the order they were added."""
        return list(self._modules)


class TunerLayer(Module):
    """A wrapper that PEFT put around a base module (``base_layer``), holding per-adapter parts.

    ``active_adapter`` and ``disabled`` are set by ``PeftModel.set_adapter``/``disable_adapter``.
    Attribute reads the wrapper does not have go to the wrapped module, so code that calls e.g.
    ``SelfAttention.compute_bias`` keeps working. Subclasses implement ``adapter_parameters``.
    """

    def __init__(self, base_layer: Module):
        super().__init__()
        self.base_layer = base_layer
        self.active_adapter: str | None = None
        self.disabled = False

    def __getattr__(self, name):
        base = self.__dict__.get("base_layer")
        if base is None:
            raise AttributeError(name)
        return getattr(base, name)

    def adapter_names(self) -> list:
        """Names of the adapters this layer holds."""
        raise NotImplementedError

    def adapter_parameters(self, name: str) -> dict:
        """{key relative to this layer, adapter name removed: Parameter} for adapter ``name``."""
        raise NotImplementedError

    def delete_adapter(self, name: str) -> None:
        """Forget adapter ``name``."""
        raise NotImplementedError

    def is_active(self) -> bool:
        """Whether an adapter of this layer applies in the forward pass right now."""
        return not self.disabled and self.active_adapter in self.adapter_names()


def replace_module(root: Module, name: str, new: Module) -> None:
    """Put ``new`` at dotted path ``name`` inside ``root``, keeping the parent's child order."""
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name)
    parent._modules[child] = new  # in place: setattr would move a ModuleList item to the end
    object.__setattr__(parent, child, new)


def module_matches(name: str, targets) -> bool:
    """PEFT's rule: a regex string must match the whole dotted name; a list entry must equal it or
    be its last segment(s) (``"q"`` matches ``encoder.block.0.layer.0.SelfAttention.q``).

    The regex runs in time linear in the name (``pattern.py``): a pattern read from a downloaded
    adapter_config.json can never hang the loader.
    """
    if isinstance(targets, str):
        return compile_pattern(targets).fullmatch(name)
    return any(name == t or name.endswith("." + t) for t in targets)


def find_targets(model: Module, targets, kind=Linear, what: str = "target_modules") -> list:
    """Dotted names of the modules matching ``targets``; a clear error if none match or one is not ``kind``."""
    tuners = [n + "." for n, m in model.named_modules() if isinstance(m, TunerLayer)]
    names = [n for n, _ in model.named_modules()  # never a module inside an existing wrapper
             if n and module_matches(n, targets) and not any(n.startswith(t) for t in tuners)]
    if not names:
        leaves = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, kind)})
        raise ValueError(f"{what}={targets!r} matched no module of the model. "
                         f"{kind.__name__} layers are called: {', '.join(leaves)}")
    wrong = [f"{n} ({type(model.get_submodule(n)).__name__})" for n in names
             if not isinstance(model.get_submodule(n), (kind, TunerLayer))]
    if wrong:
        raise TypeError(f"{what}={targets!r} matched modules that are not {kind.__name__} layers: "
                        f"{', '.join(wrong[:5])}. LoRA wraps Linear layers only, e.g. ['q', 'v'].")
    return names
