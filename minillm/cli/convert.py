"""``minillm convert``: a minillm run directory to a Hugging Face folder, or back.

What a Hub folder carries beside the weights is kept: ``generation_config.json`` (the source's
settings, or the model's special ids when it has none), the source's ``tokenizer_config.json``
merged with the keys minillm writes (the source's values win: they describe the same tokenizer),
and ``special_tokens_map.json`` / ``spiece.model`` / ``added_tokens.json`` copied. ``config.json``
says ``minillm_version``, never a ``transformers_version`` copied from the source.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from ..files import atomic_write, atomic_write_text, read_input, read_json
from ..generation_config import GenerationConfig
from .folders import (UsageError, check_convert_out, clear_old_run, find_model_dir, load_model, lock_run_dir,
                      write_run_config)
from .options import add_common_arguments

# Tokenizer files of a Hub folder that minillm does not write itself, copied as they are.
_COPIED = ("special_tokens_map.json", "spiece.model", "added_tokens.json")
_MAX_COPIED_BYTES = 64 << 20


def add_parser(subparsers) -> argparse.ArgumentParser:
    """The ``convert`` sub-command and its flags."""
    p = subparsers.add_parser("convert", help="minillm run directory <-> Hugging Face folder")
    add_common_arguments(p, None)
    direction = p.add_mutually_exclusive_group()
    direction.add_argument("--to-hf", metavar="RUN_DIR", help="export this run directory")
    direction.add_argument("--from-hf", metavar="HF_DIR", help="import this Hugging Face T5 folder")
    p.add_argument("--out", metavar="DIR", help="where to write (required)")
    p.add_argument("--best", action="store_true", help="with --to-hf: export best/ instead of the final model")
    p.add_argument("--overwrite", action="store_true", help="replace a run or model already in --out")
    p.set_defaults(func=convert)
    return p


def convert(args) -> int:
    """Export ``--to-hf RUN_DIR`` (LoRA/selective merged into plain T5 weights) or import ``--from-hf``."""
    if not args.out or not (args.to_hf or args.from_hf):
        raise UsageError("convert needs --to-hf RUN_DIR or --from-hf HF_DIR, and --out DIR")
    source = args.to_hf or args.from_hf
    if args.best and not args.to_hf:
        raise UsageError("--best goes with --to-hf")
    check_convert_out(args.out, source, args.overwrite)  # never its source, never a run by accident
    lock_run_dir(args.out)  # held until the command ends; then checked again under the lock
    check_convert_out(args.out, source, args.overwrite)
    if args.best:
        best = os.path.join(source, "best")
        if os.path.isfile(os.path.join(best, "config.json")):
            model, tokenizer = load_model(best, tokenizer_path=source)
        else:  # a PEFT run keeps only the best adapter; the base model is the run's
            model, tokenizer = load_model(source, adapter_dir=best)
    else:
        model, tokenizer = load_model(source)
    if args.to_hf and hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()  # LoRA/selective folded into plain T5 weights (others raise)
    if args.overwrite:
        clear_old_run(args.out)
    model.save_pretrained(args.out)       # config.json + model.safetensors (tied weights stored once)
    tokenizer.save(args.out)              # tokenizer.json + tokenizer_config.json
    keep_hub_files(source, args.out, model)
    if args.from_hf:
        write_run_config(args, args.out)
    print(f"wrote {args.out}: config.json, model.safetensors, tokenizer.json "
          f"({'Hugging Face folder' if args.to_hf else 'minillm run directory'})")
    return 0


def keep_hub_files(source: str, out: str, model) -> None:
    """generation_config.json, the merged tokenizer_config.json and the copied tokenizer files in ``out``."""
    folders = list(dict.fromkeys([source, find_model_dir(source)]))
    config = getattr(model, "generation_config", None) or GenerationConfig(
        eos_token_id=model.config.eos_token_id, pad_token_id=model.config.pad_token_id,
        decoder_start_token_id=model.config.decoder_start_token_id)
    config.save_pretrained(out)
    theirs = next((os.path.join(f, "tokenizer_config.json") for f in folders
                   if os.path.isfile(os.path.join(f, "tokenizer_config.json"))), None)
    if theirs is not None:
        ours_path = os.path.join(out, "tokenizer_config.json")
        merged = {**read_json(ours_path, "tokenizer_config.json"), **read_json(theirs, "tokenizer_config.json")}
        atomic_write_text(ours_path, json.dumps(merged, indent=2, sort_keys=True))
    for name in _COPIED:
        found = next((os.path.join(f, name) for f in folders if os.path.isfile(os.path.join(f, name))), None)
        if found is not None:
            data = read_input(found, _MAX_COPIED_BYTES, name)
            atomic_write(os.path.join(out, name), lambda tmp, data=data: Path(tmp).write_bytes(data))

