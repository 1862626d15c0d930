"""PEFT configurations: what each method trains, as PEFT's ``adapter_config.json``.

A config says *what* to train; the method files (lora.py, adapters.py, prompt_tuning.py,
selective.py) say *how*. Each config writes itself as the ``adapter_config.json`` that Hugging
Face PEFT writes, with PEFT's field names, so a LoRA or prompt-tuning folder saved here loads in
PEFT and the other way round. Houlsby adapters and selective training have no PEFT equivalent;
their files use the same layout with ``peft_type`` "HOULSBY_ADAPTER" / "SELECTIVE".
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..files import atomic_write_text, read_json
from .pattern import compile_pattern

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
_KIND_TEXT = {"int": "an integer", "number": "a finite number", "bool": "true or false",
              "names": "a list of strings", "names or regex": "a list of module names or one regex string"}


@dataclass
class PeftConfig:
    """Fields every method shares. ``peft_type`` names the method, as in PEFT's JSON."""

    peft_type: str = ""
    task_type: str = "SEQ_2_SEQ_LM"
    inference_mode: bool = False
    base_model_name_or_path: str | None = None

    def to_dict(self) -> dict:
        """The ``adapter_config.json`` dict (PEFT's keys)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PeftConfig":
        """Build the right config class from a dict, choosing it by ``peft_type``."""
        peft_type = d.get("peft_type", "")
        if peft_type not in CONFIG_CLASSES:
            raise ValueError(f"unsupported peft_type {peft_type!r}; minillm knows {sorted(CONFIG_CLASSES)}")
        target = CONFIG_CLASSES[peft_type]
        names = {f.name for f in dataclasses.fields(target)}
        return target(**{k: v for k, v in d.items() if k in names})

    def _check_types(self, **kinds) -> None:
        """Raise a ValueError naming the field whose value is not of its kind ("int", "number", "names")."""
        for name, kind in kinds.items():
            value = getattr(self, name)
            if kind == "int":
                ok = type(value) is int
            elif kind == "number":
                ok = type(value) in (int, float) and math.isfinite(value)
            elif kind == "bool":
                ok = type(value) is bool
            else:  # "names": a list of strings, or (for target_modules) one regex string
                ok = (isinstance(value, list) and all(isinstance(v, str) for v in value)) or (
                    kind == "names or regex" and isinstance(value, str))
            if not ok:
                raise ValueError(f"{type(self).__name__}: {name} must be {_KIND_TEXT[kind]}, got {value!r}")

    def save_pretrained(self, directory) -> None:
        """Write ``adapter_config.json`` into ``directory`` (atomically)."""
        Path(directory).mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(directory) / CONFIG_NAME, json.dumps(self.to_dict(), indent=2, sort_keys=True))

    @classmethod
    def from_pretrained(cls, directory) -> "PeftConfig":
        """Read ``adapter_config.json`` from ``directory`` (PEFT's or minillm's).

        Raises:
            FileNotFoundError / ValueError: naming the file, when it is missing, is not JSON, or
                holds a value of the wrong type or out of range.
        """
        path = Path(directory) / CONFIG_NAME
        if not path.exists():  # anything else there is refused by read_json, by name
            raise FileNotFoundError(f"{path} does not exist: not a PEFT adapter folder")
        values = read_json(path, CONFIG_NAME)
        if not isinstance(values, dict):
            raise ValueError(f"{path}: expected a JSON object, got {type(values).__name__}")
        try:
            return cls.from_dict(values)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{path}: {err}") from None


@dataclass
class LoraConfig(PeftConfig):
    """Low-rank adaptation (Hu et al., 2021): W x + s B A x with s = lora_alpha / r.

    Args:
        r: the rank of B A.
        lora_alpha: numerator of the scaling s.
        lora_dropout: dropout on the input of A (training only).
        target_modules: module names; a list matches a module whose dotted name equals an entry or
            ends with "." + entry (``["q", "v"]``), a string is a regex that must match the whole name.
        bias: "none", "all" (every bias in the model trains) or "lora_only" (biases of wrapped layers).
        use_rslora: s = lora_alpha / sqrt(r) (Kalajievski, 2023), stable across ranks.
        init_lora_weights: True (A kaiming-uniform, B = 0), "gaussian" (A ~ N(0, 1/r^2), B = 0) or
            False (both random: the model no longer starts equal to the base; for tests).
        modules_to_save: whole modules (e.g. ``["lm_head"]``) trained as a per-adapter copy.
    """

    peft_type: str = "LORA"
    r: int = 8
    lora_alpha: float = 8
    lora_dropout: float = 0.0
    target_modules: list | str | None = None
    bias: str = "none"
    use_rslora: bool = False
    init_lora_weights: bool | str = True
    modules_to_save: list | None = None
    fan_in_fan_out: bool = False

    def __post_init__(self):
        if self.target_modules is None:
            self.target_modules = ["q", "v"]  # PEFT's default for T5
        self._check_types(r="int", lora_alpha="number", lora_dropout="number", use_rslora="bool",
                          target_modules="names or regex")
        if self.r <= 0:
            raise ValueError(f"LoraConfig: r must be a positive integer, got {self.r}")
        if not 0 <= self.lora_dropout < 1:
            raise ValueError(f"LoraConfig: lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if isinstance(self.target_modules, str):
            compile_pattern(self.target_modules)  # refuses a pattern that would need backtracking
        if self.modules_to_save is not None:
            self._check_types(modules_to_save="names")
        if self.bias not in ("none", "all", "lora_only"):
            raise ValueError(f"LoraConfig: bias must be 'none', 'all' or 'lora_only', got {self.bias!r}")
        if self.init_lora_weights not in (True, False, "gaussian"):
            raise ValueError(f"LoraConfig: init_lora_weights must be True, False or 'gaussian', "
                             f"got {self.init_lora_weights!r}")
        if self.fan_in_fan_out:
            raise ValueError("LoraConfig: fan_in_fan_out (GPT-2's Conv1D layout) is not supported")


@dataclass
class AdapterConfig(PeftConfig):
    """Houlsby bottleneck adapters (Houlsby et al., 2019).

    Args:
        adapter_size: bottleneck width m (d_model -> m -> d_model).
        positions: which sub-layers get an adapter on their output: "attention" (self-attention),
            "cross_attention" (decoder's encoder-decoder attention), "ffn" (feed-forward).
        stacks: "encoder", "decoder" or both.
        non_linearity: "relu" or "gelu".
        init_std: std of the down projection; the up projection starts at zero (exact identity).
    """

    peft_type: str = "HOULSBY_ADAPTER"
    adapter_size: int = 16
    positions: list = field(default_factory=lambda: ["attention", "ffn"])
    stacks: list = field(default_factory=lambda: ["encoder", "decoder"])
    non_linearity: str = "relu"
    init_std: float = 1e-2

    def __post_init__(self):
        self._check_types(adapter_size="int", positions="names", stacks="names", init_std="number")
        if self.adapter_size <= 0:
            raise ValueError(f"AdapterConfig: adapter_size must be positive, got {self.adapter_size}")
        bad = set(self.positions) - {"attention", "cross_attention", "ffn"}
        if bad or not self.positions:
            raise ValueError(f"AdapterConfig: positions must be among 'attention', 'cross_attention', "
                             f"'ffn', got {self.positions}")
        if set(self.stacks) - {"encoder", "decoder"} or not self.stacks:
            raise ValueError(f"AdapterConfig: stacks must be among 'encoder', 'decoder', got {self.stacks}")
        if self.non_linearity not in ("relu", "gelu"):
            raise ValueError(f"AdapterConfig: non_linearity must be 'relu' or 'gelu', got {self.non_linearity!r}")


@dataclass
class PromptTuningConfig(PeftConfig):
    """Soft prompts (Lester et al., 2021): ``num_virtual_tokens`` trained vectors before the input.

    Args:
        prompt_tuning_init: "random" (N(0, 1), like a fresh embedding), "sample_vocab" (rows of the
            model's embedding for random token ids) or "text" (the embedding of
            ``prompt_tuning_init_text``, repeated or cut to length; needs ``tokenizer``).
        tokenizer: a minillm ``Tokenizer`` (or anything with ``encode(text) -> ids``), for "text".
    The JSON uses PEFT's names and upper-case values ("RANDOM", "SAMPLE_VOCAB", "TEXT").
    """

    peft_type: str = "PROMPT_TUNING"
    num_virtual_tokens: int = 20
    prompt_tuning_init: str = "random"
    prompt_tuning_init_text: str | None = None
    tokenizer: object = None
    token_dim: int | None = None
    num_transformer_submodules: int = 1
    num_attention_heads: int | None = None
    num_layers: int | None = None
    tokenizer_name_or_path: str | None = None

    def __post_init__(self):
        self.prompt_tuning_init = str(self.prompt_tuning_init).lower()
        if self.prompt_tuning_init not in ("random", "sample_vocab", "text"):
            raise ValueError(f"PromptTuningConfig: prompt_tuning_init must be 'random', 'sample_vocab' "
                             f"or 'text', got {self.prompt_tuning_init!r}")
        self._check_types(num_virtual_tokens="int")
        if self.num_virtual_tokens <= 0:
            raise ValueError(f"PromptTuningConfig: num_virtual_tokens must be positive, "
                             f"got {self.num_virtual_tokens}")

    def to_dict(self) -> dict:
        d = super().to_dict()
        d.pop("tokenizer")
        d["prompt_tuning_init"] = self.prompt_tuning_init.upper()
        return d


@dataclass
class SelectiveConfig(PeftConfig):
    """Train only the base parameters whose names match (no new parameters).

    Args:
        patterns: regular expressions searched in each parameter name, e.g. ``r"layer_norm"``
            (norms only) or ``r"relative_attention_bias"``.
        last_n_decoder_blocks: also train every parameter of the last N decoder blocks.
        bitfit: also train every bias (BitFit, Ben Zaken et al., 2021); T5 has none.
    """

    peft_type: str = "SELECTIVE"
    patterns: list = field(default_factory=list)
    last_n_decoder_blocks: int = 0
    bitfit: bool = False

    def __post_init__(self):
        self._check_types(patterns="names", last_n_decoder_blocks="int", bitfit="bool")
        for pattern in self.patterns:
            compile_pattern(pattern)  # refuses a pattern that would need backtracking
        if self.last_n_decoder_blocks < 0:
            raise ValueError(f"SelectiveConfig: last_n_decoder_blocks must be >= 0, got {self.last_n_decoder_blocks}")
        if not self.patterns and not self.last_n_decoder_blocks and not self.bitfit:
            raise ValueError("SelectiveConfig: give patterns, last_n_decoder_blocks or bitfit=True")


CONFIG_CLASSES = {"LORA": LoraConfig, "HOULSBY_ADAPTER": AdapterConfig,
                  "PROMPT_TUNING": PromptTuningConfig, "SELECTIVE": SelectiveConfig}
