# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Tutorial 03: how the course base is made, from a tokenizer to an instruction-tuned T5
#
# **Learning goals.** After this tutorial you can
# 1. train a subword tokenizer and say why its sentinels (`<extra_id_N>`) exist;
# 2. build T5's self-supervised pretraining data with **span corruption** and pretrain on it;
# 3. explain why a pretrained model does not follow instructions, and fix that by fine-tuning
#    on a FLAN-style **multitask mixture** of [prompt, completion] pairs;
# 4. read the two loss curves, and judge each task against its **constant answer** with standard errors;
# 5. save the model and tokenizer (`save_pretrained`), and find the full-size recipe the later tutorials use.
#
# Tutorials 04-09 start from the **course base** (`minillm.course.ensure_base()`, or `minillm base build`):
# the recipe below at full size, built once into a cache. Here we run the *same recipe* (`BaseRecipe`,
# the functions of `minillm/course/build.py`) at a small scale, one phase at a time, so every step
# can be watched. Run: `python tutorials/03_train_toy_t5.py` (it prints each phase's time and its
# total wall time; `MINILLM_SMOKE=1` takes seconds). Read alongside: `minillm/course/recipe.py`,
# `minillm/course/build.py`, `minillm/data/span_corruption.py`, `minillm/training/trainer.py`.

# %% Setup: output folder, figures, tables (the same cell opens every tutorial)
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

TUTORIAL = "03_train_toy_t5"
HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
sys.path[:0] = [str(HERE.parent), str(HERE)]  # minillm from this checkout; tutorials/_setup.py
from _setup import SMOKE, plt, print_table, tutorial_output  # noqa: E402

OUT, FIGURES, save_figure = tutorial_output(TUTORIAL)


import minillm  # noqa: E402
from minillm.course import BaseRecipe, HELD_IN, describe_estimate, default_recipe  # noqa: E402
from minillm.course.build import instruction_mixture, model_config  # noqa: E402
from minillm.course.card import score_tasks, verdict as card_verdict  # noqa: E402
from minillm.data import Batcher, Tokenizer, span_corruption_pairs  # noqa: E402
from minillm.data.corpus import course_corpus  # noqa: E402
from minillm.models import T5ForConditionalGeneration  # noqa: E402
from minillm.training.trainer import Trainer, TrainingArguments  # noqa: E402

minillm.manual_seed(0)
WALL, CPU = time.perf_counter(), time.process_time()
print(f"smoke mode: {SMOKE}; figures, summary.json and the model go to {OUT}")

# %% [markdown]
# ## 1. The recipe, the data and a tokenizer
#
# Everything the base is made from is one frozen dataclass, `BaseRecipe`: sizes, data, steps,
# rates. Its hash is the cache key, so a changed recipe builds anew. We take the full recipe and
# shrink the model, the data and the steps; every other field (the tasks, their weights, the
# templates, the rates) is the full recipe's.
#
# Two kinds of text feed a T5:
# * **plain text** for pretraining (`course_corpus`: short documents built from the tasks'
#   vocabulary, train-split inputs only, no answers);
# * **[prompt, completion] pairs** for instruction tuning: the five held-in tasks (`HELD_IN`), each
#   example phrased with a random FLAN instruction template, plus 2-shot prompts of the short ones
#   (`instruction_mixture`).
#
# The tokenizer (byte-pair encoding) is trained on the training text only, so nothing of the
# test split leaks into the vocabulary. It reserves 32 **sentinel** ids, `<extra_id_0>` ...
# `<extra_id_31>`, which mark the holes of span corruption.

# %%
FULL = default_recipe(smoke=False)
# (Smoke mode: the stand-in tunes 16 steps at 1e-2, so its loss falls clearly, 6.01 -> 5.25;
# at the stand-in's own 4 steps it moved 6.013 -> 6.016, a tie that thread counts could flip.)
recipe = BaseRecipe.smoke(card_examples=8, tune_steps=16, tune_learning_rate=1e-2) if SMOKE else BaseRecipe(
    threads=1, d_model=128, d_ff=512, num_layers=2, num_heads=4, corpus_documents=2000, pretrain_steps=150,
    tune_steps=450, examples_per_task=800, few_shot_examples=100, card_examples=40)
