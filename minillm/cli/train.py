"""The training commands: ``quickstart``, ``train-tokenizer``, ``pretrain`` and ``finetune``.

Each takes the parsed ``argparse.Namespace``, writes into its run directory and returns an exit
code. A run directory is a Hugging Face folder plus the story of the run:

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
import random
import sys

from .. import backend
from ..distributed.trainer_hooks import is_main, writes_here
from ..data import (DEFAULT_MIXTURE, Batcher, DataError, Tokenizer, build_mixture, load_prompt_completion,
                    pretraining_corpus, span_corruption_pairs)
from ..files import read_json
from ..models import T5Config, T5ForConditionalGeneration
from ..training.trainer import Trainer, TrainingArguments
from .folders import UsageError, check_run_dir, clear_old_run, load_model, load_tokenizer, write_run_config
from .quickstart import QuickstartConfig, run_quickstart
from .smoke import apply_smoke, smoke_mode

# Options that say which model is trained or give it its shape: a checkpoint cannot follow a change.
MODEL_OPTIONS = ("model", "vocab_size", "d_model", "d_ff", "num_layers", "num_heads", "method", "lora_r",
                 "lora_targets", "adapter_size", "adapter_positions", "num_virtual_tokens",
                 "selective_patterns", "bitfit", "model_type", "num_sentinels")
# Options that choose the training data: the Trainer compares the data itself (its fingerprint).
DATA_OPTIONS = ("data", "tasks", "examples_per_task", "eval_fraction", "text", "num_documents", "chunk_length",
                "noise_density", "mean_span_length")
NOT_COMPARED = {"out", "resume", "overwrite", "threads", "config", "func", "command"}


# ---------------------------------------------------------------------------------- shared steps
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
        tokenizer = Tokenizer.train(texts_for_tokenizer(), vocab_size=args.vocab_size,
                                    num_sentinels=min(100, args.vocab_size // 10))
    return new_model(args, tokenizer), tokenizer


def training_arguments(args, out: str, **overrides) -> TrainingArguments:
    """TrainingArguments from the command's flags (one flag per field)."""
    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    values = {name: getattr(args, name) for name in names if hasattr(args, name)}
    return TrainingArguments(**{**values, "output_dir": out, "progress": sys.stderr.isatty(), **overrides})


def check_start(args) -> None:
    """Before any work: check --resume against the run it continues, and --out (changes nothing)."""
    if args.resume:
        check_resume(args)
    check_run_dir(args.out, args.resume, args.overwrite)
    training_arguments(args, args.out)  # their own checks (ranges), before anything is written


