"""`minillm evaluate`: run a benchmark suite on a trained model from the command line.

    minillm evaluate --suite mini-glue --model runs/flan
    minillm evaluate --suite helm --model runs/base --adapter runs/lora --output helm.json
    minillm evaluate --suite glue --data-dir ~/glue_data --tasks sst2,rte --model runs/flan

RUN_DIR is what the Trainer writes (config.json + model.safetensors + tokenizer.json), or a
folder with the model in a `model/` sub-folder. `minillm/cli/main.py` adds these arguments to its
`evaluate` sub-command and calls `run_evaluate`. With MINILLM_SMOKE=1 every task uses only a
few examples, so the command finishes in seconds (for tests and tutorials).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

SUITES = ("mini-glue", "helm", "glue")
SMOKE_EXAMPLES = 4


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the `evaluate` options to `parser` (a sub-command parser or a fresh one)."""
    parser.add_argument("--suite", choices=SUITES, default="mini-glue",
                        help="mini-glue: built-in tasks, GLUE-style average; helm: accuracy, "
                             "calibration, robustness, efficiency; glue: local GLUE/SuperGLUE files")
    parser.add_argument("--model", required=True, metavar="RUN_DIR",
                        help="folder with config.json + model.safetensors (or a model/ sub-folder) "
                             "and tokenizer.json")
    parser.add_argument("--adapter", metavar="DIR", help="a PEFT adapter folder to load on top")
    parser.add_argument("--output", metavar="FILE", help="also write the results as JSON here")
    parser.add_argument("--num-examples", type=int, default=100, help="examples per task")
    parser.add_argument("--shots", type=int, default=0, help="solved examples in each prompt")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0, help="seeds shots, perturbations, bootstrap")
    parser.add_argument("--tasks", help="comma-separated subset of the suite's tasks")
    parser.add_argument("--prompt-style", choices=("t5", "flan"),
                        help="T5 prefixes or FLAN templates (default: t5 for mini-glue, flan for helm)")
    parser.add_argument("--data-dir", metavar="DIR", help="GLUE/SuperGLUE files (--suite glue)")
    return parser


def _find_model_dir(run_dir: str) -> str:
    for candidate in (run_dir, os.path.join(run_dir, "model")):
        if os.path.isfile(os.path.join(candidate, "config.json")):
            return candidate
    raise FileNotFoundError(f"{run_dir}: no config.json here or in {os.path.join(run_dir, 'model')}")


def _find_tokenizer(run_dir: str, model_dir: str) -> str:
    for candidate in (run_dir, model_dir, os.path.join(run_dir, "tokenizer")):
        path = os.path.join(candidate, "tokenizer.json")
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"{run_dir}: no tokenizer.json found (looked in the run folder, "
                            f"{model_dir} and {os.path.join(run_dir, 'tokenizer')})")


def load_run(run_dir: str, adapter: str | None = None):
    """(model, tokenizer) from a run folder, with an optional PEFT adapter."""
    from ..data import Tokenizer  # noqa: PLC0415
    from ..models import T5ForConditionalGeneration  # noqa: PLC0415

    model_dir = _find_model_dir(run_dir)
    tokenizer = Tokenizer.from_file(_find_tokenizer(run_dir, model_dir))
    model = T5ForConditionalGeneration.from_pretrained(model_dir)
    if adapter is not None:
        try:
            from ..peft import PeftModel  # noqa: PLC0415
        except ImportError as err:
            raise RuntimeError(f"--adapter needs minillm.peft, which cannot be imported ({err})") from None
        # is_trainable=True only so that the report counts the adapter's parameters as the
        # trainable ones; nothing is trained here.
        model = PeftModel.from_pretrained(model, adapter, is_trainable=True)
    model.eval()
    return model, tokenizer


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


def run_evaluate(args: argparse.Namespace) -> int:
    """Run the suite chosen by `args`; print the table, write --output; return the exit code."""
    smoke = os.environ.get("MINILLM_SMOKE") == "1"
    n = min(args.num_examples, SMOKE_EXAMPLES) if smoke else args.num_examples
    if n < 1 or args.shots < 0 or args.batch_size < 1:
        print("error: --num-examples and --batch-size must be >= 1, --shots >= 0", file=sys.stderr)
        return 2
    try:
        model, tokenizer = load_run(args.model, args.adapter)
        result = _run_suite(args, model, tokenizer, n, n_bootstrap=20 if smoke else 200)
    except (FileNotFoundError, ValueError, KeyError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    result.update(model=args.model, adapter=args.adapter, num_examples=n, shots=args.shots,
                  seed=args.seed, smoke=smoke)
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
        print(f"\nresults written to {args.output}")
    return 0


def main(argv: list | None = None) -> int:
    """Stand-alone entry point: `python -m minillm.cli.evaluate --model RUN_DIR`."""
    parser = add_evaluate_arguments(argparse.ArgumentParser(prog="minillm evaluate",
                                                            description=__doc__.split("\n")[0]))
    return run_evaluate(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