changed = {k: (getattr(FULL, k), v) for k, v in recipe.hashed_fields().items() if getattr(FULL, k) != v}
print_table(["recipe field", "full recipe", "this tutorial"], [[k, a, b] for k, (a, b) in changed.items()])
train_records = instruction_mixture(recipe)
tokenizer = Tokenizer.train(course_corpus(recipe.corpus_documents, seed=recipe.seed)
                            + [t for r in train_records for t in (r.prompt, r.completion)],
                            vocab_size=recipe.vocab_size, num_sentinels=32)
counts = {name: sum(r.task == name for r in train_records) for name in HELD_IN}
print_table(["held-in task", "training records"], [[k, v] for k, v in counts.items()])
sample = train_records[0]
print(f"one record ({sample.task}):\n  prompt:     {sample.prompt!r}\n  completion: {sample.completion!r}")
print(f"tokens of the completion: {tokenizer.tokenize(sample.completion)}")
print(f"vocabulary: {tokenizer.vocab_size} ids, of which {tokenizer.num_sentinels} sentinels; "
      f"<extra_id_0> has id {tokenizer.sentinel_id(0)}")


def training_args(folder, steps, lr, warmup, eval_every=0):
    """The recipe's TrainingArguments (as in course/build.py); ``eval_every`` > 0 adds periodic evals."""
    return TrainingArguments(output_dir=str(folder), max_steps=steps, batch_size=recipe.batch_size, learning_rate=lr,
                             lr_schedule="linear", warmup_steps=warmup, weight_decay=0.0, max_grad_norm=1.0,
                             log_every=max(1, steps // 40), seed=recipe.seed, max_source_length=recipe.max_source_length,
                             max_target_length=recipe.max_target_length, eval_every=eval_every, progress=False)

# %% [markdown]
# ## 2. Span corruption: T5's pretraining objective
#
# Hide about 15% of the tokens in spans of about 3; the encoder reads the text with a sentinel in
# each hole, the decoder writes the hidden spans, each after its sentinel. The labels come from
# the text itself (**self-supervised**), so any plain text will do. Text is packed into chunks of
# `recipe.chunk_length` tokens so no compute goes to padding.

# %%
corpus = course_corpus(recipe.corpus_documents, seed=recipe.seed)
span_pairs = span_corruption_pairs(corpus, tokenizer, chunk_length=recipe.chunk_length, seed=recipe.seed)
inputs, targets = span_pairs[0]
print("original:", corpus[0][:160])
print("inputs:  ", tokenizer.decode(inputs, skip_special_tokens=False)[:200])
print("targets: ", tokenizer.decode(targets, skip_special_tokens=False))
sentinel_ids = {tokenizer.sentinel_id(i) for i in range(tokenizer.num_sentinels)}
text_tokens = lambda ids: sum(i not in sentinel_ids for i in ids[:-1])  # noqa: E731  (drop </s>)
hidden_share = sum(text_tokens(t) for _, t in span_pairs) / sum(text_tokens(s) + text_tokens(t) for s, t in span_pairs)
print(f"{len(span_pairs)} pretraining pairs; on average {hidden_share:.1%} of the text tokens are hidden")

# %% [markdown]
# ## 3. Pretraining
#
# `Trainer` takes a ready `Batcher` of token ids as well as text records. The model has the recipe's
# shape (`model_config`). The first 5% of the pairs are held out (never trained on) to watch the
# eval loss.

# %%
minillm.manual_seed(recipe.seed)
config = model_config(recipe, tokenizer)
model = T5ForConditionalGeneration(config)
n_params = model.num_parameters()
split = max(1, len(span_pairs) // 20)
pretrain_steps = recipe.pretrain_steps
pretrain_args = training_args(OUT / "pretrain_run", pretrain_steps, recipe.pretrain_learning_rate,
                              recipe.pretrain_warmup_steps, eval_every=max(1, pretrain_steps // 4))
started = time.perf_counter()
Trainer(model, tokenizer, pretrain_args, Batcher(span_pairs[split:], recipe.batch_size, seed=recipe.seed),
        eval_data=Batcher(span_pairs[:split], 64, shuffle=False)).train()
pretrain_seconds = time.perf_counter() - started
pretrain_log = [json.loads(line) for line in (OUT / "pretrain_run" / "log.jsonl").read_text().splitlines()]
pre_train_curve = [(e["step"], e["loss"]) for e in pretrain_log if "loss" in e]
pre_eval_curve = [(e["step"], e["eval_loss"]) for e in pretrain_log if "eval_loss" in e]
print(f"{n_params:,} parameters. In this run pretraining took {pretrain_seconds:.0f} s; the training loss "
      f"went from {pre_train_curve[0][1]:.3f} to {pre_train_curve[-1][1]:.3f} and the held-out loss ended at "
      f"{pre_eval_curve[-1][1]:.3f} (a uniform guess over the vocabulary scores "
      f"ln V = {np.log(tokenizer.vocab_size):.2f}).")

# %%
from minillm.course.card import test_examples  # noqa: E402

test_pairs = test_examples(HELD_IN[0], 1, recipe.seed)

# %% [markdown]
# Pretraining trains one skill: fill blanks. How well did it learn it? We give the model held-out
# corrupted chunks (never trained on) and compare the first span it writes with the hidden one,
# against the simplest rival: always writing the commonest first token of a hidden span. Then we
# give it an instruction. The gap between the two is the gap between a **base** model (T5) and an
# **instruct** model (FLAN-T5).

# %%
def first_span(ids):
    """The tokens of the first hidden span: after <extra_id_0>, up to the next sentinel or </s>."""
    ids = list(ids)
    ids = ids[1:] if ids and ids[0] == tokenizer.sentinel_id(0) else ids
    end = next((i for i, t in enumerate(ids) if t in sentinel_ids or t in (0, 1)), len(ids))
    return tuple(ids[:end])


def fill_blanks(pairs):
    """The model's first span for each corrupted chunk (greedy), beside the hidden one."""
    width = max(len(s) for s, _ in pairs)
    ids, mask = np.zeros((len(pairs), width), np.int64), np.zeros((len(pairs), width), np.int64)
    for i, (s, _) in enumerate(pairs):
        ids[i, :len(s)], mask[i, :len(s)] = s, 1
    out = model.generate(ids, mask, max_new_tokens=12)
    return [first_span(o[1:]) for o in out.tolist()], [first_span(t) for _, t in pairs]


held_out_pairs = span_pairs[:split][:8 if SMOKE else 64]
predicted_spans, hidden_spans = fill_blanks(held_out_pairs)
first_tokens = Counter(first_span(t)[:1] for _, t in span_pairs[split:])
commonest_first = max(first_tokens.items(), key=lambda kv: kv[1])[0]
fill_exact = float(np.mean([p == h for p, h in zip(predicted_spans, hidden_spans)]))
fill_first_token = float(np.mean([p[:1] == h[:1] for p, h in zip(predicted_spans, hidden_spans)]))
fill_constant = float(np.mean([h[:1] == commonest_first for h in hidden_spans]))
print(f"original:  {tokenizer.decode(list(held_out_pairs[0][0]), skip_special_tokens=False)[:160]}")
print(f"hidden:    {tokenizer.decode(list(hidden_spans[0]))!r}\npredicted: {tokenizer.decode(list(predicted_spans[0]))!r}")
print(f"On {len(held_out_pairs)} held-out chunks the pretrained model wrote the first hidden span exactly in "
      f"{fill_exact:.0%} and got its first token right in {fill_first_token:.0%}; always writing the commonest "
      f"first token ({tokenizer.decode(list(commonest_first))!r}) gets {fill_constant:.0%}: the model "
      f"{'beat' if fill_first_token > fill_constant else 'did not beat'} that rival.")
instruction, instruction_reference = test_pairs[0]
enc = tokenizer.batch_encode([instruction])
instruction_pretrained = tokenizer.decode(model.generate(enc["input_ids"], enc["attention_mask"],
                                                         max_new_tokens=24)[0, 1:].tolist(), skip_special_tokens=False)
print(f"instruction {instruction!r}\n  -> {instruction_pretrained!r}")
instruction_gets_blanks = "<extra_id_0>" in instruction_pretrained
print(f"In this run the answer to the instruction {'was' if instruction_gets_blanks else 'was not'} in span-filling "
      f"format (sentinels), and it {'matched' if instruction_pretrained.strip() == instruction_reference else 'did not match'} "
      "the reference.")

# %% [markdown]
# ## 4. Multitask instruction tuning
#
# Now the same weights learn [prompt, completion] pairs of all five held-in tasks at once,
# shuffled together (examples-proportional mixing, with the recipe's task weights). Before and
# after, we score the model exactly as the base's **model card** does (`minillm.course.card`):
# every held-in task, the held-out task (dialogue summaries) and the new task (antonym), on test
# examples, each against its **constant answer** (the commonest training answer: the majority
# class for sentiment). The rule, stated once in `minillm/course/card.py`: a task is known when the
# model's margin over the constant answer exceeds two standard errors of that (paired) margin.

# %%
tune_steps = recipe.tune_steps
tune_args = training_args(OUT / "finetune_run", tune_steps, recipe.tune_learning_rate, recipe.tune_warmup_steps)
rows_before = score_tasks(model, tokenizer, recipe, train_records)
started = time.perf_counter()
trainer = Trainer(model, tokenizer, tune_args, train_records)
result = trainer.train()
finetune_seconds = time.perf_counter() - started
rows_after = score_tasks(model, tokenizer, recipe, train_records)
fine_log = [json.loads(line) for line in (OUT / "finetune_run" / "log.jsonl").read_text().splitlines()]
fine_train_curve = [(e["step"], e["loss"]) for e in fine_log if "loss" in e]
fmt = lambda r, v: f"{v:.1f}" if r["metric"] == "bleu" else f"{v:.3f}"  # noqa: E731
print_table(["task", "role", "metric", "constant answer", "before", "after", "margin ± s.e. (after)", "known"],
            [[a["task"], a["role"], a["metric"], fmt(a, a["constant"]), fmt(b, b["value"]), fmt(a, a["value"]),
              f"{fmt(a, a['margin'])} ± {fmt(a, a['margin_stderr'])}", "yes" if a["beats"] else "no"]
             for b, a in zip(rows_before, rows_after)])
small_verdict = card_verdict(rows_after)
print(f"In this run, after {result.global_step} tuning steps ({finetune_seconds:.0f} s; the training loss went "
      f"from {fine_train_curve[0][1]:.3f} to {fine_train_curve[-1][1]:.3f}): {small_verdict}")
for row in rows_after[::3]:
    example = row["examples"][0]
    print(f"[{row['task']}] expected  {example['reference']!r}\n    predicted {example['prediction']!r}")

# %% [markdown]
# ## 5. Loss curves
#
# Both phases plot cross-entropy per target token. Pretraining targets are hidden spans, a
# guessing game; fine-tuning targets are answers that follow from the prompt, so that loss can
# fall much further.

# %%
if plt is not None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    panels = [(axes[0], "pretraining (span corruption)", pre_train_curve, pre_eval_curve),
              (axes[1], "multitask instruction tuning", fine_train_curve, [])]
    for ax, title, train_curve, eval_curve in panels:
        ax.plot(*zip(*train_curve), label="train loss")
        if eval_curve:
            ax.plot(*zip(*eval_curve), "o-", label="eval loss (held-out chunks)")
        ax.set_xlabel("step")
        ax.set_ylabel("cross-entropy per token")
        ax.set_title(title)
        ax.legend()
        ax.grid(alpha=0.3)
    save_figure(fig, "loss_curves.png")

# %% [markdown]
# ## 6. Save, reload, check, and the full recipe
#
# `save_pretrained` writes `config.json` and `model.safetensors` (Hugging Face's layout), and the
# tokenizer writes `tokenizer.json`, into the same folder: `from_pretrained` on that folder gives
# the model back. We check that the reloaded model generates exactly what this one does. The later
# tutorials do not load this small model: they load the course base, this recipe at full size.

# %%
model_dir = OUT / "model"
model.save_pretrained(model_dir)
tokenizer.save(str(model_dir))
reloaded = T5ForConditionalGeneration.from_pretrained(model_dir)
probe = tokenizer.batch_encode([prompt for prompt, _ in test_examples(HELD_IN[1], 8, recipe.seed)])
same = np.array_equal(model.generate(probe["input_ids"], probe["attention_mask"], max_new_tokens=16),
                      reloaded.generate(probe["input_ids"], probe["attention_mask"], max_new_tokens=16))
print(f"saved to {model_dir}: {sorted(p.name for p in model_dir.iterdir())}; "
      f"the reloaded model generated {'the same' if same else 'DIFFERENT'} tokens on 8 test prompts.")
print(f"The full recipe: d_model {FULL.d_model}, {FULL.num_layers}+{FULL.num_layers} layers, {FULL.pretrain_steps} "
      f"pretraining and {FULL.tune_steps} tuning steps of {FULL.batch_size}; it takes {describe_estimate(FULL)}. "
      "Build it with `minillm base build`, or `from minillm.course import ensure_base; ensure_base()`; "
      "its model card (README.md in the base's folder, and docs/base_model.md) holds the table above at full size.")

# %% [markdown]
# ## Summary
#
# Exercises: skip pretraining (set `pretrain_steps = 0` and remove its Trainer) and compare the
# table; set `few_shot_examples=0` in the recipe and rerun tutorial 04's in-context section on it.

# %%
summary = {
    "parameters": n_params,
    "vocab_size": tokenizer.vocab_size,
    "recipe_changes_from_full": {k: list(v) for k, v in changed.items()},
    "train_records": len(train_records),
    "span_pairs": len(span_pairs),
    "pretrain_steps": pretrain_steps,
    "pretrain_loss_first": pre_train_curve[0][1],
    "pretrain_loss_last": pre_train_curve[-1][1],
    "pretrain_eval_loss_first": pre_eval_curve[0][1],
    "pretrain_eval_loss_last": pre_eval_curve[-1][1],
    "finetune_steps": result.global_step,
    "finetune_loss_first": fine_train_curve[0][1],
    "finetune_loss_last": fine_train_curve[-1][1],
    "rows_before": [{k: v for k, v in r.items() if k != "examples"} for r in rows_before],
    "rows_after": [{k: v for k, v in r.items() if k != "examples"} for r in rows_after],
    "known_verdict": small_verdict,
    "fill_blank_exact": fill_exact,
    "fill_blank_first_token": fill_first_token,
    "fill_blank_constant_first_token": fill_constant,
    "fill_blank_n": len(held_out_pairs),
    "model_dir": str(model_dir),
    "reload_generates_same": bool(same),
    "pretrained_answers_instruction_with_sentinels": bool(instruction_gets_blanks),
    "pretrain_seconds": round(pretrain_seconds, 1),
    "finetune_seconds": round(finetune_seconds, 1),
    "wall_seconds": round(time.perf_counter() - WALL, 1),
    "cpu_seconds": round(time.process_time() - CPU, 1),
    "figures": FIGURES,
}
(OUT / "summary.json").write_text(json.dumps(summary, indent=2))
print(f"This run took {summary['wall_seconds']:.0f} s of wall time.")
print("SUMMARY " + json.dumps(summary))
