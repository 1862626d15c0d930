"""Selective fine-tuning: train a chosen subset of the base model's own parameters, freeze the rest.

No parameter is added; the question is only *which* existing ones move. Common choices:

* the last N decoder blocks (closest to the output, cheapest to adapt);
* only the norms (``layer_norm``: d_model numbers per sub-layer);
* only the relative attention bias (``relative_attention_bias``: buckets x heads per stack);
* BitFit (Ben Zaken et al., 2021): only the biases. T5 has no biases, so BitFit needs another model.

The trained values replace the base values in place, so a selective adapter cannot share a frozen
base with other adapters (use LoRA, adapters or prompts for that).
"""
from __future__ import annotations

from ..nn import Module, Parameter
from .config import SelectiveConfig
from .pattern import compile_pattern

NORMS = r"layer_norm\.weight$"
RELATIVE_ATTENTION_BIAS = r"relative_attention_bias\.weight$"


def last_blocks_pattern(model: Module, n: int, stack: str = "decoder") -> str:
    """A regex for every parameter of the last ``n`` blocks of ``stack``."""
    num_blocks = len(model.get_submodule(stack).block)
    if not 0 < n <= num_blocks:
        raise ValueError(f"last_n_{stack}_blocks must be in 1..{num_blocks}, got {n}")
    ids = "|".join(str(i) for i in range(num_blocks - n, num_blocks))
    return rf"^{stack}\.block\.({ids})\."


def select_parameters(model: Module, config: SelectiveConfig) -> dict[str, Parameter]:
    """{name: Parameter} that ``config`` trains; a clear error when a rule selects nothing."""
    names = dict(model.named_parameters())
    chosen: dict[str, Parameter] = {}
    patterns = list(config.patterns)
    if config.last_n_decoder_blocks:
        patterns.append(last_blocks_pattern(model, config.last_n_decoder_blocks))
    for pattern in patterns:
        hits = {n: p for n, p in names.items() if compile_pattern(pattern).search(n)}  # linear time
        if not hits:
            raise ValueError(f"selective pattern {pattern!r} matches no parameter; names look like "
                             f"{', '.join(list(names)[:4])}, ...")
        chosen.update(hits)
    if config.bitfit:
        biases = {n: p for n, p in names.items() if n.endswith(".bias") or n == "bias"}
        if not biases:
            raise ValueError(f"bitfit: {type(model).__name__} has no bias parameters (T5 uses none); "
                             "BitFit needs a model with biases")
        chosen.update(biases)
    return chosen
