"""What the training commands (``pretrain``, ``finetune``, ``quickstart``) share: building or loading
the model, the run directory, checking a ``--resume``, and the report at the end.

Each command takes the parsed ``argparse.Namespace``, writes into its run directory and returns an
exit code. A run directory is a Hugging Face folder plus the story of the run:

    config.json, model.safetensors    the model (the base model, for a PEFT run)
    adapter_config.json, adapter_model.safetensors   the adapter (PEFT runs only)
    tokenizer.json                    the tokenizer
    run_config.json                   every option of the command (``--config`` accepts it back)
    training_args.json, log.jsonl, loss_curve.png, checkpoint/, best/, results.json

A run directory that already holds a run is refused unless ``--resume`` or ``--overwrite`` says
what to do with it (``folders.check_run_dir``). ``--resume DIR/checkpoint`` continues a run
honestly: options that would change the model are refused here, the Trainer applies and reports
changed training options or refuses those that cannot continue the run (``training/resume.py``).
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys

from .. import backend
from ..distributed.trainer_hooks import is_main, writes_here
from ..data import DataError, Tokenizer, load_prompt_completion
from ..data.jsonl import text_lines
from ..files import atomic_write_text, read_json
from ..models import T5Config, T5ForConditionalGeneration
from ..training.arguments import TrainingArguments
from ..training.interrupt import interrupt_after
from ..training.log import read_log
from ..training.resume import check_checkpoint_fits, prepare_resume
from .folders import (UsageError, begin_run, check_run_dir, clear_old_run, load_model, load_tokenizer,
                      lock_run_dir, write_run_config)

# Options that say which model is trained or give it its shape: a checkpoint cannot follow a change.
MODEL_OPTIONS = ("model", "vocab_size", "d_model", "d_ff", "num_layers", "num_heads", "method", "lora_r",
                 "lora_targets", "adapter_size", "adapter_positions", "num_virtual_tokens",
                 "selective_patterns", "bitfit", "model_type", "num_sentinels")
# Options that choose the training data: the Trainer compares the data itself (its fingerprint).
DATA_OPTIONS = ("data", "tasks", "examples_per_task", "eval_fraction", "text", "num_documents", "chunk_length",
                "noise_density", "mean_span_length")
NOT_COMPARED = {"out", "resume", "overwrite", "threads", "config", "func", "command"}


def new_model(args, tokenizer) -> T5ForConditionalGeneration:
    """A randomly initialized T5 of the size given by --d-model, --num-layers, ..."""
    if args.d_model % args.num_heads:
        raise UsageError(f"--d-model {args.d_model} is not divisible by --num-heads {args.num_heads}")
    backend.manual_seed(args.seed)
    config = T5Config(vocab_size=tokenizer.vocab_size, d_model=args.d_model, d_kv=args.d_model // args.num_heads,
                      d_ff=args.d_ff, num_layers=args.num_layers, num_heads=args.num_heads,
                      dropout_rate=args.dropout)
    return T5ForConditionalGeneration(config)


def model_and_tokenizer(args, texts_for_tokenizer):
    """Load --model (and --tokenizer), or train a tokenizer on the texts and build a new model."""
    if args.model:
        return load_model(args.model, args.tokenizer)
    if args.tokenizer:
        tokenizer = load_tokenizer(args.tokenizer)
    else:
        print(f"training a tokenizer (vocab {args.vocab_size}) on the training text")
        with interrupt_after("the tokenizer's training"):  # the library would not see Ctrl-C
            tokenizer = Tokenizer.train(texts_for_tokenizer(), vocab_size=args.vocab_size,
                                        num_sentinels=min(100, args.vocab_size // 10))
    return new_model(args, tokenizer), tokenizer


def training_arguments(args, out: str, **overrides) -> TrainingArguments:
    """TrainingArguments from the command's flags (one flag per field)."""
    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    values = {name: getattr(args, name) for name in names if hasattr(args, name)}
    return TrainingArguments(**{**values, "output_dir": out, "progress": sys.stderr.isatty(), **overrides})


def check_start(args) -> None:
    """Before any work: lock --out, check --resume against the run it continues, and --out (changes nothing)."""
    lock_run_dir(args.out)  # held until the command ends: a second process on --out is refused
    if args.resume:
        check_resume(args)
    check_run_dir(args.out, args.resume, args.overwrite)
    training_arguments(args, args.out)  # their own checks (ranges), before anything is written


