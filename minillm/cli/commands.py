"""What each ``minillm`` sub-command does (the parsers are in ``cli.py``).

Each command takes the parsed ``argparse.Namespace``, writes into its run directory and returns
an exit code. A run directory is a Hugging Face folder plus the story of the run:

    config.json, model.safetensors    the model (the base model, for a PEFT run)
    adapter_config.json, adapter_model.safetensors   the adapter (PEFT runs only)
    tokenizer.json                    the tokenizer
    run_config.json                   every option of the command (``--config`` accepts it back)
    training_args.json, log.jsonl, loss_curve.png, checkpoint/, best/, results.json

Under ``MINILLM_SMOKE=1`` every command shrinks its model, data and steps to run in seconds.
"""
from __future__ import annotations

import dataclasses
import json
import os
import random
import sys

from .. import backend
from ..data import (DEFAULT_MIXTURE, Batcher, DataError, Tokenizer, build_mixture, load_prompt_completion,
                   pretraining_corpus, span_corruption_pairs)
from ..models import T5Config, T5ForConditionalGeneration
from .quickstart import QuickstartConfig, run_quickstart, smoke_mode
from ..training.trainer import Trainer, TrainingArguments
from ..training.evaluation import evaluate_model

# What MINILLM_SMOKE=1 forces, so that every command finishes in seconds.
SMOKE = dict(max_steps=3, batch_size=4, gradient_accumulation_steps=1, eval_every=2, save_every=2, log_every=1,
             eval_num_examples=4, eval_max_new_tokens=4, eval_batch_size=4, d_model=16, d_ff=32, num_layers=1,
             num_heads=2, vocab_size=300, examples_per_task=8, num_documents=60, max_new_tokens=4,
             num_examples=4)


def apply_smoke(args) -> None:
    """Under MINILLM_SMOKE=1, shrink every size option the command has (see SMOKE)."""
    if not smoke_mode():
        return
    for name, value in SMOKE.items():
        if hasattr(args, name):
            current = getattr(args, name)
            setattr(args, name, min(current, value) if isinstance(current, int) and current > 0 else value)


def write_run_config(args, out: str) -> None:
    """Save every option of the command to ``out/run_config.json`` (reusable with ``--config``)."""
    os.makedirs(out, exist_ok=True)
    options = {k: v for k, v in vars(args).items() if k not in ("func", "config", "command")}
    with open(os.path.join(out, "run_config.json"), "w", encoding="utf-8") as f:
        json.dump(options, f, indent=2, default=str)


# ---------------------------------------------------------------------------------- models
def find_model_dir(path: str) -> str:
    """The folder holding config.json: ``path`` itself or its ``model/`` sub-folder."""
    for candidate in (path, os.path.join(path, "model")):
        if os.path.isfile(os.path.join(candidate, "config.json")):
            return candidate
    raise FileNotFoundError(f"{path}: no config.json here or in {os.path.join(path, 'model')} "
                            "(expected a minillm run directory or a Hugging Face T5 folder)")


def load_tokenizer(path: str) -> Tokenizer:
    """A tokenizer from a tokenizer.json file or a folder holding one."""
    file = os.path.join(path, "tokenizer.json") if os.path.isdir(path) else path
    if not os.path.isfile(file):
        raise FileNotFoundError(f"{file} does not exist; train one with `minillm train-tokenizer` or pass "
                                "--tokenizer (a Hugging Face folder needs its fast-tokenizer tokenizer.json)")
    return Tokenizer.from_file(file)


def load_model(path: str, tokenizer_path: str | None = None, adapter_dir: str | None = None):
    """(model, tokenizer) from a run directory or HF folder.

    A PEFT adapter (adapter_config.json) in ``adapter_dir``, by default ``path`` itself, is loaded
    on top of the base model, as a PEFT run directory holds both.
    """
    model_dir = find_model_dir(path)
    model = T5ForConditionalGeneration.from_pretrained(model_dir)
    adapter_dir = adapter_dir or path
    if os.path.isfile(os.path.join(adapter_dir, "adapter_config.json")):
        from ..peft import PeftModel  # noqa: PLC0415

        model = PeftModel.from_pretrained(model, adapter_dir)
    tokenizer = load_tokenizer(tokenizer_path or (path if os.path.exists(os.path.join(path, "tokenizer.json"))
                                                  else model_dir))
    return model, tokenizer


