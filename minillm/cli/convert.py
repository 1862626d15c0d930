"""``minillm convert``: a minillm run directory to a Hugging Face folder, or back."""
from __future__ import annotations

import argparse
import os

from .folders import UsageError, check_convert_out, clear_old_run, load_model, lock_run_dir, write_run_config
from .options import add_common_arguments


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
    if args.from_hf:
        write_run_config(args, args.out)
    print(f"wrote {args.out}: config.json, model.safetensors, tokenizer.json "
          f"({'Hugging Face folder' if args.to_hf else 'minillm run directory'})")
    return 0
