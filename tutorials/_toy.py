"""The toy T5 that tutorials 04, 05, 06 and 09 start from, and the recipe tutorial 03 uses to make it.

Tutorial 03 trains a tokenizer, pretrains a small T5 with span corruption and fine-tunes it on the
FLAN-style multitask mixture, then saves model and tokenizer to
``<output root>/03_train_toy_t5/model/`` (``save_pretrained`` files plus ``tokenizer.json``).
The later tutorials call ``load_toy_t5``, which loads that folder if it is there. If it is not
(you opened tutorial 05 first, or the tests run every tutorial in a fresh folder), it trains a
*stand-in* on the spot with the same recipe, minus pretraining and with fewer steps (it prints how
long that took; seconds in smoke mode). A model that 03 trained in smoke mode is ignored by a
full-mode run (it is too small to be worth prompting), and the stand-in says so.

This file is shared by the tutorials; it is not part of the library.
"""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from minillm.data import DEFAULT_MIXTURE, Batcher, Tokenizer, build_mixture, pretraining_corpus
from minillm.models import T5Config, T5ForConditionalGeneration
from minillm.optim import AdamW
from minillm.training.trainer import Trainer, TrainingArguments

FEW_SHOT_TASKS = ["translation", "sentiment", "arithmetic"]  # short inputs: 2 shots still fit
MAX_SOURCE_LENGTH, MAX_TARGET_LENGTH = 192, 32


def toy_model_dir(out_root) -> Path:
    """Where tutorial 03 saves its model: ``<out_root>/03_train_toy_t5/model``."""
    return Path(out_root) / "03_train_toy_t5" / "model"


def toy_mixture(examples_per_task: int, seed: int = 0, split: str = "train") -> list:
    """The instruction mixture: every DEFAULT_MIXTURE task (translation 3x, the old quickstart weighting)
    with random FLAN templates, plus a quarter as many 2-shot prompts of the short tasks, so the
    model has seen solved examples in front of a question (FLAN mixes zero- and few-shot)."""
    sizes = {name: examples_per_task * (3 if name == "translation" else 1) for name in DEFAULT_MIXTURE}
    zero_shot = build_mixture(DEFAULT_MIXTURE, sizes, split=split, seed=seed)
    few_shot = build_mixture(FEW_SHOT_TASKS, max(4, examples_per_task // 4), split=split, few_shot_fraction=1.0,
                             num_shots=2, seed=seed + 1)
    return zero_shot + few_shot


def train_toy_tokenizer(records, vocab_size: int, seed: int = 0) -> Tokenizer:
    """A BPE tokenizer trained on plain text plus the training prompts and completions only."""
    texts = pretraining_corpus(1000, seed=seed) + [t for r in records for t in (r.prompt, r.completion)]
    return Tokenizer.train(texts, vocab_size=vocab_size, num_sentinels=32)


def toy_config(tokenizer: Tokenizer, smoke: bool) -> T5Config:
    """2+2 layers, d_model 128 (the quickstart's size); 1+1 layers, d_model 32 in smoke mode."""
    d_model, d_ff, layers = (32, 64, 1) if smoke else (128, 512, 2)
    return T5Config(vocab_size=tokenizer.vocab_size, d_model=d_model, d_kv=d_model // 4, d_ff=d_ff,
                    num_layers=layers, num_heads=4, dropout_rate=0.0)


def toy_training_args(output_dir, max_steps: int, learning_rate: float = 3e-3, **overrides) -> TrainingArguments:
    """The TrainingArguments every toy run shares (AdamW, warmup then linear decay, no progress bar)."""
    values = dict(output_dir=str(output_dir), max_steps=max_steps, batch_size=32, learning_rate=learning_rate,
                  lr_schedule="linear", warmup_steps=min(50, max_steps // 10), weight_decay=0.0, max_grad_norm=1.0,
                  log_every=max(1, max_steps // 40), seed=0, max_source_length=MAX_SOURCE_LENGTH,
                  max_target_length=MAX_TARGET_LENGTH, eval_max_new_tokens=MAX_TARGET_LENGTH, progress=False)
    return TrainingArguments(**{**values, **overrides})


def load_toy_t5(out_root, smoke: bool, echo=print):
    """The toy T5 of tutorial 03 if it was saved under ``out_root``, else a freshly trained stand-in.

    Returns:
        (model, tokenizer, info) where info says where the model came from
        (``{"source": "tutorial 03" | "stand-in", "smoke": bool, ...}``).
    """
    folder = toy_model_dir(out_root)
    info_file = folder / "toy_info.json"
    if (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file() and info_file.is_file():
        info = json.loads(info_file.read_text())
        if smoke or not info.get("smoke"):
            echo(f"loaded the toy T5 that tutorial 03 saved in {folder}")
            model = T5ForConditionalGeneration.from_pretrained(folder)
            return model.eval(), Tokenizer.from_pretrained(str(folder)), {**info, "source": "tutorial 03"}
        echo(f"{folder} holds a smoke-mode model; training a full-size stand-in instead")
    started = time.perf_counter()
    steps = 8 if smoke else 600
    records = toy_mixture(40 if smoke else 1500)
    tokenizer = train_toy_tokenizer(records, vocab_size=400 if smoke else 1600)
    model = T5ForConditionalGeneration(toy_config(tokenizer, smoke))
    echo(f"no saved toy T5 in {folder} (run tutorial 03 to make one); training a stand-in for {steps} steps ...")
    run_dir = Path(out_root) / "_toy_stand_in"
    Trainer(model, tokenizer, toy_training_args(run_dir, steps), records).train()
    seconds = time.perf_counter() - started
    echo(f"stand-in trained in {seconds:.0f} s")
    return model.eval(), tokenizer, {"source": "stand-in", "smoke": smoke, "steps": steps, "seconds": seconds}


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
