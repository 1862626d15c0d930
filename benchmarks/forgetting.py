"""Catastrophic forgetting, measured: full fine-tuning vs multitask fine-tuning vs LoRA.

The course notes' claim, as an experiment:

    "fine-tuning on a single task ... catastrophic forgetting: forget other tasks.
     Solution: multitask fine-tuning, or parameter-efficient fine-tuning (PEFT)."

1. Train a small multitask base T5 from scratch on tasks A, B, C (translation, sentiment,
   arithmetic: all from DEFAULT_MIXTURE).
2. Adapt a copy of it (same weights, via load_state_dict) to the held-out task D (antonym,
   from HELD_OUT_TASKS) in three ways, with the same number of steps:
     full         every weight trains on D only
     multitask    every weight trains on D mixed with A, B and C (replay of the old tasks)
     LoRA         the base is frozen; rank-8 matrices on q and v train on D
   and score LoRA twice: adapter on, and adapter off (`disable_adapter()`).
3. Score A, B, C, D after each arm and print the gain on D, the drop on A, B, C, and the
   backward transfer BWT = mean over A, B, C of (score after - score of the base).

Expected: full fine-tuning forgets (large drops), multitask and LoRA far less, and LoRA with
the adapter off is the base model itself, so its drop is exactly zero. LoRA trains at a higher
learning rate (1e-2) than full fine-tuning (1e-3): with B = 0 at the start and only r (d_in + d_out)
numbers per matrix it moves slowly at full fine-tuning's rate (tutorials/07_lora.py shows the
same). What a run measured goes in the issue notes, not here: rerun it to see.

Scores (0-100): translation BLEU, sentiment accuracy (multiple choice by log-likelihood),
arithmetic and antonym exact match; all on test-split examples, prompts from template 0.
Training uses a plain loop (AdamW + Batcher + loss.backward()), not the Trainer.

    python benchmarks/forgetting.py                 # about 6-8 minutes on 2 CPU cores
    MINILLM_SMOKE=1 python benchmarks/forgetting.py # seconds: tiny sizes, numbers meaningless
    python benchmarks/forgetting.py --plot forgetting.png
"""
from __future__ import annotations

import argparse
import os
import sys
import time

# Replace this script's folder (it holds kernels.py, which shadows the `kernels` package that
# transformers probes for) with the repository root.
sys.path[0] = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

import minillm  # noqa: E402
from minillm.data import (DEFAULT_MIXTURE, HELD_OUT_TASKS, TASKS, Batcher, format_example,  # noqa: E402
                          pretraining_corpus, Tokenizer)
from minillm.evaluation import ForgettingMatrix, builtin_task, run_task, score_task  # noqa: E402
from minillm.models import T5Config, T5ForConditionalGeneration  # noqa: E402
from minillm.optim import AdamW  # noqa: E402

OLD_TASKS = ["translation", "sentiment", "arithmetic"]  # A, B, C
NEW_TASK = "antonym"                                     # D
assert set(OLD_TASKS) <= set(DEFAULT_MIXTURE) and NEW_TASK in HELD_OUT_TASKS
METRIC = {"translation": "bleu", "sentiment": "accuracy", "arithmetic": "exact_match",
          "antonym": "exact_match"}
MAX_NEW_TOKENS = {"translation": 24, "sentiment": 4, "arithmetic": 4, "antonym": 12}

SMOKE = os.environ.get("MINILLM_SMOKE") == "1"
SETTINGS = dict(  # sized for ~5-8 minutes on 2 CPU cores
    d_model=96, d_ff=256, num_layers=2, num_heads=4, vocab_size=800, n_train=1500,
    n_eval=60, batch_size=32, base_steps=500, base_lr=2e-3, adapt_steps=150, adapt_lr=1e-3,
    lora_lr=1e-2, seed=0)
if SMOKE:
    SETTINGS.update(d_model=16, d_ff=32, num_layers=1, vocab_size=300, n_train=40, n_eval=6,
                    batch_size=8, base_steps=3, adapt_steps=2)


def records(task: str, n: int, seed: int) -> list:
    """(prompt, completion) pairs of the train split with the task's first template."""
    return [format_example(task, ex, template_id=0) for ex in TASKS[task].examples("train", n, seed)]


def train(model, pairs_of_text, tokenizer, steps: int, lr: float, batch_size: int, seed: int) -> float:
    """A plain training loop; only parameters with requires_grad are updated. Returns the last loss."""
    batches = Batcher.from_records(pairs_of_text, tokenizer, batch_size, max_source_length=128,
                                   max_target_length=32, shuffle=True, seed=seed)
    optimizer = AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    model.train()
    step, epoch, loss = 0, 0, float("nan")
    while step < steps:
        batches.set_epoch(epoch)
        for batch in batches:
            out = model(**batch)
            optimizer.zero_grad()
            out.loss.backward()
            optimizer.step()
            loss, step = float(out.loss.item()), step + 1
            if step % 100 == 0:
                print(f"  step {step}/{steps}  loss {loss:.3f}", flush=True)
            if step == steps:
                break
        epoch += 1
    model.eval()
    return loss


