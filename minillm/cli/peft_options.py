"""The PEFT part of ``minillm finetune``: ``--method`` and each method's options as flags.

``finetune.py`` calls ``add_peft_arguments(parser)`` while building the ``finetune`` sub-command and
``apply_peft(model, args, tokenizer)`` before training.
"""
from __future__ import annotations

import argparse

from ..peft.config import AdapterConfig, LoraConfig, PromptTuningConfig, SelectiveConfig
from ..peft.model import get_peft_model

METHODS = ("full", "lora", "adapter", "prompt", "selective")


def _comma_list(text: str) -> list:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list, e.g. q,v")
    return items


def add_peft_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``--method`` and the options of every PEFT method to ``parser``; returns it."""
    g = parser.add_argument_group("parameter-efficient fine-tuning")
    g.add_argument("--method", choices=METHODS, default="full",
                   help="full: update every weight; lora/adapter/prompt/selective: PEFT (default: full)")
    g.add_argument("--lora-r", type=int, default=8, help="LoRA rank r (default 8)")
    g.add_argument("--lora-alpha", type=float, default=16.0, help="LoRA alpha; scaling = alpha / r (default 16)")
    g.add_argument("--lora-dropout", type=float, default=0.0, help="dropout on LoRA's input (default 0)")
    g.add_argument("--lora-targets", type=_comma_list, default=["q", "v"],
                   help="comma list of module names to wrap (default q,v)")
    g.add_argument("--adapter-size", type=int, default=16, help="bottleneck width m (default 16)")
    g.add_argument("--adapter-positions", type=_comma_list, default=["attention", "ffn"],
                   help="comma list of attention,cross_attention,ffn (default attention,ffn)")
    g.add_argument("--num-virtual-tokens", type=int, default=20, help="soft prompt length (default 20)")
    g.add_argument("--prompt-init", choices=("random", "sample_vocab", "text"), default="sample_vocab",
                   help="soft prompt initialisation (default sample_vocab)")
    g.add_argument("--prompt-init-text", default=None, help="text whose embedding starts the prompt")
    g.add_argument("--selective-patterns", type=_comma_list, default=[],
                   help="comma list of regexes of parameter names to train, e.g. layer_norm")
    g.add_argument("--bitfit", action="store_true", help="selective: also train every bias (BitFit)")
    return parser


def config_from_args(args, tokenizer=None):
    """The PEFT config that the parsed flags describe (None for ``--method full``)."""
    if args.method == "full":
        return None
    if args.method == "lora":
        return LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
                          target_modules=list(args.lora_targets))
    if args.method == "adapter":
        return AdapterConfig(adapter_size=args.adapter_size, positions=list(args.adapter_positions))
    if args.method == "prompt":
        if args.prompt_init == "text" and (tokenizer is None or not args.prompt_init_text):
            raise ValueError("--prompt-init text needs --prompt-init-text and a tokenizer")
        return PromptTuningConfig(num_virtual_tokens=args.num_virtual_tokens,
                                  prompt_tuning_init=args.prompt_init,
                                  prompt_tuning_init_text=args.prompt_init_text, tokenizer=tokenizer)
    if args.method == "selective":
        return SelectiveConfig(patterns=list(args.selective_patterns), bitfit=args.bitfit)
    raise ValueError(f"unknown --method {args.method!r}; choose from {METHODS}")


def apply_peft(model, args, tokenizer=None):
    """The model to train: ``model`` itself for ``--method full``, else a ``PeftModel`` around it."""
    config = config_from_args(args, tokenizer)
    return model if config is None else get_peft_model(model, config)
