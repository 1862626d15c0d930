"""``minillm finetune``: supervised (instruction) fine-tuning, full or parameter-efficient."""
from __future__ import annotations

import argparse
import os
import random

from ..data import DEFAULT_MIXTURE, build_mixture, load_prompt_completion
from ..distributed.trainer_hooks import is_main
from ..peft.base_reference import write_base_reference
from ..training.trainer import Trainer
from .options import (add_common_arguments, add_model_arguments, add_resume_arguments, add_training_arguments,
                      finite_float)
from .folders import find_model_dir, run_started
from .peft_options import add_peft_arguments
from .smoke import apply_smoke
from .train import begin_writing, check_resume_fits, check_start, finish, model_and_tokenizer, training_arguments


def add_parser(subparsers) -> argparse.ArgumentParser:
    """The ``finetune`` sub-command and its flags (PEFT's from ``peft_options.py``)."""
    p = subparsers.add_parser("finetune", help="(instruction) fine-tuning on your JSONL/CSV data or the built-in tasks")
    add_common_arguments(p, "runs/finetune")
    p.add_argument("--data", metavar="FILE", help="training data: .jsonl/.csv/.tsv/.parquet with prompt and "
                   "completion (default: the built-in multitask mixture)")
    p.add_argument("--eval-data", metavar="FILE", help="evaluation data (default: --eval-fraction of --data, "
                   "or the built-in validation split)")
    p.add_argument("--eval-fraction", type=finite_float, default=0.05, help="share of --data held out (default: 0.05)")
    p.add_argument("--tasks", default=",".join(DEFAULT_MIXTURE),
                   help="built-in tasks to mix when there is no --data (comma-separated)")
    p.add_argument("--examples-per-task", type=int, default=2000, help="built-in mixture size per task")
    add_resume_arguments(p)
    add_model_arguments(p)
    add_training_arguments(p, eval_every=200, save_every=200, warmup_steps=30, metric_for_best="score")
    add_peft_arguments(p)
    p.add_argument("--copy-base", action="store_true", help="PEFT methods: copy the frozen base model into --out "
                   "(default: --out names the --model folder in base_model.json, with a fingerprint of its weights)")
    p.set_defaults(func=finetune)
    return p


def finetune_data(args):
    """(train, eval) records: from --data/--eval-data, or the built-in mixture's train/validation splits."""
    if args.data:
        records = list(load_prompt_completion(args.data))
        if args.eval_data:
            return records, list(load_prompt_completion(args.eval_data))
        random.Random(args.seed).shuffle(records)
        n_eval = max(1, round(len(records) * args.eval_fraction)) if len(records) > 1 else 0
        if n_eval == 0:
            return records, None
        return records[n_eval:], records[:n_eval]
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    train = build_mixture(tasks, args.examples_per_task, split="train", seed=args.seed)
    held_out = build_mixture(tasks, max(4, args.eval_num_examples // len(tasks) + 1), split="validation",
                             seed=args.seed)
    return train, (list(load_prompt_completion(args.eval_data)) if args.eval_data else held_out)


def _keep_base(args, model) -> str:
    """Where a PEFT run's frozen base lives: --model's folder, named in base_model.json with its
    fingerprint, or (--copy-base, or a base built here) a copy in the run folder itself."""
    base_dir = find_model_dir(args.model) if args.model else None
    if base_dir is None or args.copy_base:
        if is_main():
            model.save_pretrained(args.out)  # the frozen base, so the run directory is self-contained
        return args.out
    if is_main():
        write_base_reference(args.out, base_dir)
    return base_dir


def finetune(args) -> int:
    """``minillm finetune``: supervised (instruction) fine-tuning, full or parameter-efficient."""
    apply_smoke(args)
    check_start(args)
    train, held_out = finetune_data(args)
    model, tokenizer = model_and_tokenizer(args, lambda: [t for r in train for t in (r.prompt, r.completion)])
    check_resume_fits(args, model)
    begin_writing(args)
    if args.method != "full":
        from .peft_options import apply_peft  # noqa: PLC0415

        base_dir = _keep_base(args, model)
        model = apply_peft(model, args, tokenizer)
        model.peft_config[model.active_adapter].base_model_name_or_path = os.path.abspath(base_dir)
        model.print_trainable_parameters()
    overrides = {} if held_out is not None else {"eval_every": 0}
    trainer = Trainer(model, tokenizer, training_arguments(args, args.out, **overrides), train, eval_data=held_out)
    print(f"fine-tuning ({args.method}) on {len(train)} examples; {trainer.train_batches.stats}")
    run_started(args.out)
    return finish(args, trainer.train(resume_from=args.resume))