def new_model(args, tokenizer) -> T5ForConditionalGeneration:
    """A randomly initialized T5 of the size given by --d-model, --num-layers, ..."""
    if args.d_model % args.num_heads:
        raise ValueError(f"--d-model {args.d_model} is not divisible by --num-heads {args.num_heads}")
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


def _report(result, out: str) -> None:
    """Write results.json and print a short summary of a training run."""
    summary = dataclasses.asdict(result)
    with open(os.path.join(out, "results.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
    state = "interrupted at" if result.interrupted else "finished after"
    print(f"{state} step {result.global_step}; mean train loss {result.train_loss:.4f}")
    for key, value in result.metrics.items():
        print(f"  {key}: {value:.4f}")
    print(f"run directory: {out}")


# ---------------------------------------------------------------------------------- commands
def quickstart(args) -> int:
    """``minillm quickstart``: see ``minillm.cli.quickstart``."""
    fields = {f.name for f in dataclasses.fields(QuickstartConfig)} - {"output_dir"}
    values = {name: getattr(args, name) for name in fields}
    config = (QuickstartConfig.smoke(output_dir=args.out, seed=args.seed, progress=args.progress) if smoke_mode()
              else QuickstartConfig(output_dir=args.out, **values))
    write_run_config(args, args.out)
    run_quickstart(config)
    return 0


def _read_texts(path: str) -> list[str]:
    """Texts of a file: prompts and completions of .jsonl/.csv/.tsv, else one document per line."""
    if os.path.splitext(path)[1].lower() in (".jsonl", ".json", ".csv", ".tsv"):
        return [t for r in load_prompt_completion(path) for t in (r.prompt, r.completion)]
    with open(path, encoding="utf-8") as f:
        texts = [line.strip() for line in f if line.strip()]
    if not texts:
        raise DataError(path, None, "file is empty: no text found")
    return texts


def train_tokenizer(args) -> int:
    """``minillm train-tokenizer``: learn a vocabulary, save tokenizer.json, show an example."""
    apply_smoke(args)
    if args.input:
        texts = [t for path in args.input for t in _read_texts(path)]
    else:
        n = 100 if smoke_mode() else 2000
        texts = pretraining_corpus(n) + [t for r in build_mixture(examples_per_task=n // 5)
                                         for t in (r.prompt, r.completion)]
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
    texts = _read_texts(args.text) if args.text else pretraining_corpus(args.num_documents, seed=args.seed)
    model, tokenizer = model_and_tokenizer(args, lambda: texts)
    if tokenizer.num_sentinels == 0:
        raise ValueError("the tokenizer has no sentinel tokens (<extra_id_N>), which span corruption needs")
    pairs = span_corruption_pairs(texts, tokenizer, args.chunk_length, args.noise_density,
                                  args.mean_span_length, seed=args.seed)
    n_eval = max(1, len(pairs) // 20)  # 5% held out for the eval loss
    if len(pairs) < 2:
        raise ValueError(f"only {len(pairs)} pretraining examples: give more text")
    train = Batcher(pairs[n_eval:], args.batch_size, shuffle=True, seed=args.seed, pad_id=tokenizer.pad_token_id)
    held_out = Batcher(pairs[:n_eval], args.eval_batch_size, shuffle=False, pad_id=tokenizer.pad_token_id)
    write_run_config(args, args.out)
    print(f"pretraining on {len(pairs) - n_eval} span-corruption examples of {args.chunk_length} tokens")
    trainer = Trainer(model, tokenizer, training_arguments(args, args.out, metric_for_best="eval_loss"),
                      train, eval_data=held_out)
    _report(trainer.train(resume_from=args.resume), args.out)
    return 0


def _finetune_data(args):
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
    train, held_out = _finetune_data(args)
    model, tokenizer = model_and_tokenizer(args, lambda: [t for r in train for t in (r.prompt, r.completion)])
    write_run_config(args, args.out)
    if args.method != "full":
        from .peft_options import apply_peft  # noqa: PLC0415

        model.save_pretrained(args.out)  # the frozen base, so the run directory is self-contained
        model = apply_peft(model, args, tokenizer)
        model.print_trainable_parameters()
    overrides = {} if held_out is not None else {"eval_every": 0}
    trainer = Trainer(model, tokenizer, training_arguments(args, args.out, **overrides), train, eval_data=held_out)
    print(f"fine-tuning ({args.method}) on {len(train)} examples; {trainer.train_batches.stats}")
    _report(trainer.train(resume_from=args.resume), args.out)
    return 0


def add_builtin_evaluate_arguments(parser) -> None:
    """Options of the built-in ``evaluate`` (used when ``minillm.evaluation`` is not installed)."""
    parser.add_argument("--model", required=True, metavar="DIR", help="run directory or Hugging Face folder")
    parser.add_argument("--tokenizer", metavar="PATH", help="tokenizer.json (default: the model's)")
    parser.add_argument("--data", metavar="FILE", help=".jsonl/.csv prompt/completion data (default: built-in tasks)")
    parser.add_argument("--tasks", default=",".join(DEFAULT_MIXTURE), help="built-in tasks (comma-separated)")
    parser.add_argument("--split", default="test", choices=("train", "validation", "test"))
    parser.add_argument("--num-examples", type=int, default=50, help="examples per built-in task")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", metavar="FILE", help="also write the results as JSON here")


def evaluate(args) -> int:
    """Built-in ``minillm evaluate``: eval loss and each task's metric on held-out examples."""
    apply_smoke(args)
    model, tokenizer = load_model(args.model, args.tokenizer)
    if args.data:
        records = list(load_prompt_completion(args.data))
    else:
        tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
        records = build_mixture(tasks, args.num_examples, split=args.split, seed=args.seed, template_id=0)
    results = evaluate_model(model, tokenizer, records, max_new_tokens=args.max_new_tokens,
                             batch_size=args.batch_size)
    for key, value in results.items():
        print(f"{key:32s} {value:.4f}")
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
    return 0


def generate(args) -> int:
    """``minillm generate``: answer --prompt(s), or each line typed on stdin."""
    apply_smoke(args)
    model, tokenizer = load_model(args.model, args.tokenizer)

    def answer(prompt: str) -> str:
        encoded = tokenizer.batch_encode([prompt.replace("\\n", "\n")])
        tokens = model.generate(encoded["input_ids"], encoded["attention_mask"], max_new_tokens=args.max_new_tokens,
                                num_beams=args.num_beams, do_sample=args.do_sample, temperature=args.temperature,
                                top_k=args.top_k, top_p=args.top_p, seed=args.seed)
        return tokenizer.decode(backend.to_device(tokens, "cpu")[0, 1:]).strip()

    if args.prompt:
        for prompt in args.prompt:
            print(answer(prompt))
        return 0
    interactive = sys.stdin.isatty()
    if interactive:
        print("Type a prompt and press Enter (write \\n for a line break; Ctrl-D or an empty line quits).")
    while True:
        if interactive:
            print("> ", end="", flush=True)
        line = sys.stdin.readline()
        if not line or not line.strip():
            return 0
        print(answer(line.rstrip("\n")), flush=True)


def convert(args) -> int:
    """``minillm convert``: a run directory to a Hugging Face folder, or back."""
    if not args.out or not (args.to_hf or args.from_hf):
        raise ValueError("convert needs --to-hf RUN_DIR or --from-hf HF_DIR, and --out DIR")
    source = args.to_hf or args.from_hf
    if args.best:
        if not args.to_hf:
            raise ValueError("--best goes with --to-hf")
        best = os.path.join(source, "best")
        if os.path.isfile(os.path.join(best, "config.json")):
            model, tokenizer = load_model(best, tokenizer_path=source)
        else:  # a PEFT run keeps only the best adapter; the base model is the run's
            model, tokenizer = load_model(source, adapter_dir=best)
    else:
        model, tokenizer = load_model(source)
    if args.to_hf and hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()  # LoRA/selective folded into plain T5 weights (others raise)
    model.save_pretrained(args.out)       # config.json + model.safetensors (tied weights stored once)
    tokenizer.save(args.out)              # tokenizer.json + tokenizer_config.json
    if args.from_hf:
        write_run_config(args, args.out)
    print(f"wrote {args.out}: config.json, model.safetensors, tokenizer.json "
          f"({'Hugging Face folder' if args.to_hf else 'minillm run directory'})")
    return 0
