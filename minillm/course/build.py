"""Build the course base from a ``BaseRecipe``, in four phases that each keep their result:

    1. tokenizer   BPE on the pretraining text and the instruction mixture   -> tokenizer.json
    2. pretrain    span corruption on ``course_corpus`` (T5's objective)    -> pretrain/
    3. tune        FLAN-style instruction tuning on the held-in mixture      -> tune/
    4. card        every task against its constant answer on test examples  -> the model card

Each phase works in ``base-<key>.build/`` (see ``cache.py``). The two training phases save a
resumable checkpoint every ``save_every`` steps, and Ctrl-C saves one at once, so a rerun continues
from there; the Trainer's resume is exact, so an interrupted build ends with the same bytes as one
that never stopped. A finished phase leaves ``done.json`` and is skipped on a rerun. At the end the
base's files are written into ``base-<key>.tmp/`` and renamed to ``base-<key>/``.

Same bytes twice: the data, the tokenizer and the model's initialization are seeded, dropout is
0, and the build computes on ``recipe.threads`` threads (a product summed in another order on
another thread count can differ in its last bit, so bytes are promised per thread count).
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import time
from pathlib import Path

from tqdm.auto import tqdm

from .. import backend
from ..data import Batcher, Tokenizer, build_mixture, span_corruption_pairs
from ..data.corpus import course_corpus
from ..fast.threads import num_threads, set_num_threads
from ..files import atomic_write_text, read_json
from ..models import T5Config, T5ForConditionalGeneration
from ..training.trainer import Trainer, TrainingArguments
from . import card as model_card
from .cache import recipe_key, work_folder
from .recipe import FEW_SHOT_TASKS, BaseRecipe

# Relative cost of a unit of work (one instruction-tuning step = 1), what the progress bar advances
# by, so that its ETA holds across phases. Measured on the full recipe, one thread, in CPU seconds:
# a tuning step 0.361 s, a pretraining step 0.536 s (its 32 chunks are all 64 tokens long, where
# most prompts are shorter), the data and tokenizer about 15 s.
COST = {"tokenizer": 40.0, "pretrain": 1.5, "tune": 1.0, "card": 0.2}


class BuildInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped the build; what was done is kept and a rerun continues from it."""


class Progress:
    """One tqdm bar over the whole build, in units of ``COST``, so its ETA covers every phase."""

    def __init__(self, recipe: BaseRecipe, work: Path, enabled: bool):
        self.units = {"tokenizer": COST["tokenizer"], "pretrain": recipe.pretrain_steps * COST["pretrain"],
                      "tune": recipe.tune_steps * COST["tune"],
                      "card": card_examples_total(recipe) * COST["card"]}
        done = sum(self._done_units(phase, work) for phase in self.units)
        self.bar = tqdm(total=round(sum(self.units.values()), 1), initial=round(done, 1), disable=not enabled,
                        desc="building the course base", unit="work",
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining} {postfix}")

    def _done_units(self, phase: str, work: Path) -> float:
        """Units a previous run finished: whole phases, and a training phase up to its checkpoint."""
        if (work / phase / "done.json").is_file():
            return self.units[phase]
        state = work / phase / "checkpoint" / "trainer_state.json"
        return read_json(state).get("step", 0) * COST[phase] if state.is_file() else 0.0

    def advance(self, phase: str, amount: float = 1.0) -> None:
        """Advance by ``amount`` units of ``phase``'s work."""
        self.bar.set_postfix_str(phase, refresh=False)
        self.bar.update(amount * COST[phase])

    def close(self) -> None:
        self.bar.close()


def card_examples_total(recipe: BaseRecipe) -> int:
    """How many test examples the card generates answers for (held-in, held-out and new task)."""
    return recipe.card_examples * (len(recipe.held_in) + 2)


def _mark_done(folder: Path, info: dict) -> None:
    atomic_write_text(folder / "done.json", json.dumps(info, indent=2, sort_keys=True))


def instruction_mixture(recipe: BaseRecipe) -> list:
    """The held-in tasks with random FLAN templates, plus two-shot prompts of ``FEW_SHOT_TASKS``."""
    sizes = {name: max(1, round(recipe.examples_per_task * w)) for name, w in recipe.weights().items()}
    records = build_mixture(list(recipe.held_in), sizes, split="train", seed=recipe.seed)
    few = [t for t in FEW_SHOT_TASKS if t in recipe.held_in]
    if few and recipe.few_shot_examples:
        records += build_mixture(few, recipe.few_shot_examples, split="train", few_shot_fraction=1.0,
                                 num_shots=2, seed=recipe.seed + 1)
    return records


