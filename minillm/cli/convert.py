"""``minillm convert``: a minillm run directory to a Hugging Face folder, or back."""
from __future__ import annotations

import os

from .folders import UsageError, check_writable_dir, load_model, write_run_config


def convert(args) -> int:
    """Export ``--to-hf RUN_DIR`` (LoRA/selective merged into plain T5 weights) or import ``--from-hf``."""
    if not args.out or not (args.to_hf or args.from_hf):
        raise UsageError("convert needs --to-hf RUN_DIR or --from-hf HF_DIR, and --out DIR")
    source = args.to_hf or args.from_hf
    if args.best and not args.to_hf:
        raise UsageError("--best goes with --to-hf")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise UsageError(f"--out {args.out}: is a file, not a directory")
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
    check_writable_dir(args.out, "--out")
    model.save_pretrained(args.out)       # config.json + model.safetensors (tied weights stored once)
    tokenizer.save(args.out)              # tokenizer.json + tokenizer_config.json
    if args.from_hf:
        write_run_config(args, args.out)
    print(f"wrote {args.out}: config.json, model.safetensors, tokenizer.json "
          f"({'Hugging Face folder' if args.to_hf else 'minillm run directory'})")
    return 0
