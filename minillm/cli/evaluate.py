"""`minillm evaluate`: score a trained model on a benchmark suite, or on your own data file.

    minillm evaluate --suite mini-glue --model runs/flan
    minillm evaluate --suite helm --model runs/base --adapter runs/lora --output helm.json
    minillm evaluate --suite glue --data-dir ~/glue_data --tasks sst2,rte --model runs/flan
    minillm evaluate --model runs/ft --data my_test.jsonl     # eval loss + metrics on your examples

The model folder is found by the one rule of ``cli/folders.py`` (``DIR`` or ``DIR/model``, with
the first tokenizer.json of ``DIR``, the model folder, ``DIR/tokenizer``). With MINILLM_SMOKE=1
every task uses only a few examples, so the command finishes in seconds (for tests and tutorials).
"""
from __future__ import annotations

import argparse
import json
import sys

from ..data import load_prompt_completion
from ..evaluation.held_out import evaluate_model
from ..evaluation.progress import reporting
from .command import new_parser, run
from .folders import UsageError, check_writable_file, load_model
from .options import add_common_arguments
from .smoke import smoke_mode

SUITES = ("mini-glue", "helm", "glue")
SMOKE_EXAMPLES = 4
DEFAULT_EXAMPLES = 100


def add_parser(subparsers) -> argparse.ArgumentParser:
    """The ``evaluate`` sub-command and its flags."""
    p = subparsers.add_parser("evaluate", help="score a model on a benchmark suite or on your own --data file")
    add_common_arguments(p, None)
    add_evaluate_arguments(p)
    p.set_defaults(func=run_evaluate)
    return p


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the `evaluate` options to `parser` (a sub-command parser or a fresh one)."""
    parser.add_argument("--suite", choices=SUITES, default="mini-glue",
                        help="mini-glue: built-in tasks, GLUE-style average; helm: accuracy, "
                             "calibration, robustness, efficiency; glue: local GLUE/SuperGLUE files")
    parser.add_argument("--model", required=True, metavar="RUN_DIR",
                        help="folder with config.json + model.safetensors (or a model/ sub-folder) "
                             "and tokenizer.json")
    parser.add_argument("--adapter", metavar="DIR", help="a PEFT adapter folder to load on top")
    parser.add_argument("--data", metavar="FILE", help="score your own .jsonl/.csv/.tsv/.parquet prompt/completion "
                        "file "
                        "(eval loss, and exact match and ROUGE-L on generated text) instead of a suite")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="generation length with --data (default: 64)")
    parser.add_argument("--max-source-length", type=int, default=256, help="prompt tokens kept with --data; "
                        "longer prompts are cut, and counted in the truncation report (default: 256)")
    parser.add_argument("--max-target-length", type=int, default=64, help="reference tokens kept for the eval "
                        "loss with --data; longer ones are cut, and counted (default: 64)")
    parser.add_argument("--output", metavar="FILE", help="also write the results as JSON here")
    parser.add_argument("--num-examples", type=int, default=None,
                        help=f"examples per task (default: {DEFAULT_EXAMPLES}; with --data: the whole file)")
    parser.add_argument("--shots", type=int, default=0, help="solved examples in each prompt")
    parser.add_argument("--batch-size", type=int, default=16, help="examples per batch (default: 16)")
    parser.add_argument("--seed", type=int, default=0, help="seeds shots, perturbations, bootstrap")
    parser.add_argument("--tasks", help="comma-separated subset of the suite's tasks")
    parser.add_argument("--prompt-style", choices=("t5", "flan"),
                        help="T5 prefixes or FLAN templates (default: t5 for mini-glue, flan for helm)")
    parser.add_argument("--data-dir", metavar="DIR", help="GLUE/SuperGLUE files (--suite glue)")
    return parser


def _run_suite(args, model, tokenizer, n: int, n_bootstrap: int) -> dict:
    from ..evaluation.helm import HELM_SCENARIOS, helm_report  # noqa: PLC0415
    from ..evaluation.harness import builtin_task  # noqa: PLC0415
    from ..evaluation.glue_loaders import t5_render  # noqa: PLC0415
    from ..evaluation.suites import run_glue_folder, run_mini_glue  # noqa: PLC0415

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else None
    if args.suite == "mini-glue":
        report, glue = run_mini_glue(model, tokenizer, n, args.shots, args.seed, args.batch_size,
                                     args.prompt_style or "t5", tasks, n_bootstrap)
    elif args.suite == "glue":
        if not args.data_dir:
            raise ValueError("--suite glue needs --data-dir DIR (the unpacked GLUE/SuperGLUE files)")
        report, glue = run_glue_folder(model, tokenizer, args.data_dir, tasks, "dev", n, args.shots,
                                       args.seed, args.batch_size, n_bootstrap)
    else:
        from ..data import get_task  # noqa: PLC0415

        eval_tasks = []
        for name in tasks or HELM_SCENARIOS:
            task = get_task(name)
            render = t5_render(task.name, task.fields) if args.prompt_style == "t5" else None
            eval_tasks.append(builtin_task(task.name, "test", n, args.seed, render=render))
        helm = helm_report(model, tokenizer, eval_tasks, shots=args.shots, seed=args.seed,
                           batch_size=args.batch_size)
        print(helm.table())
        return {"suite": args.suite, **helm.to_dict()}
    print(report.table())
    print()
    print(glue.format())
    return {"suite": args.suite, **report.to_dict(), "per_task": glue.per_task, "score": glue.score}


def _run_data_file(args, model, tokenizer, n: int | None) -> dict:
    """Eval loss and generated-text metrics on the records of ``--data``."""
    records = list(load_prompt_completion(args.data))[:n]
    results = evaluate_model(model, tokenizer, records, args.max_source_length, args.max_target_length,
                             max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                             report=lambda stats: print(f"{args.data}: {stats}"))
    for key, value in results.items():
        print(f"{key:32s} {value:.4f}")
    return {"data": args.data, "num_records": len(records), "metrics": results}


def run_evaluate(args: argparse.Namespace) -> int:
    """Run the suite (or --data) chosen by `args`; print the table, write --output; return the exit code.

    Raises:
        UsageError, FileNotFoundError, ValueError: bad options or files (``minillm``'s main prints
            them with exit code 2).
    """
    smoke = smoke_mode()
    n = args.num_examples if args.num_examples is not None else (None if args.data else DEFAULT_EXAMPLES)
    if smoke:
        n = min(n or SMOKE_EXAMPLES, SMOKE_EXAMPLES)
    if (n is not None and n < 1) or args.shots < 0 or min(args.batch_size, args.max_source_length,
                                                           args.max_target_length) < 1:
        raise UsageError("--num-examples, --batch-size, --max-source-length and --max-target-length must be "
                         ">= 1, --shots >= 0")
    if args.output:
        check_writable_file(args.output, "--output")
    model, tokenizer = load_model(args.model, adapter_dir=args.adapter, trainable_adapter=True)
    model.eval()
    with reporting("minillm evaluate"):  # progress on stderr, a bar on a terminal, lines otherwise
        if args.data:
            result = _run_data_file(args, model, tokenizer, n)
        else:
            result = _run_suite(args, model, tokenizer, n, n_bootstrap=20 if smoke else 200)
    result.update(model=args.model, adapter=args.adapter, num_examples=n, shots=args.shots,
                  seed=args.seed, smoke=smoke)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
        print(f"\nresults written to {args.output}")
    return 0


def main(argv: list | None = None) -> int:
    """Stand-alone entry point: `python -m minillm.cli.evaluate ...` is `minillm evaluate ...`."""
    return run(new_parser([sys.modules[__name__]]), ["evaluate", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