def check_resume_fits(args, model) -> None:
    """Before the first write: the ``--resume`` checkpoint's weights fit the model this run trains
    (compared by the checkpoint's header; a mismatch is summarised, not listed)."""
    if args.resume:
        check_checkpoint_fits(args.resume, model, peft=getattr(args, "method", "full") != "full")


def begin_writing(args) -> None:
    """Once data and model are ready: clear an old run (--overwrite), record this run's options.

    A resumed run records its options only once it has run (``finish``): if the Trainer refuses
    them, the run's own run_config.json stays as it was. Whatever a failed start writes from here
    until training begins is removed again (``folders.begin_run``).
    """
    if not writes_here():  # under mpiexec: rank 0 writes, once every rank has checked --out
        return
    if args.overwrite and not args.resume:
        clear_old_run(args.out)
    begin_run(args.out)  # until training starts (run_started), a failure removes what is written next
    if not args.resume:
        write_run_config(args, args.out)


def finish(args, result) -> int:
    """After training: results.json and the summary, and (for a resumed run) its run_config.json."""
    if args.resume and writes_here():
        write_run_config(args, args.out)
    report(result, args.out)
    return 0


def check_resume(args) -> None:
    """Before anything is built: the checkpoint exists and the model options match its run's.

    The run's own tokenizer is used unless ``--model`` or ``--tokenizer`` says otherwise, and the
    options that differ from the run's ``run_config.json`` (and are not refused) are reported.
    """
    state = os.path.join(args.resume, "trainer_state.json")
    if os.path.abspath(os.path.dirname(os.path.abspath(args.resume))) == os.path.abspath(args.out):
        prepare_resume(args.resume)  # under --out's lock: put back a checkpoint an interrupted save left aside
    if not os.path.isdir(args.resume):
        raise UsageError(f"--resume {args.resume}: no such checkpoint directory")
    if not os.path.isfile(state):
        raise FileNotFoundError(f"--resume {args.resume}: {state} does not exist (not a minillm checkpoint)")
    if os.path.lexists(os.path.join(args.out, "log.jsonl")):  # a damaged log is refused before any write
        read_log(os.path.join(args.out, "log.jsonl"), keep_until_step=0, report=False)
    run_dir = os.path.dirname(os.path.abspath(args.resume))
    run_config = os.path.join(run_dir, "run_config.json")
    if not os.path.isfile(run_config):
        return
    saved = read_json(run_config, "run_config.json")
    current = json.loads(json.dumps(vars(args), default=str))
    for name in MODEL_OPTIONS:
        if name in saved and name in current and saved[name] != current[name]:
            flag = "--" + name.replace("_", "-")
            raise UsageError(f"{run_config}: cannot resume with {flag} {current[name]}: the checkpoint's "
                             f"weights were made with {flag} {saved[name]}. Resume with {flag} {saved[name]}, "
                             "or start a new run.")
    if not args.model and not args.tokenizer and os.path.isfile(os.path.join(run_dir, "tokenizer.json")):
        args.tokenizer = os.path.join(run_dir, "tokenizer.json")  # the ids the checkpoint was trained on
    training = {f.name for f in dataclasses.fields(TrainingArguments)}
    changed = [f"--{k.replace('_', '-')} {saved[k]} -> {current[k]}" for k in sorted(current)
               if k in saved and saved[k] != current[k] and k not in NOT_COMPARED | training | set(DATA_OPTIONS)
               and k != "tokenizer"]
    if changed:
        print(f"resuming with options that differ from {run_config} (applied): {', '.join(changed)}")


def report(result, out: str) -> None:
    """Write results.json and print a short summary of a training run."""
    if not is_main():  # under mpiexec: rank 0 writes
        return
    summary = dataclasses.asdict(result)
    atomic_write_text(os.path.join(out, "results.json"), json.dumps(summary, indent=2))
    state = "interrupted at" if result.interrupted else "finished after"
    print(f"{state} step {result.global_step}; mean train loss {result.train_loss:.4f}")
    for key, value in result.metrics.items():
        print(f"  {key}: {value:.4f}")
    print(f"run directory: {out}")


def read_texts(path: str) -> list[str]:
    """Texts of a file: prompts and completions of .jsonl/.csv/.tsv, else one document per line."""
    if os.path.splitext(path)[1].lower() in (".jsonl", ".json", ".csv", ".tsv"):
        return [t for r in load_prompt_completion(path) for t in (r.prompt, r.completion)]
    texts = [line.strip() for _, line in text_lines(path) if line.strip()]  # bounded, a regular file
    if not texts:
        raise DataError(path, None, "file is empty: no text found")
    return texts
