"""``PeftModel``: a frozen base model plus named adapters, with Hugging Face PEFT's API.

    model = get_peft_model(t5, LoraConfig(r=8, lora_alpha=16, target_modules=["q", "v"]))
    model.print_trainable_parameters()        # trainable params: ... || all params: ... || trainable%: ...
    model.add_adapter("sentiment", AdapterConfig(adapter_size=16)); model.set_adapter("sentiment")
    with model.disable_adapter(): ...         # the base model's outputs
    model.save_pretrained("out")              # adapter_config.json + adapter_model.safetensors
    PeftModel.from_pretrained(t5, "out")      # the same adapter on a fresh base
    t5 = model.merge_and_unload()             # LoRA folded into the weights, wrappers gone

Every adapter lives beside the base weights under its own name (``q.lora_A.<name>.weight``), so one
frozen base serves many tasks: ``set_adapter(task)`` switches without touching the base. Saved keys
follow PEFT: ``base_model.model.<module path>.lora_A.weight`` (no adapter name), and a soft prompt
is saved as ``prompt_embeddings``.
"""
from __future__ import annotations

import contextlib
import re
from pathlib import Path

import numpy as np

from ..backend import to_device
from ..files import load_safetensors, save_safetensors
from ..nn import Module
from .adapters import inject_adapters
from .config import (CONFIG_NAME, WEIGHTS_NAME, AdapterConfig, LoraConfig, PeftConfig, PromptTuningConfig,
                     SelectiveConfig)
from .lora import LoraLinear, ModulesToSave, inject_lora, lora_bias_parameters
from .prompt_tuning import PromptEmbedding
from .selective import select_parameters
from .tuners import AdapterDict, TunerLayer, replace_module

PREFIX = "base_model.model."  # PEFT's key prefix: PeftModel.base_model (LoraModel).model (the T5)


