"""``minillm quickstart``: instruction-tune a toy T5 from scratch in a few minutes on a CPU.

What it does, in the order a course would teach it:

1. builds a FLAN-style multitask mixture of the built-in tasks (``data.build_mixture`` over
   ``DEFAULT_MIXTURE``: dialogue summarization, translation, sentiment, paraphrase, arithmetic);
2. trains a tokenizer on the training text (train split only);
3. creates a small randomly initialized T5 and scores it on held-out test examples ("before");
4. trains it with ``Trainer`` (AdamW, warmup then linear decay);
5. scores it again on the same test examples ("after") and prints a before/after table with each
   task's metric (ROUGE for summaries, BLEU for translations, accuracy for labels, exact match
   for numbers), plus a few generations.

The test examples come from the tasks' *test* split, whose inputs never occur in training, so
the table measures generalization, not memory. Everything is written to a run directory.

``MINILLM_SMOKE=1`` shrinks everything (model, data, steps) so the command runs in seconds.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import time
from dataclasses import dataclass, field

from .. import backend
from ..data import DEFAULT_MIXTURE, Batcher, Record, Tokenizer, build_mixture, pretraining_corpus
from ..data.task_levels import parse_levels, task_variant
from ..data.templates import format_example
from ..evaluation.constant_answer import compare_with_constant, constant_answer
from ..evaluation.held_out import evaluate_model
from ..evaluation.scoring import score_predictions
from ..models import T5Config, T5ForConditionalGeneration
from ..training.interrupt import interrupt_after
from ..training.trainer import Trainer, TrainingArguments
from ..files import atomic_write_text
from .folders import check_run_dir, lock_run_dir, run_started
from .options import add_common_arguments, add_field_flag, add_training_arguments
from .smoke import smoke_mode
from .train import begin_writing

# The headline metrics of the table: (task, result key, label); BLEU is on a 0-100 scale.
TABLE_ROWS = [
    ("dialogue_summary", "rouge1", "summarization ROUGE-1"),
    ("dialogue_summary", "rouge2", "summarization ROUGE-2"),
    ("dialogue_summary", "rougeL", "summarization ROUGE-L"),
    ("translation", "bleu", "translation BLEU"),
    ("sentiment", "accuracy", "sentiment accuracy"),
    ("paraphrase", "accuracy", "paraphrase accuracy"),
    ("arithmetic", "accuracy", "arithmetic exact match"),
]
# Each task's one headline score, judged against its constant answer by ``verdict``, and the
# per-example metric of ``evaluation.constant_answer`` that judges it.
TABLE_HEADLINE = [(task, key) for task, key, _ in TABLE_ROWS if key not in ("rouge1", "rouge2")]
RULE_METRIC = {"rougeL": "rouge", "bleu": "bleu", "accuracy": "accuracy"}


# The quickstart's training recipe: AdamW, warmup then linear decay to 0, clipping at 1, the best
# model by the mean task score. ``quickstart_training`` adds a checkpoint at each evaluation and 50
# log lines per run.
QUICKSTART_TRAINING = dict(output_dir="runs/quickstart", max_steps=2200, batch_size=32, learning_rate=2e-3,
                           lr_schedule="linear", warmup_steps=200, weight_decay=0.0, max_grad_norm=1.0,
                           eval_every=1200, max_source_length=96, max_target_length=32, eval_max_new_tokens=32,
                           eval_batch_size=64, metric_for_best="score")


def quickstart_training(**changes) -> TrainingArguments:
    """The quickstart's ``TrainingArguments`` (``QUICKSTART_TRAINING``) with ``changes``.

    Unless ``changes`` sets them, a checkpoint is saved at every evaluation (``save_every`` =
    ``eval_every``) and a log line written 50 times per run (``log_every`` = ``max_steps // 50``).
    """
    values = {**QUICKSTART_TRAINING, **changes}
    values.setdefault("save_every", values["eval_every"])
    values.setdefault("log_every", max(1, values["max_steps"] // 50))
    return TrainingArguments(**values)


@dataclass
class QuickstartConfig:
    """The data, the model and the training of the quickstart, chosen by the measurements in
    ``docs/quickstart.md``; the training is a ``TrainingArguments`` (``training``).

    The loss is a mean over target *tokens*, so a task's pull on the weights is its share of the
    target tokens, not of the examples: a summary has about 15 target tokens, a label 2. The
    ``mixture_weights`` multiply each task's number of training examples so that the short-answer
    tasks are not drowned out (examples-proportional mixing then gives each task that share of
    every batch).

    Three tasks are trained and scored at easier, labelled levels (``task_levels``, see
    ``data/task_levels.py``; the table prints the level after the metric): sentiment without
    "was not <adjective>" and "..., but ..." reviews, paraphrase pairs that differ in every
    detail or none, and arithmetic as word problems with numbers up to 10. ``--task-levels ""``
    runs the full tasks.

    The learning rate is 2e-3 after 200 warmup steps: at 3e-3 after 50 the gradient norm spiked
    and each task was learned at a step that varied from seed to seed (``docs/quickstart.md``).

    Args:
        output_dir: the run directory (``training.output_dir`` is set to it).
        seed: seeds the data, the model's initialization and dropout (``training.seed`` is set to it).
        examples_per_task: training examples of each task (before its mixture weight).
        mixture_weights: "task=w,task=w": task ``t`` gets ``w * examples_per_task`` training
            examples; tasks not named get weight 1.
        task_levels: "task=level,...": easier levels of tasks (``data.task_levels``), shown beside
            the task's row in the table; "" trains and scores every task at its full level.
        test_examples_per_task: held-out test examples per task in the before/after table.
        vocab_size: tokenizer size.
        d_model / d_ff / num_layers / num_heads: the T5's width, feed-forward width, blocks per
            stack and attention heads.
        dropout_rate: 0 here: so short a run underfits rather than overfits.
        bucket_pool: the Batcher sorts examples by length inside pools of this many batches (less
            padding). The tasks differ in length, so large pools make nearly single-task batches,
            and then each step pulls the shared weights towards one task; 1 keeps batches mixed.
        num_samples: generations shown at the end.
        training: steps, batch size, learning rate and schedule, evaluation, token limits
            (``quickstart_training()``); the periodic evaluation scores the validation split
            and keeps the best model in ``best/``, the table scores the final weights.
    """

    output_dir: str = "runs/quickstart"
    seed: int = 0
    examples_per_task: int = 4000
    mixture_weights: str = "dialogue_summary=1.5,translation=2.5,sentiment=0.75,paraphrase=2,arithmetic=1.5"
    task_levels: str = "sentiment=plain,paraphrase=all_changed,arithmetic=word_small"
    test_examples_per_task: int = 32
    vocab_size: int = 1000
    d_model: int = 128
    d_ff: int = 512
    num_layers: int = 2
    num_heads: int = 4
    dropout_rate: float = 0.0
    bucket_pool: int = 20
    num_samples: int = 5
    training: TrainingArguments = field(default_factory=quickstart_training)

    def __post_init__(self):
        """One run directory and one seed: the training's are the quickstart's."""
        self.training = dataclasses.replace(self.training, output_dir=self.output_dir, seed=self.seed)

    @property
    def max_steps(self) -> int:
        """Optimizer steps of the run (``training.max_steps``)."""
        return self.training.max_steps

    @classmethod
    def smoke(cls, **overrides) -> "QuickstartConfig":
        """A configuration that runs in seconds (for tests and ``MINILLM_SMOKE=1``); ``overrides`` may
        name fields of the quickstart or of its ``TrainingArguments``."""
        tiny = dict(examples_per_task=40, test_examples_per_task=4, vocab_size=300, d_model=32, d_ff=64,
                    num_layers=1, num_heads=2, num_samples=2)
        tiny_training = dict(max_steps=4, batch_size=8, warmup_steps=1, eval_every=2, max_source_length=64,
                             max_target_length=16, eval_max_new_tokens=8)
        own = {f.name for f in dataclasses.fields(cls)}
        training = {k: v for k, v in overrides.items() if k not in own}
        mine = {k: v for k, v in overrides.items() if k in own}
        return cls(**{**tiny, **mine}, training=quickstart_training(**{**tiny_training, **training}))


def task_sizes(config: QuickstartConfig) -> dict[str, int]:
    """Training examples of each task: ``examples_per_task`` times its weight in ``mixture_weights``."""
    weights = {name: 1.0 for name in DEFAULT_MIXTURE}
    for item in filter(None, (part.strip() for part in config.mixture_weights.split(","))):
        name, sep, value = item.partition("=")
        if not sep or name.strip() not in weights:
            raise ValueError(f"mixture_weights: expected 'task=weight' with a task among {DEFAULT_MIXTURE}, "
                             f"got {item!r}")
        weights[name.strip()] = float(value)
    return {name: max(1, round(config.examples_per_task * w)) for name, w in weights.items()}


def constant_baseline(train: list[Record], test: list[Record]) -> dict:
    """Each task's score when every answer is that task's most frequent training completion.

    That is the majority class for sentiment and paraphrase, the commonest number for arithmetic,
    and for summaries and translations what a model scores by emitting one fixed sentence in the
    right style: the level below which "it learned the task" is not shown.
    """
    commonest = {task: constant_answer([r.completion for r in train if r.task == task])
                 for task in {r.task for r in test}}
    return score_predictions([commonest[r.task] for r in test], test)


def kept_in(predictions: list):
    """The default metric, keeping the generated texts in ``predictions`` for ``verdict`` (generated once)."""
    def metric(generated: list[str], records) -> dict:
        predictions[:] = generated
        return score_predictions(generated, records)
    return metric


def verdict(train: list[Record], test: list[Record], predictions: list[str]) -> str:
    """One sentence, computed from the test predictions: the tasks the trained model beats its
    constant answer on, and those it does not.

    The rule is the model card's (``evaluation.constant_answer``): each task's headline score
    (``TABLE_HEADLINE``) must beat the constant answer's on the same test examples by more than
    two standard errors of the paired difference.
    """
    learned, missed = [], []
    for task, key in TABLE_HEADLINE:
        chosen = [(p, r) for p, r in zip(predictions, test) if r.task == task]
        if not chosen:
            continue
        constant = constant_answer([r.completion for r in train if r.task == task])
        row = compare_with_constant(RULE_METRIC[key], [p for p, _ in chosen], constant,
                                    [r.completion for _, r in chosen])
        (learned if row["beats"] else missed).append((task, row))
    text = (f"Better than the constant answer on {len(learned)} of {len(learned) + len(missed)} tasks "
            f"(by more than two standard errors of the difference)")
    if learned:
        text += ": " + ", ".join(task for task, _ in learned)
    if missed:
        text += "; not on " + ", ".join(f"{task} ({r['value']:.3g} against {r['constant']:.3g}, margin "
                                        f"{r['margin']:.2g} ± {r['margin_stderr']:.2g})" for task, r in missed)
    return text + "."


def mixture_tasks(config: QuickstartConfig) -> list:
    """The Task objects of ``DEFAULT_MIXTURE``, each at its level from ``config.task_levels``."""
    levels = parse_levels(config.task_levels)
    unknown = set(levels) - set(DEFAULT_MIXTURE)
    if unknown:
        raise ValueError(f"task_levels: {sorted(unknown)} not in the quickstart's tasks {DEFAULT_MIXTURE}")
    return [task_variant(name, levels.get(name)) for name in DEFAULT_MIXTURE]


def held_out_records(config: QuickstartConfig, tasks: list | None = None) -> list[Record]:
    """Held-out examples of every task, each rendered with a (seeded) random instruction template.

    ``tasks``: the Task objects to draw from; default the full ``DEFAULT_MIXTURE`` tasks (the
    quickstart passes ``mixture_tasks(config)``, its tasks at their levels).
    """
    rng = random.Random(f"quickstart-test|{config.seed}")
    records = []
    for task in tasks or [task_variant(name) for name in DEFAULT_MIXTURE]:
        for example in task.examples("test", config.test_examples_per_task, config.seed):
            prompt, completion = format_example(task, example, rng=rng)
            records.append(Record(prompt, completion, task.name))
    return records


def format_table(before: dict, after: dict, baseline: dict | None = None, levels: dict | None = None) -> str:
    """The before/after table as Markdown (fractions for ROUGE and accuracy, 0-100 for BLEU).

    With ``baseline`` (see ``constant_baseline``) a first column shows the constant-answer level;
    ``levels`` ({task: level}) names an easier task level after the metric, e.g. "(plain)".
    """
    head = "| metric (test split)          |" + (" constant answer |" if baseline is not None else "")
    lines = [head + " before | after |", "|---|" + ("---:|" if baseline is not None else "") + "---:|---:|"]
    for task, key, label in TABLE_ROWS:
        name = f"{task}/{key}"
        if name in before or name in after:
            fmt = "{:.1f}" if key == "bleu" else "{:.3f}"
            cells = [baseline.get(name, float("nan"))] if baseline is not None else []
            cells += [before.get(name, float("nan")), after.get(name, float("nan"))]
            label += f" ({levels[task]})" if levels and task in levels else ""
            lines.append(f"| {label:<28} | " + " | ".join(fmt.format(c) for c in cells) + " |")
    return "\n".join(lines)


def run_quickstart(config: QuickstartConfig | None = None, echo=print) -> dict:
    """Run the quickstart (see the module docstring); returns the scores and the run directory.

    Args:
        config: sizes; default ``QuickstartConfig()``, or ``QuickstartConfig.smoke()`` under
            ``MINILLM_SMOKE=1``.
        echo: where progress text goes (``print`` by default).

    Returns:
        ``{"before": {...}, "after": {...}, "table": str, "samples": [...], "output_dir": str,
        "seconds": float}``.
    """
    config = config or (QuickstartConfig.smoke() if smoke_mode() else QuickstartConfig())
    started = time.perf_counter()
    backend.manual_seed(config.seed)
    out = config.output_dir
    os.makedirs(out, exist_ok=True)
    atomic_write_text(os.path.join(out, "quickstart_config.json"), json.dumps(dataclasses.asdict(config), indent=2))
    train, validation, test, levels = quickstart_data(config, echo)
    echo(f"[2/5] training a BPE tokenizer (vocab {config.vocab_size}) on the training text")
    texts = pretraining_corpus(500, seed=config.seed) + [t for r in train for t in (r.prompt, r.completion)]
    with interrupt_after("the tokenizer's training"):  # the library would not see Ctrl-C
        tokenizer = Tokenizer.train(texts, vocab_size=config.vocab_size, num_sentinels=32)
    trainer = quickstart_trainer(config, tokenizer, train, validation)
    n_params = sum(p.size for p in trainer.model.parameters())
    echo(f"[3/5] scoring the untrained T5 ({n_params:,} parameters) on {len(test)} test examples")
    before = trainer.evaluate(test)  # all test records (the periodic eval uses the validation set)
    echo(f"[4/5] training for {config.max_steps} steps of {config.training.batch_size} examples")
    run_started(out)  # from here a checkpoint is written, and kept if the run is interrupted
    result = trainer.train()
    if result.interrupted:  # Ctrl-C or SIGTERM: the trainer saved a checkpoint; stop here, not score
        raise KeyboardInterrupt
    echo("[5/5] scoring the trained model on the same test examples")
    predictions = []
    after = evaluate_model(trainer.model, tokenizer, test, config.training.max_source_length,
                           config.training.max_target_length, config.training.eval_max_new_tokens,
                           config.training.eval_batch_size, metric=kept_in(predictions))
    shown = random.Random(config.seed).sample(test, min(config.num_samples, len(test)))
    samples = [{"task": r.task, "prompt": r.prompt, "reference": r.completion, "prediction": p}
               for r, p in zip(shown, trainer.predict([r.prompt for r in shown]))]
    baseline = constant_baseline(train, test)
    table = format_table(before, after, baseline, levels)
    seconds = time.perf_counter() - started
    sentence = verdict(train, test, predictions)
    summary = {"baseline": baseline, "before": before, "after": after, "table": table, "verdict": sentence,
               "samples": samples, "output_dir": out, "seconds": seconds, "steps": result.global_step}
    atomic_write_text(os.path.join(out, "results.json"), json.dumps(summary, indent=2))
    echo("\n" + table + "\n\n" + sentence + "\n")
    for s in samples:
        echo(f"[{s['task']}] {s['prompt']!r}\n    reference:  {s['reference']}\n    prediction: {s['prediction']}")
    echo(f"\ndone in {seconds:.0f} s; run directory: {out} (model, tokenizer, log.jsonl, loss_curve.png)")
    return summary


def quickstart_data(config: QuickstartConfig, echo=print) -> tuple[list, list, list, dict]:
    """Step 1 of the quickstart: (train, validation, test records, {task: easier level})."""
    sizes = task_sizes(config)
    echo(f"[1/5] building the instruction mixture: training examples per task {sizes}")
    tasks = mixture_tasks(config)
    levels = parse_levels(config.task_levels)
    if levels:
        echo("      easier levels: " + "; ".join(f"{t.name}: {t.description}" for t in tasks if t.name in levels))
    train = build_mixture(tasks, sizes, split="train", seed=config.seed)
    validation = build_mixture(tasks, max(4, config.test_examples_per_task // 2), split="validation",
                               seed=config.seed)
    return train, validation, held_out_records(config, tasks), levels


def quickstart_trainer(config: QuickstartConfig, tokenizer, train: list, validation: list) -> Trainer:
    """A new T5 of the config's size and its Trainer (the periodic evaluation scores all of ``validation``)."""
    model = T5ForConditionalGeneration(T5Config(
        vocab_size=tokenizer.vocab_size, d_model=config.d_model, d_kv=config.d_model // config.num_heads,
        d_ff=config.d_ff, num_layers=config.num_layers, num_heads=config.num_heads,
        dropout_rate=config.dropout_rate))
    args = dataclasses.replace(config.training, eval_num_examples=len(validation))
    batches = Batcher.from_records(train, tokenizer, args.batch_size, args.max_source_length,
                                   args.max_target_length, shuffle=True, seed=args.seed, bucket_pool=config.bucket_pool)
    return Trainer(model, tokenizer, args, batches, eval_data=validation)


# ---------------------------------------------------------------------------------- the command
# One flag per QuickstartConfig field (``--out`` is output_dir), with its help, and flags for the
# training arguments a quickstart user is likely to change (their help: ``options.TRAINING_FLAGS``).
QUICKSTART_FLAGS = {
    "seed": "seeds the data, the model's initialization and dropout",
    "examples_per_task": "training examples of each task (before its mixture weight)",
    "mixture_weights": "task=w,task=w: task t gets w x examples-per-task training examples; tasks not named get 1",
    "task_levels": "task=level,...: easier levels of tasks (data/task_levels.py); \"\" runs every task at its full "
                   "level",
    "test_examples_per_task": "held-out test examples per task in the before/after table",
    "vocab_size": "tokenizer size",
    "d_model": "the T5's width",
    "d_ff": "the T5's feed-forward width",
    "num_layers": "blocks per stack",
    "num_heads": "attention heads",
    "dropout_rate": "0 here: so short a run underfits rather than overfits",
    "bucket_pool": "the Batcher sorts examples by length inside pools of this many batches; 1 keeps batches "
                   "mixed",
    "num_samples": "generations shown at the end",
}
QUICKSTART_TRAINING_FLAGS = ("max_steps", "batch_size", "learning_rate", "warmup_steps", "eval_every",
                             "max_source_length", "max_target_length", "eval_max_new_tokens")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """The ``quickstart`` sub-command: a flag per ``QuickstartConfig`` field and per recipe setting."""
    p = subparsers.add_parser("quickstart", help="train a tokenizer and a toy T5 on the built-in instruction "
                              "mixture; print a before/after table")
    add_common_arguments(p, "runs/quickstart")
    p.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    group = p.add_argument_group("quickstart")
    defaults = dataclasses.asdict(QuickstartConfig())
    for name, text in QUICKSTART_FLAGS.items():
        add_field_flag(group, name, defaults[name], text)
    recipe = quickstart_training()
    add_training_arguments(p, "quickstart training", QUICKSTART_TRAINING_FLAGS,
                           **{name: getattr(recipe, name) for name in QUICKSTART_TRAINING_FLAGS})
    add_field_flag(group, "progress", recipe.progress, "show a progress bar")
    # The quickstart's matrices are small: one thread is about as fast on a quiet machine and many
    # times faster on a busy one.
    p.set_defaults(func=quickstart, threads=1)
    return p


def quickstart(args) -> int:
    """``minillm quickstart``: ``run_quickstart`` with the flags' configuration, in a checked run directory."""
    own = {name: getattr(args, name) for name in QUICKSTART_FLAGS}
    training = {name: getattr(args, name) for name in (*QUICKSTART_TRAINING_FLAGS, "progress")}
    config = (QuickstartConfig.smoke(output_dir=args.out, seed=args.seed, progress=args.progress) if smoke_mode()
              else QuickstartConfig(output_dir=args.out, **own, training=quickstart_training(**training)))
    lock_run_dir(args.out)  # held until the command ends: a second process on --out is refused
    check_run_dir(args.out, overwrite=args.overwrite, resumable=False)
    args.resume = None
    begin_writing(args)
    run_quickstart(config)
    return 0
