"""Parameter-efficient fine-tuning with Hugging Face PEFT's API, one method per file.

    config.py         LoraConfig, AdapterConfig, PromptTuningConfig, SelectiveConfig (+ JSON I/O)
    tuners.py         the shared machinery: TunerLayer, AdapterDict, target matching, replace_module
    lora.py           LoraLinear: W x + s B A x; merge/unmerge
    adapters.py       Houlsby bottleneck adapters after attention / feed-forward sub-layers
    prompt_tuning.py  soft prompt prepended to the encoder's input embeddings
    selective.py      train only parameters matching name patterns (last blocks, norms, BitFit)
    model.py          get_peft_model, PeftModel (adapters by name, save/load in PEFT's layout)

The course notes' three families: selective (selective.py), reparametrization (lora.py) and
additive (adapters.py, prompt_tuning.py).
"""
from .adapters import HoulsbyAdapter, SublayerWithAdapter
from .config import AdapterConfig, LoraConfig, PeftConfig, PromptTuningConfig, SelectiveConfig
from .lora import LoraLinear, lora_scaling
from .model import PeftModel, get_peft_model
from .prompt_tuning import PromptEmbedding
from .selective import NORMS, RELATIVE_ATTENTION_BIAS, select_parameters

__all__ = [
    "PeftConfig", "LoraConfig", "AdapterConfig", "PromptTuningConfig", "SelectiveConfig",
    "PeftModel", "get_peft_model", "LoraLinear", "lora_scaling", "HoulsbyAdapter",
    "SublayerWithAdapter", "PromptEmbedding", "select_parameters", "NORMS", "RELATIVE_ATTENTION_BIAS",
]