def build_tokenizer(recipe: BaseRecipe, work: Path, records: list) -> Tokenizer:
    """Phase 1: a BPE tokenizer on the pretraining text and the mixture's prompts and answers."""
    path = work / "tokenizer" / "tokenizer.json"
    if path.is_file():
        return Tokenizer.from_file(str(path))
    texts = course_corpus(recipe.corpus_documents, seed=recipe.seed)
    texts += [t for r in records for t in (r.prompt, r.completion)]
    tokenizer = Tokenizer.train(texts, vocab_size=recipe.vocab_size, num_sentinels=32)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.json")
    tokenizer.save(str(tmp))
    tmp.replace(path)
    return tokenizer


def model_config(recipe: BaseRecipe, tokenizer: Tokenizer) -> T5Config:
    """The T5's shape: ``recipe``'s sizes, no dropout (a short run underfits rather than overfits)."""
    return T5Config(vocab_size=tokenizer.vocab_size, d_model=recipe.d_model, d_kv=recipe.d_model // recipe.num_heads,
                    d_ff=recipe.d_ff, num_layers=recipe.num_layers, num_heads=recipe.num_heads, dropout_rate=0.0)


def _training_args(recipe: BaseRecipe, folder: Path, steps: int, lr: float, warmup: int) -> TrainingArguments:
    return TrainingArguments(
        output_dir=str(folder), max_steps=steps, batch_size=recipe.batch_size, learning_rate=lr,
        lr_schedule="linear", warmup_steps=warmup, weight_decay=0.0, max_grad_norm=1.0, eval_every=0,
        save_every=recipe.save_every, log_every=max(1, steps // 50), seed=recipe.seed,
        max_source_length=recipe.max_source_length, max_target_length=recipe.max_target_length,
        eval_max_new_tokens=recipe.max_target_length, progress=False)


def run_phase(phase: str, model, tokenizer, args: TrainingArguments, batches: Batcher, progress: Progress,
              callbacks=()) -> None:
    """Train one phase to its end (resuming its checkpoint), or raise BuildInterrupted on Ctrl-C."""
    folder = Path(args.output_dir)
    checkpoint = folder / "checkpoint"
    resume = str(checkpoint) if (checkpoint / "trainer_state.json").is_file() else None
    step_hook = lambda trainer, step, logs: progress.advance(phase)  # noqa: E731
    trainer = Trainer(model, tokenizer, args, batches, callbacks=[step_hook, *callbacks])
    started = time.perf_counter()
    result = trainer.train(resume_from=resume)
    if result.interrupted:
        raise BuildInterrupted(f"{phase} stopped at step {result.global_step} of {args.max_steps}")
    _mark_done(folder, {"steps": result.global_step, "train_loss": result.train_loss,
                        "seconds": time.perf_counter() - started})


def pretrain(recipe: BaseRecipe, work: Path, tokenizer: Tokenizer, progress: Progress, callbacks=()) -> None:
    """Phase 2: span corruption on ``course_corpus`` from a randomly initialized T5."""
    folder = work / "pretrain"
    if (folder / "done.json").is_file():
        return
    backend.manual_seed(recipe.seed)
    model = T5ForConditionalGeneration(model_config(recipe, tokenizer))
    pairs = span_corruption_pairs(course_corpus(recipe.corpus_documents, seed=recipe.seed), tokenizer,
                                  chunk_length=recipe.chunk_length, seed=recipe.seed)
    batches = Batcher(pairs, recipe.batch_size, shuffle=True, seed=recipe.seed)
    args = _training_args(recipe, folder, recipe.pretrain_steps, recipe.pretrain_learning_rate,
                          recipe.pretrain_warmup_steps)
    run_phase("pretrain", model, tokenizer, args, batches, progress, callbacks)


def tune(recipe: BaseRecipe, work: Path, tokenizer: Tokenizer, records: list, progress: Progress,
         callbacks=()) -> None:
    """Phase 3: instruction tuning of the pretrained weights on the held-in mixture."""
    folder = work / "tune"
    if (folder / "done.json").is_file():
        return
    model = T5ForConditionalGeneration.from_pretrained(work / "pretrain")
    batches = Batcher.from_records(records, tokenizer, recipe.batch_size, recipe.max_source_length,
                                   recipe.max_target_length, shuffle=True, seed=recipe.seed,
                                   bucket_pool=recipe.bucket_pool)
    args = _training_args(recipe, folder, recipe.tune_steps, recipe.tune_learning_rate, recipe.tune_warmup_steps)
    run_phase("tune", model, tokenizer, args, batches, progress, callbacks)


def build_base(recipe: BaseRecipe, folder: Path, echo=print, progress: bool = True, callbacks=(),
          smoke: bool = False) -> Path:
    """Build the base into ``folder`` (absent until the end), continuing what an earlier run kept.

    Args:
        callbacks: passed to both Trainers (``callback(trainer, step, logs)``); raising
            KeyboardInterrupt from one stops the build as Ctrl-C does (the tests do).

    Raises:
        BuildInterrupted: Ctrl-C; the work folder keeps what was done.
    """
    work = work_folder(folder)
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    previous_threads = num_threads()
    set_num_threads(recipe.threads)
    bar = Progress(recipe, work, progress)
    try:
        records = instruction_mixture(recipe)
        tokenizer = build_tokenizer(recipe, work, records)
        if not (work / "tokenizer" / "done.json").is_file():
            _mark_done(work / "tokenizer", {"vocab_size": tokenizer.vocab_size})
            bar.advance("tokenizer")
        pretrain(recipe, work, tokenizer, bar, callbacks)
        tune(recipe, work, tokenizer, records, bar, callbacks)
        model = T5ForConditionalGeneration.from_pretrained(work / "tune")
        rows = model_card.score_tasks(model, tokenizer, recipe, records, lambda n: bar.advance("card", n))
    except KeyboardInterrupt as stop:
        bar.close()
        seconds = time.perf_counter() - started + _earlier_seconds(work)
        atomic_write_text(work / "seconds.json", json.dumps({"seconds": seconds}))
        echo(f"interrupted ({stop}); what is done is kept in {work}: run the build again to continue")
        raise BuildInterrupted(str(stop)) from None
    finally:
        bar.close()
        set_num_threads(previous_threads if previous_threads > 1 else None)
    seconds = time.perf_counter() - started + _earlier_seconds(work)
    write_base(folder, model, tokenizer, recipe, rows, seconds, smoke, work)
    shutil.rmtree(work, ignore_errors=True)
    return folder


def _earlier_seconds(work: Path) -> float:
    """Wall seconds that interrupted runs spent on this build (kept in ``seconds.json``)."""
    path = work / "seconds.json"
    return float(read_json(path).get("seconds", 0.0)) if path.is_file() else 0.0


def write_base(folder: Path, model, tokenizer: Tokenizer, recipe: BaseRecipe, rows: list, seconds: float,
               smoke: bool, work: Path) -> None:
    """Write the finished base into ``<folder>.tmp`` and rename it to ``folder`` (whole or absent).

    ``card.json`` holds the card's numbers (the same bytes every build); ``README.md`` adds the
    wall time of this build, which is the one thing that differs between two builds, and the
    training logs (``pretrain_log.jsonl``, ``tune_log.jsonl``: losses, and tokens per second).
    """
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp)
    tokenizer.save(str(tmp))
    card = {"key": recipe_key(recipe), "smoke": smoke, "parameters": int(sum(p.size for p in model.parameters())),
            "vocab_size": tokenizer.vocab_size, "tasks": rows, "verdict": model_card.verdict(rows)}
    (tmp / "card.json").write_text(json.dumps(card, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    (tmp / "recipe.json").write_text(json.dumps(recipe.hashed_fields(), indent=2, sort_keys=True) + "\n",
                                     encoding="utf-8")
    machine = f"{os.cpu_count()} CPU cores ({platform.machine()})"
    phases = {}
    for phase in ("pretrain", "tune"):
        phases[phase] = read_json(work / phase / "done.json").get("seconds", 0.0)
        shutil.copyfile(work / phase / "log.jsonl", tmp / f"{phase}_log.jsonl")
    readme = model_card.render_card({**card, "build_seconds": seconds, "machine": machine, "phases": phases}, recipe)
    (tmp / "README.md").write_text(readme, encoding="utf-8")
    if folder.exists():  # only a broken leftover can be here: the caller holds the lock and found none
        shutil.rmtree(folder)
    os.replace(tmp, folder)