class PeftModel(Module):
    """A base model (``base_model``, frozen) with one or more named adapters, one of them active."""

    checkpoint_trainable_only = True  # a training checkpoint keeps the adapter, not the frozen base

    def __init__(self, model: Module, config: PeftConfig | None = None, adapter_name: str = "default"):
        super().__init__()
        self.base_model = model
        self.prompt_encoder = AdapterDict()
        self.peft_config: dict[str, PeftConfig] = {}
        self._extra_trainable: dict[str, dict] = {}  # adapter -> {name: Parameter} of base weights it trains
        self.active_adapter = adapter_name
        self._disabled = False
        model.requires_grad_(False)  # the base is frozen: only adapter parameters will train
        if config is not None:
            self.add_adapter(adapter_name, config)
            self.set_adapter(adapter_name)

    def __getattr__(self, name):  # model.config, model.encode, ... reach the base model
        base = self.__dict__.get("base_model")
        if base is None:
            raise AttributeError(name)
        return getattr(base, name)

    # ------------------------------------------------------------------ adapters by name
    def add_adapter(self, adapter_name: str, config: PeftConfig) -> None:
        """Add a new adapter (not made active: call ``set_adapter``)."""
        if adapter_name in self.peft_config:
            raise ValueError(f"an adapter named {adapter_name!r} already exists")
        if not isinstance(adapter_name, str) or not re.fullmatch(r"[A-Za-z0-9_-]+", adapter_name):
            # A name is a key segment and, when saved, a folder name: no '.', '/' or '..' may leak out.
            raise ValueError(f"adapter names are letters, digits, '_' and '-' only, got {adapter_name!r}")
        kinds = {type(c) for c in self.peft_config.values()}
        if SelectiveConfig in kinds | {type(config)} and self.peft_config:
            raise ValueError("a selective adapter trains base weights in place, so it cannot share a "
                             "base with other adapters; build a separate PeftModel for it")
        base = self.base_model
        if isinstance(config, LoraConfig):
            inject_lora(base, adapter_name, config)
            self._extra_trainable[adapter_name] = lora_bias_parameters(base, config)
        elif isinstance(config, AdapterConfig):
            inject_adapters(base, adapter_name, config)
        elif isinstance(config, PromptTuningConfig):
            config.token_dim = base.config.d_model
            config.num_attention_heads = base.config.num_heads
            config.num_layers = base.config.num_layers
            self.prompt_encoder[adapter_name] = PromptEmbedding(config, base.shared)
        elif isinstance(config, SelectiveConfig):
            self._extra_trainable[adapter_name] = select_parameters(base, config)
        else:
            raise TypeError(f"unsupported config {type(config).__name__}")
        self.peft_config[adapter_name] = config
        self._update_trainable()

    def set_adapter(self, adapter_name: str) -> None:
        """Make ``adapter_name`` the one that runs (and the only one that trains)."""
        if adapter_name not in self.peft_config:
            raise KeyError(f"no adapter named {adapter_name!r}; adapters: {list(self.peft_config)}")
        for layer in self._tuner_layers():
            if isinstance(layer, LoraLinear) and layer.merged_adapters:
                layer.unmerge()  # W must hold the base weight before another adapter runs
        self.active_adapter = adapter_name
        self._update_trainable()

    def delete_adapter(self, adapter_name: str) -> None:
        """Remove an adapter everywhere; the active one cannot be deleted while others remain."""
        if adapter_name not in self.peft_config:
            raise KeyError(f"no adapter named {adapter_name!r}; adapters: {list(self.peft_config)}")
        if adapter_name == self.active_adapter and len(self.peft_config) > 1:
            raise ValueError(f"{adapter_name!r} is active; set_adapter() another one before deleting it")
        for name, layer in list(self._named_tuner_layers()):
            if adapter_name in layer.adapter_names():
                layer.delete_adapter(adapter_name)
                if not layer.adapter_names():
                    replace_module(self.base_model, name, layer.base_layer)
        if adapter_name in self.prompt_encoder:
            del self.prompt_encoder[adapter_name]
        for p in self._extra_trainable.pop(adapter_name, {}).values():
            p.requires_grad = False
        del self.peft_config[adapter_name]

    @contextlib.contextmanager
    def disable_adapter(self):
        """Inside the ``with`` block the model computes exactly what the base model computes."""
        if isinstance(self.peft_config.get(self.active_adapter), SelectiveConfig):
            raise ValueError("disable_adapter: a selective adapter changed the base weights in place; "
                             "there is no separate base model to fall back to")
        merged = [layer for layer in self._tuner_layers() if isinstance(layer, LoraLinear) and layer.merged_adapters]
        for layer in merged:
            layer.unmerge()
        self._disabled = True
        self._update_trainable()
        try:
            yield self
        finally:
            self._disabled = False
            self._update_trainable()

    def merge_adapter(self, safe_merge: bool = False) -> None:
        """Fold the active LoRA adapter into the base weights (W <- W + s B A) and keep the wrappers."""
        for layer in self._tuner_layers():
            if isinstance(layer, LoraLinear) and layer.is_active():
                layer.merge(safe_merge=safe_merge)

    def unmerge_adapter(self) -> None:
        """Undo ``merge_adapter`` (W <- W - s B A)."""
        for layer in self._tuner_layers():
            if isinstance(layer, LoraLinear):
                layer.unmerge()

    def merge_and_unload(self, safe_merge: bool = False) -> Module:
        """Merge the active LoRA adapter into the weights, remove every wrapper, return the base model."""
        config = self.peft_config[self.active_adapter]
        if not isinstance(config, (LoraConfig, SelectiveConfig)):
            raise ValueError(f"{type(config).__name__} cannot be merged: adapters contain a nonlinearity "
                             "and soft prompts are inputs, not weights. Keep the PeftModel for inference.")
        self.merge_adapter(safe_merge=safe_merge)
        for name, layer in list(self._named_tuner_layers()):
            if isinstance(layer, ModulesToSave) and layer.is_active():
                replacement = layer.modules_to_save[self.active_adapter]
            else:
                replacement = layer.base_layer
            replace_module(self.base_model, name, replacement)
        self.base_model.requires_grad_(True)
        return self.base_model

    # ------------------------------------------------------------------ running
    def _active_prompt(self) -> PromptEmbedding | None:
        if self._disabled or self.active_adapter not in self.prompt_encoder:
            return None
        return self.prompt_encoder[self.active_adapter]

    def _prompted(self, input_ids, attention_mask, inputs_embeds):
        """Encoder inputs with the active soft prompt in front (unchanged without one)."""
        prompt = self._active_prompt()
        if prompt is None:
            return input_ids, attention_mask, inputs_embeds
        if inputs_embeds is None:
            inputs_embeds = self.base_model.embed_inputs(input_ids)
        inputs_embeds, attention_mask = prompt.prepend(inputs_embeds, attention_mask)
        return None, attention_mask, inputs_embeds

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, **kwargs):
        """The base model's forward, with the active adapter in effect (same arguments and output)."""
        input_ids, attention_mask, inputs_embeds = self._prompted(input_ids, attention_mask, inputs_embeds)
        return self.base_model(input_ids=input_ids, attention_mask=attention_mask,
                               inputs_embeds=inputs_embeds, **kwargs)

    def generate(self, input_ids=None, attention_mask=None, inputs_embeds=None, **kwargs):
        """The base model's ``generate`` with the active adapter (a soft prompt goes before the input)."""
        input_ids, attention_mask, inputs_embeds = self._prompted(input_ids, attention_mask, inputs_embeds)
        return self.base_model.generate(input_ids, attention_mask=attention_mask,
                                        inputs_embeds=inputs_embeds, **kwargs)

    # ------------------------------------------------------------------ counting
    def get_nb_trainable_parameters(self) -> tuple[int, int]:
        """(trainable, all) scalar counts; "all" includes the frozen base and every adapter."""
        return count_parameters(self)

    def print_trainable_parameters(self) -> None:
        """Print PEFT's line: ``trainable params: 3,686,400 || all params: ... || trainable%: 0.1193``."""
        trainable, total = self.get_nb_trainable_parameters()
        print(f"trainable params: {trainable:,d} || all params: {total:,d} || "
              f"trainable%: {trainable_percent(self):.4f}")

    # ------------------------------------------------------------------ saving and loading
    def adapter_state(self, adapter_name: str | None = None) -> dict:
        """{PEFT key: Parameter} of one adapter, e.g. ``base_model.model.encoder...q.lora_A.weight``."""
        name = adapter_name or self.active_adapter
        state = {}
        for path, layer in self._named_tuner_layers():
            if name in layer.adapter_names():
                # A LoRA q inside an adapter-wrapped SelfAttention sits at SelfAttention.base_layer.q;
                # its key stays ...SelfAttention.q, whatever else wraps the model.
                path = re.sub(r"\.base_layer(?=\.)", "", path)
                for key, p in layer.adapter_parameters(name).items():
                    state[f"{PREFIX}{path}.{key}"] = p
        for key, p in self._extra_trainable.get(name, {}).items():
            state[PREFIX + key] = p
        if name in self.prompt_encoder:
            state["prompt_embeddings"] = self.prompt_encoder[name].embedding.weight
        return state

    def save_pretrained(self, directory, selected_adapters: list | None = None) -> None:
        """Write each adapter in PEFT's layout: "default" in ``directory``, others in ``directory/<name>``.

        Files are written atomically, with the permissions a plain ``open()`` gives.
        """
        for name in selected_adapters or list(self.peft_config):
            if name not in self.peft_config:
                raise KeyError(f"no adapter named {name!r}; adapters: {list(self.peft_config)}")
            out = Path(directory) if name == "default" else Path(directory) / name
            out.mkdir(parents=True, exist_ok=True)
            tensors = {k: np.ascontiguousarray(to_device(p.data, "cpu"))
                       for k, p in sorted(self.adapter_state(name).items())}
            save_safetensors(out / WEIGHTS_NAME, tensors, metadata={"format": "pt"})
            self.peft_config[name].save_pretrained(out)

    def load_adapter(self, directory, adapter_name: str = "default", is_trainable: bool = False) -> None:
        """Add an adapter from a PEFT folder (minillm's or Hugging Face PEFT's).

        Both files are checked before the adapter is added, and if the weights then do not fit the
        model, the adapter is removed again: a failed load leaves the model as it was.

        Raises:
            FileNotFoundError / ValueError / KeyError: naming the file and what is wrong with it.
        """
        config = PeftConfig.from_pretrained(directory)
        if isinstance(config, PromptTuningConfig):
            config.prompt_tuning_init = "random"  # the values come from the file
        weights = Path(directory) / WEIGHTS_NAME
        if not weights.is_file():
            raise FileNotFoundError(f"{weights} does not exist (an adapter folder holds {WEIGHTS_NAME} "
                                    "beside adapter_config.json)")
        saved = load_safetensors(weights)  # header checked against the file size first
        try:
            self.add_adapter(adapter_name, config)
        except (TypeError, ValueError) as err:  # e.g. target_modules that match no layer of this model
            raise ValueError(f"{Path(directory) / CONFIG_NAME}: {err}") from None
        try:
            self._copy_adapter_weights(adapter_name, config, saved, weights)
        except BaseException:
            self._remove_adapter(adapter_name)
            raise
        config.inference_mode = not is_trainable
        self._update_trainable()

    def _copy_adapter_weights(self, adapter_name: str, config, saved: dict, source) -> None:
        """Check every key and shape of ``saved`` against the new adapter, then copy the values."""
        own = self.adapter_state(adapter_name)
        if "prompt_embeddings" in saved:
            # PEFT's seq2seq default keeps 2 * n rows (encoder, decoder) but prompt tuning reads only
            # the first n, which feed the encoder.
            saved["prompt_embeddings"] = saved["prompt_embeddings"][: config.num_virtual_tokens]
        missing, unexpected = sorted(set(own) - set(saved)), sorted(set(saved) - set(own))
        if missing or unexpected:
            raise KeyError(f"{source}: adapter file does not fit this model; missing {missing[:5]}, "
                           f"unexpected {unexpected[:5]}")
        wrong = [f"{key}: file {tuple(saved[key].shape)}, model {p.shape}" for key, p in own.items()
                 if tuple(saved[key].shape) != p.shape]
        if wrong:
            raise ValueError(f"{source}: adapter shapes do not fit this model ({'; '.join(wrong[:3])})")
        for key, p in own.items():
            p.data = to_device(saved[key], p.device).astype(p.dtype)

    def _remove_adapter(self, adapter_name: str) -> None:
        """Undo ``add_adapter`` (even for the active adapter): wrappers, prompt, trainable flags."""
        if adapter_name == self.active_adapter and len(self.peft_config) > 1:
            self.active_adapter = next(n for n in self.peft_config if n != adapter_name)
        self.delete_adapter(adapter_name)
        self._update_trainable()

    @classmethod
    def from_pretrained(cls, model: Module, directory, adapter_name: str = "default",
                        is_trainable: bool = False) -> "PeftModel":
        """Wrap ``model`` with the adapter saved in ``directory`` (frozen unless ``is_trainable``).

        If loading fails, ``model`` gets its ``requires_grad`` flags back and holds no wrapper.
        """
        flags = [(p, p.requires_grad) for p in model.parameters()]  # by object: a wrapper renames them
        peft = cls(model, None, adapter_name)
        try:
            peft.load_adapter(directory, adapter_name, is_trainable=is_trainable)
        except BaseException:
            for p, flag in flags:
                p.requires_grad = flag
            raise
        peft.set_adapter(adapter_name)
        return peft

    # ------------------------------------------------------------------ helpers
    def _named_tuner_layers(self):
        return [(n, m) for n, m in self.base_model.named_modules() if isinstance(m, TunerLayer)]

    def _tuner_layers(self):
        return [m for _, m in self._named_tuner_layers()]

    def _update_trainable(self) -> None:
        """Tell every layer which adapter is on, and let exactly the active adapter's parameters train."""
        active = self.active_adapter
        for layer in self._tuner_layers():
            layer.active_adapter, layer.disabled = active, self._disabled
        for name in self.peft_config:
            trainable = (name == active and not self._disabled
                         and not self.peft_config[name].inference_mode)
            for p in self.adapter_state(name).values():
                p.requires_grad = trainable


def count_parameters(model: Module) -> tuple[int, int]:
    """(trainable, all) scalar counts of any model; a tied weight counts once.

    "all" is every parameter the model holds: for a ``PeftModel`` the frozen base *plus* every
    adapter (PEFT's ``get_nb_trainable_parameters``), for a plain model its own weights.
    """
    params = list(model.parameters())
    return sum(p.size for p in params if p.requires_grad), sum(p.size for p in params)


def trainable_percent(model: Module) -> float:
    """PEFT's "trainable%": 100 * trainable / all, "all" including the adapters (``count_parameters``).

    The one definition used by ``print_trainable_parameters``, the benchmarks and the tutorials.
    LoRA r=8 on q and v of a 1.1M-parameter toy T5 is about 5%, so "% of the base" (which leaves
    the adapter out of the denominator) would read about 0.3 points higher.
    """
    trainable, total = count_parameters(model)
    return 100.0 * trainable / total if total else 0.0


def get_peft_model(model: Module, config: PeftConfig, adapter_name: str = "default") -> PeftModel:
    """Freeze ``model`` and add the adapter that ``config`` describes; returns a ``PeftModel``."""
    return PeftModel(model, config, adapter_name)