def make_scorer(tokenizer, n_eval: int, seed: int):
    """score(model) -> {task: score} on fixed test examples of A, B, C and D."""
    eval_tasks = {}
    for name in OLD_TASKS + [NEW_TASK]:
        task = builtin_task(name, "test", n_eval, seed, metrics=(METRIC[name],))
        task.max_new_tokens = MAX_NEW_TOKENS[name]
        eval_tasks[name] = task

    def score(model) -> dict:
        return {name: score_task(task, run_task(model, tokenizer, task, batch_size=50),
                                 n_bootstrap=2)[0].value
                for name, task in eval_tasks.items()}
    return score


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--plot", help="save a plot of the scores (needs matplotlib)")
    parser.add_argument("--lora-targets", default="q,v",
                        help="comma-separated Linear names LoRA adapts (default: q,v, PEFT's T5 default)")
    parser.add_argument("--lora-r", type=int, default=8, help="LoRA rank (default: 8)")
    args = parser.parse_args(argv)
    targets = [t for t in args.lora_targets.split(",") if t]
    s = SETTINGS
    start = time.perf_counter()
    minillm.manual_seed(s["seed"])
    texts = pretraining_corpus(300, seed=s["seed"])
    for name in OLD_TASKS + [NEW_TASK]:
        texts += [t for pair in records(name, 100, s["seed"]) for t in pair]
    tokenizer = Tokenizer.train(texts, vocab_size=s["vocab_size"], num_sentinels=4)
    config = T5Config(vocab_size=tokenizer.vocab_size, d_model=s["d_model"], d_kv=s["d_model"] // s["num_heads"],
                      d_ff=s["d_ff"], num_layers=s["num_layers"], num_heads=s["num_heads"], dropout_rate=0.0)
    score = make_scorer(tokenizer, s["n_eval"], s["seed"])
    per_task = s["n_train"] // len(OLD_TASKS)
    old = [r for name in OLD_TASKS for r in records(name, per_task, s["seed"])]
    new = records(NEW_TASK, s["n_train"], s["seed"])

    # 1. the multitask base, trained once; every arm starts from a copy of its weights
    model = T5ForConditionalGeneration(config)
    loss = train(model, old, tokenizer, s["base_steps"], s["base_lr"], s["batch_size"], s["seed"])
    base_state = {k: v.copy() for k, v in model.state_dict().items()}
    base_scores = score(model)
    print(f"base trained on {', '.join(OLD_TASKS)}: {s['base_steps']} steps, last loss {loss:.3f} "
          f"({time.perf_counter() - start:.0f}s)")

    def fresh_base():
        m = T5ForConditionalGeneration(config)
        m.load_state_dict(base_state)
        return m.eval()

    # 2. the arms
    arms = {}
    def report_training(arm, loss):
        print(f"{arm}: {s['adapt_steps']} steps, last loss {loss:.3f} ({time.perf_counter() - start:.0f}s)")

    full = fresh_base()
    loss = train(full, new, tokenizer, s["adapt_steps"], s["adapt_lr"], s["batch_size"], s["seed"] + 1)
    report_training("full fine-tuning on D", loss)
    arms["full fine-tuning on D"] = score(full)
    multi = fresh_base()
    mixed = new[: s["n_train"] // 2] + old[: s["n_train"] // 2]  # half new task, half replay
    loss = train(multi, mixed, tokenizer, s["adapt_steps"], s["adapt_lr"], s["batch_size"], s["seed"] + 1)
    report_training("multitask (D + A, B, C)", loss)
    arms["multitask (D + A, B, C)"] = score(multi)
    try:
        from minillm.peft import LoraConfig, get_peft_model  # noqa: PLC0415
    except ImportError:
        print("minillm.peft is not available: skipping the LoRA arm")
    else:
        lora = get_peft_model(fresh_base(), LoraConfig(r=args.lora_r, lora_alpha=2 * args.lora_r,
                                                       target_modules=targets))
        trainable = sum(p.size for p in lora.parameters() if p.requires_grad)
        loss = train(lora, new, tokenizer, s["adapt_steps"], s["lora_lr"], s["batch_size"], s["seed"] + 1)
        report_training("LoRA on D", loss)
        arms[f"LoRA r={args.lora_r} on {','.join(targets)} ({trainable:,} params), adapter on"] = score(lora)
        with lora.disable_adapter():
            arms["LoRA, adapter off"] = score(lora)

    # 3. report
    tasks = OLD_TASKS + [NEW_TASK]
    scores = ForgettingMatrix(tasks)
    scores.record("base (A, B, C)", base_scores)
    for arm, row in arms.items():
        scores.record(arm, row)
    print("\nScores (translation: BLEU; sentiment: accuracy; arithmetic, antonym: exact match)\n")
    print(scores.table())
    header = ["arm", f"gain on D ({NEW_TASK})"] + [f"drop on {t}" for t in OLD_TASKS] + ["BWT"]
    body = []
    for arm, row in arms.items():
        m = ForgettingMatrix(tasks, learned_at={**{t: 0 for t in OLD_TASKS}, NEW_TASK: 1})
        m.record("base", base_scores)
        m.record(arm, row)
        body.append([arm, f"{m.change(NEW_TASK):+.2f}"] + [f"{base_scores[t] - row[t]:.2f}" for t in OLD_TASKS]
                    + [f"{m.backward_transfer():+.2f}"])
    widths = [max(len(r[c]) for r in [header] + body) for c in range(len(header))]
    lines = ["| " + " | ".join(x.ljust(w) if c == 0 else x.rjust(w) for c, (x, w) in
                               enumerate(zip(row, widths))) + " |" for row in [header] + body]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    print("\nGain on the new task and drop on the old ones (drop = base - after; BWT = -mean drop)\n")
    print("\n".join(lines))
    if args.plot:
        print(f"\nplot: {scores.plot(args.plot, 'Scores after each adaptation') or 'matplotlib missing'}")
    print(f"\ntotal time {time.perf_counter() - start:.0f}s" + (" (MINILLM_SMOKE=1: tiny sizes)" if SMOKE else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
