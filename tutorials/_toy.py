"""The course base that tutorials 04-09 start from, and the helpers they share.

Tutorials 04-09 start from the **course base** (``minillm.course``): a T5 pretrained with span
corruption and instruction-tuned FLAN-style on the held-in tasks, as FLAN-T5 is for the course this
project follows. ``load_course_base`` asks ``minillm.course.ensure_base()`` for it: the first call
builds it into the user cache (it says so, with the build's time, before it starts), every later
call loads it. Tutorial 03 shows how it is made, running the same recipe at a small scale. In smoke
mode (``MINILLM_SMOKE=1``) the same call gives the recipe's seconds-fast stand-in (its own cache
key), so smoke and full mode run the same code.

This file is shared by the tutorials; it is not part of the library.
"""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from minillm import course
from minillm.data import Batcher, Tokenizer
from minillm.models import T5ForConditionalGeneration
from minillm.optim import AdamW
from minillm.training.trainer import TrainingArguments

MAX_SOURCE_LENGTH, MAX_TARGET_LENGTH = 192, 32


def load_course_base(smoke: bool, echo=print):
    """The course base: ``(model, tokenizer, info)``, built into the cache first if it is missing.

    ``info`` says where it came from: ``{"source": "course base", "folder", "smoke", "parameters",
    "card_verdict"}`` (the model card's sentence on the held-in tasks).
    """
    folder = course.ensure_base(smoke=smoke, echo=echo, progress=not smoke)
    model = T5ForConditionalGeneration.from_pretrained(folder).eval()
    tokenizer = Tokenizer.from_pretrained(str(folder))
    card = json.loads((Path(folder) / "card.json").read_text(encoding="utf-8"))
    echo(f"the course base{' (smoke stand-in)' if smoke else ''}: {card['parameters']:,} parameters, from {folder}")
    echo(f"its model card: {card['verdict']}")
    return model, tokenizer, {"source": "course base", "folder": str(folder), "smoke": smoke,
                              "parameters": card["parameters"], "card_verdict": card["verdict"]}


def toy_training_args(output_dir, max_steps: int, learning_rate: float = 3e-3, **overrides) -> TrainingArguments:
    """The TrainingArguments every tutorial run shares (AdamW, warmup then linear decay, no progress bar)."""
    values = dict(output_dir=str(output_dir), max_steps=max_steps, batch_size=32, learning_rate=learning_rate,
                  lr_schedule="linear", warmup_steps=min(50, max_steps // 10), weight_decay=0.0, max_grad_norm=1.0,
                  log_every=max(1, max_steps // 40), seed=0, max_source_length=MAX_SOURCE_LENGTH,
                  max_target_length=MAX_TARGET_LENGTH, eval_max_new_tokens=MAX_TARGET_LENGTH, progress=False)
    return TrainingArguments(**{**values, **overrides})


def train_loop(model, pairs, steps: int, lr: float, batch_size: int, seed: int = 1) -> dict:
    """Tutorial 02's plain loop: AdamW on the parameters that require a gradient, for ``steps`` steps.

    Returns the losses, the median step time (ms), the optimizer-state bytes and the trainable count,
    which tutorials 07 and 08 compare across fine-tuning methods.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = AdamW(params, lr=lr, weight_decay=0.0)
    batcher, losses, step_s = Batcher(pairs, batch_size=batch_size, seed=seed), [], []
    model.train()
    while len(losses) < steps:
        batcher.set_epoch(len(losses) // len(batcher))
        for batch in batcher:
            t0 = time.perf_counter()
            loss = model(**batch).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step_s.append(time.perf_counter() - t0)
            losses.append(loss.item())
            if len(losses) == steps:
                break
    model.eval()
    state_bytes = sum(v.nbytes for st in optimizer.state.values() for v in st.values() if hasattr(v, "nbytes"))
    return {"losses": losses, "step_ms": 1e3 * statistics.median(step_s), "optimizer_bytes": int(state_bytes),
            "trainable": int(sum(p.size for p in params))}


def constant_answer_scores(eval_tasks: dict, n_train: int = 2000, seed: int = 0) -> dict:
    """{task: score} when every answer is the task's most frequent *training* target ("chance").

    That is the majority class for sentiment, the commonest number for arithmetic, one fixed
    sentence for translation: a model must beat this level before "it knows the task" (or "it
    forgot the task") means anything. Scored by the same harness and metric as the model.
    """
    from collections import Counter  # noqa: PLC0415

    from minillm.data import get_task  # noqa: PLC0415
    from minillm.evaluation import score_task  # noqa: PLC0415
    from minillm.evaluation.harness import TaskOutput, build_prompts  # noqa: PLC0415

    levels = {}
    for name, task in eval_tasks.items():
        counts = Counter(ex["target"] for ex in get_task(name).examples("train", n_train, seed))
        answer = min(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0]
        prompts, targets = build_prompts(task, 0, seed, task.examples)
        output = TaskOutput(prompts, targets, [answer] * len(targets))
        levels[name] = score_task(task, output, n_bootstrap=2)[0].value
    return levels