def begin_writing(args) -> None:
    """Once data and model are ready: clear an old run (--overwrite), record this run's options.

    A resumed run records its options only once it has run (``finish``): if the Trainer refuses
    them, the run's own run_config.json stays as it was.
    """
    if not writes_here():  # under mpiexec: rank 0 writes, once every rank has checked --out
        return
    if args.overwrite and not args.resume:
        clear_old_run(args.out)
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
    if not os.path.isdir(args.resume):
        raise UsageError(f"--resume {args.resume}: no such checkpoint directory")
    if not os.path.isfile(state):
        raise FileNotFoundError(f"--resume {args.resume}: {state} does not exist (not a minillm checkpoint)")
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
    with open(os.path.join(out, "results.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
    state = "interrupted at" if result.interrupted else "finished after"
    print(f"{state} step {result.global_step}; mean train loss {result.train_loss:.4f}")
    for key, value in result.metrics.items():
        print(f"  {key}: {value:.4f}")
    print(f"run directory: {out}")


def read_texts(path: str) -> list[str]:
    """Texts of a file: prompts and completions of .jsonl/.csv/.tsv, else one document per line."""
    if os.path.splitext(path)[1].lower() in (".jsonl", ".json", ".csv", ".tsv"):
        return [t for r in load_prompt_completion(path) for t in (r.prompt, r.completion)]
    with open(path, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise DataError(path, line, f"not valid UTF-8 (byte 0x{data[err.start]:02x})") from None
    texts = [line.strip() for line in text.split("\n") if line.strip()]
    if not texts:
        raise DataError(path, None, "file is empty: no text found")
    return texts


# ---------------------------------------------------------------------------------- commands
def quickstart(args) -> int:
    """``minillm quickstart``: see ``minillm.cli.quickstart``."""
    fields = {f.name for f in dataclasses.fields(QuickstartConfig)} - {"output_dir"}
    values = {name: getattr(args, name) for name in fields}
    config = (QuickstartConfig.smoke(output_dir=args.out, seed=args.seed, progress=args.progress) if smoke_mode()
              else QuickstartConfig(output_dir=args.out, **values))
    check_run_dir(args.out, overwrite=args.overwrite, resumable=False)
    args.resume = None
    begin_writing(args)
    run_quickstart(config)
    return 0


def train_tokenizer(args) -> int:
    """``minillm train-tokenizer``: learn a vocabulary, save tokenizer.json, show an example."""
    apply_smoke(args)
    if args.input:
        texts = [t for path in args.input for t in read_texts(path)]
    else:
        n = 100 if smoke_mode() else 2000
        texts = pretraining_corpus(n) + [t for r in build_mixture(examples_per_task=n // 5)
                                         for t in (r.prompt, r.completion)]
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise UsageError(f"--out {args.out}: is a file, not a directory")
    tokenizer = Tokenizer.train(texts, vocab_size=args.vocab_size, model=args.model_type,
                                num_sentinels=args.num_sentinels)
    path = tokenizer.save(args.out)
    write_run_config(args, args.out)
    print(f"{tokenizer} trained on {len(texts)} texts; saved {path}")
    print(f"example: {texts[0][:60]!r} -> {tokenizer.tokenize(texts[0][:60])}")
    return 0


def pretrain(args) -> int:
    """``minillm pretrain``: T5's span-corruption objective on plain text."""
    apply_smoke(args)
    check_start(args)
    texts = read_texts(args.text) if args.text else pretraining_corpus(args.num_documents, seed=args.seed)
    model, tokenizer = model_and_tokenizer(args, lambda: texts)
    if tokenizer.num_sentinels == 0:
        raise UsageError("the tokenizer has no sentinel tokens (<extra_id_N>), which span corruption needs")
    pairs = span_corruption_pairs(texts, tokenizer, args.chunk_length, args.noise_density,
                                  args.mean_span_length, seed=args.seed)
    if len(pairs) < 2:
        raise UsageError(f"only {len(pairs)} pretraining examples: give more text")
    n_eval = max(1, len(pairs) // 20)  # 5% held out for the eval loss
    train = Batcher(pairs[n_eval:], args.batch_size, shuffle=True, seed=args.seed, pad_id=tokenizer.pad_token_id)
    held_out = Batcher(pairs[:n_eval], args.eval_batch_size, shuffle=False, pad_id=tokenizer.pad_token_id)
    begin_writing(args)
    print(f"pretraining on {len(pairs) - n_eval} span-corruption examples of {args.chunk_length} tokens")
    trainer = Trainer(model, tokenizer, training_arguments(args, args.out, metric_for_best="eval_loss"),
                      train, eval_data=held_out)
    return finish(args, trainer.train(resume_from=args.resume))


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


def finetune(args) -> int:
    """``minillm finetune``: supervised (instruction) fine-tuning, full or parameter-efficient."""
    apply_smoke(args)
    check_start(args)
    train, held_out = finetune_data(args)
    model, tokenizer = model_and_tokenizer(args, lambda: [t for r in train for t in (r.prompt, r.completion)])
    begin_writing(args)
    if args.method != "full":
        from .peft_options import apply_peft  # noqa: PLC0415

        if is_main():
            model.save_pretrained(args.out)  # the frozen base, so the run directory is self-contained
        model = apply_peft(model, args, tokenizer)
        model.print_trainable_parameters()
    overrides = {} if held_out is not None else {"eval_every": 0}
    trainer = Trainer(model, tokenizer, training_arguments(args, args.out, **overrides), train, eval_data=held_out)
    print(f"fine-tuning ({args.method}) on {len(train)} examples; {trainer.train_batches.stats}")
    return finish(args, trainer.train(resume_from=args.resume))


__all__ = ["quickstart", "train_tokenizer", "pretrain", "finetune", "DEFAULT_MIXTURE"]
