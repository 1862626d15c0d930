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
# # Tutorial 03: train a toy T5, from a tokenizer to an instruction-tuned model
#
# **Learning goals.** After this tutorial you can
# 1. train a subword tokenizer and say why its sentinels (`<extra_id_N>`) exist;
# 2. build T5's self-supervised pretraining data with **span corruption** and pretrain on it;
# 3. explain why a pretrained model does not follow instructions, and fix that by fine-tuning
#    on a FLAN-style **multitask mixture** of [prompt, completion] pairs;
# 4. read the two loss curves, and score the model on held-out tasks before and after;
# 5. save the model and tokenizer (`save_pretrained`) so that later tutorials can load them.
#
# Run: `python tutorials/03_train_toy_t5.py` (it prints each phase's time and its total wall time;
# `MINILLM_SMOKE=1` takes seconds). Tutorials 04, 05, 06 and 09 reuse the model saved here.
# Read alongside: `minillm/data/span_corruption.py`, `minillm/data/mixture.py`, `minillm/training/trainer.py`.

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
from minillm.data import DEFAULT_MIXTURE, Batcher, build_mixture, pretraining_corpus, span_corruption_pairs  # noqa: E402
from minillm.models import T5ForConditionalGeneration  # noqa: E402
from minillm.cli.quickstart import QuickstartConfig, constant_baseline, format_table, held_out_records  # noqa: E402
from minillm.cli.quickstart import verdict as constant_verdict  # noqa: E402
from minillm.training.trainer import Trainer  # noqa: E402
from _toy import toy_config, toy_mixture, toy_training_args, train_toy_tokenizer  # noqa: E402

minillm.manual_seed(0)
WALL, CPU = time.perf_counter(), time.process_time()
print(f"smoke mode: {SMOKE}; figures, summary.json and the model go to {OUT}")

# %% [markdown]
# ## 1. Data and a tokenizer
#
# Two kinds of text feed a T5:
# * **plain text** for pretraining (`pretraining_corpus`: short documents built from the same
#   vocabulary as the tasks, train split only);
# * **[prompt, completion] pairs** for instruction tuning: the built-in tasks (dialogue
#   summarization, English to "Zorbish" translation, sentiment, paraphrase, arithmetic), each example
#   phrased with a random FLAN instruction template, plus some 2-shot prompts (see `_toy.toy_mixture`).
#
# The tokenizer (byte-pair encoding) is trained on the training text only, so nothing of the
# test split leaks into the vocabulary. It reserves 32 **sentinel** ids, `<extra_id_0>` ...
# `<extra_id_31>`, which mark the holes of span corruption.

# %%
examples_per_task = 40 if SMOKE else 3000
train_records = toy_mixture(examples_per_task, seed=0)
validation = build_mixture(DEFAULT_MIXTURE, 4 if SMOKE else 12, split="validation", seed=0)
test = held_out_records(QuickstartConfig(test_examples_per_task=4 if SMOKE else 40, seed=0))
tokenizer = train_toy_tokenizer(train_records, vocab_size=400 if SMOKE else 1600)
counts = {name: sum(r.task == name for r in train_records) for name in DEFAULT_MIXTURE}
print_table(["task", "training records"], [[k, v] for k, v in counts.items()])
sample = train_records[0]
print(f"one record ({sample.task}):\n  prompt:     {sample.prompt!r}\n  completion: {sample.completion!r}")
print(f"tokens of the completion: {tokenizer.tokenize(sample.completion)}")
print(f"vocabulary: {tokenizer.vocab_size} ids, of which {tokenizer.num_sentinels} sentinels; "
      f"<extra_id_0> has id {tokenizer.sentinel_id(0)}")

# %% [markdown]
# ## 2. Span corruption: T5's pretraining objective
#
# Hide about 15% of the tokens in spans of about 3; the encoder reads the text with a sentinel in
# each hole, the decoder writes the hidden spans, each after its sentinel. The labels come from
# the text itself (**self-supervised**), so any plain text will do. Text is packed into chunks of
# 64 tokens so no compute goes to padding.

# %%
corpus = pretraining_corpus(300 if SMOKE else 6000, seed=1)
span_pairs = span_corruption_pairs(corpus, tokenizer, chunk_length=64, seed=0)
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
# `Trainer` takes a ready `Batcher` of token ids as well as text records. The model is
# `toy_config`: a 2+2-layer T5 with d_model 128 (the quickstart's size). The first 5% of the
# pairs are held out (never trained on) to watch the eval loss.

# %%
config = toy_config(tokenizer, SMOKE)
model = T5ForConditionalGeneration(config)
n_params = model.num_parameters()
split = max(1, len(span_pairs) // 20)
pretrain_steps = 10 if SMOKE else 500
pretrain_args = toy_training_args(OUT / "pretrain_run", pretrain_steps, eval_every=max(1, pretrain_steps // 4))
started = time.perf_counter()
Trainer(model, tokenizer, pretrain_args, Batcher(span_pairs[split:], 32, seed=0),
        eval_data=Batcher(span_pairs[:split], 64, shuffle=False)).train()
pretrain_seconds = time.perf_counter() - started
pretrain_log = [json.loads(line) for line in (OUT / "pretrain_run" / "log.jsonl").read_text().splitlines()]
pre_train_curve = [(e["step"], e["loss"]) for e in pretrain_log if "loss" in e]
pre_eval_curve = [(e["step"], e["eval_loss"]) for e in pretrain_log if "eval_loss" in e]
print(f"{n_params:,} parameters. In this run pretraining took {pretrain_seconds:.0f} s; the training loss "
      f"went from {pre_train_curve[0][1]:.3f} to {pre_train_curve[-1][1]:.3f} and the held-out loss ended at "
      f"{pre_eval_curve[-1][1]:.3f} (a uniform guess over the vocabulary scores "
      f"ln V = {np.log(tokenizer.vocab_size):.2f}).")

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
instruction = test[0].prompt
enc = tokenizer.batch_encode([instruction])
instruction_pretrained = tokenizer.decode(model.generate(enc["input_ids"], enc["attention_mask"],
                                                         max_new_tokens=24)[0, 1:].tolist(), skip_special_tokens=False)
print(f"instruction {instruction!r}\n  -> {instruction_pretrained!r}")
instruction_gets_blanks = "<extra_id_0>" in instruction_pretrained
print(f"In this run the answer to the instruction {'was' if instruction_gets_blanks else 'was not'} in span-filling "
      f"format (sentinels), and it {'matched' if instruction_pretrained.strip() == test[0].completion else 'did not match'} "
      "the reference.")

# %% [markdown]
# ## 4. Multitask instruction fine-tuning
#
# Now the same weights learn [prompt, completion] pairs of all five tasks at once, shuffled
# together (examples-proportional mixing). The periodic evaluation on the validation split
# generates answers and scores each task with its own metric, and the checkpoint with the best
# validation score is saved in `finetune_run/best/`; the table below and the model saved in section 6
# are the *final* weights. Before training, we score the pretrained model on the held-out **test**
# split: the "before" column. The "constant answer" column is what a model scores by always giving
# the commonest training answer of a task (the majority class for sentiment and paraphrase): a task
# is learned only where "after" clearly beats it.

# %%
finetune_steps = 12 if SMOKE else 1500
finetune_args = toy_training_args(OUT / "finetune_run", finetune_steps, eval_every=max(1, finetune_steps // 3),
                                  eval_num_examples=len(validation), metric_for_best="score")
trainer = Trainer(model, tokenizer, finetune_args, train_records, eval_data=validation)
before = trainer.evaluate(test)
started = time.perf_counter()
result = trainer.train()
finetune_seconds = time.perf_counter() - started
after = trainer.evaluate(test)
fine_log = [json.loads(line) for line in (OUT / "finetune_run" / "log.jsonl").read_text().splitlines()]
fine_train_curve = [(e["step"], e["loss"]) for e in fine_log if "loss" in e]
fine_eval_curve = [(e["step"], e["eval_loss"]) for e in fine_log if "eval_loss" in e]
baseline = constant_baseline(train_records, test)
table = format_table(before, after, baseline)
print(table)
n_test = {name: sum(r.task == name for r in test) for name in DEFAULT_MIXTURE}
learned_sentence = constant_verdict(baseline, after, n_test["sentiment"])  # the quickstart's rule, stated there
above_constant = {name: constant_verdict(baseline, {f"{name}/accuracy": after[f"{name}/accuracy"]},
                                         n_test[name]).startswith("Better than the constant answer on 1 of 1")
                  for name in ("sentiment", "paraphrase", "arithmetic")}
print(f"In this run: {learned_sentence} ({n_test['sentiment']} test examples per task; the rule is "
      "minillm.cli.quickstart.verdict's, the same as the quickstart's.)")
best_step = json.loads((OUT / "finetune_run" / "best" / "metrics.json").read_text())["step"] \
    if (OUT / "finetune_run" / "best" / "metrics.json").is_file() else None
print(f"The best validation score was at step {best_step} of {result.global_step}; the numbers above are the "
      "final weights.")
print(f"In this run fine-tuning took {finetune_seconds:.0f} s for {result.global_step} steps; the training loss "
      f"went from {fine_train_curve[0][1]:.3f} to {fine_train_curve[-1][1]:.3f}, and the mean task score on the "
      f"test split went from {before['score']:.3f} to {after['score']:.3f}.")
shown = test[::max(1, len(test) // 4)]
for record, prediction in zip(shown, trainer.predict([r.prompt for r in shown])):
    print(f"[{record.task}] expected  {record.completion!r}\n    predicted {prediction!r}")

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
              (axes[1], "multitask fine-tuning", fine_train_curve, fine_eval_curve)]
    for ax, title, train_curve, eval_curve in panels:
        ax.plot(*zip(*train_curve), label="train loss")
        ax.plot(*zip(*eval_curve), "o-", label="eval loss")
        ax.set_xlabel("step")
        ax.set_ylabel("cross-entropy per token")
        ax.set_title(title)
        ax.legend()
        ax.grid(alpha=0.3)
    save_figure(fig, "loss_curves.png")

# %% [markdown]
# ## 6. Save, reload, check
#
# `save_pretrained` writes `config.json` and `model.safetensors` (Hugging Face's layout), and the
# tokenizer writes `tokenizer.json`, into the same folder: `from_pretrained` on that folder gives
# the model back. We check that the reloaded model generates exactly what this one does.

# %%
model_dir = OUT / "model"
model.save_pretrained(model_dir)
tokenizer.save(str(model_dir))
(model_dir / "toy_info.json").write_text(json.dumps({"smoke": SMOKE, "pretrain_steps": pretrain_steps,
                                                      "finetune_steps": finetune_steps, "parameters": n_params}))
reloaded = T5ForConditionalGeneration.from_pretrained(model_dir)
probe = tokenizer.batch_encode([r.prompt for r in test[:8]])
same = np.array_equal(model.generate(probe["input_ids"], probe["attention_mask"], max_new_tokens=16),
                      reloaded.generate(probe["input_ids"], probe["attention_mask"], max_new_tokens=16))
print(f"saved to {model_dir}: {sorted(p.name for p in model_dir.iterdir())}; "
      f"the reloaded model generated {'the same' if same else 'DIFFERENT'} tokens on 8 test prompts.")

# %% [markdown]
# ## Summary
#
# Exercises: skip pretraining (set `pretrain_steps = 0` and remove its Trainer) and compare the
# table; drop the few-shot part of `toy_mixture` and rerun tutorial 04's in-context section.

# %%
summary = {
    "parameters": n_params,
    "vocab_size": tokenizer.vocab_size,
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
    "test_before": before,
    "test_after": after,
    "constant_answer": baseline,
    "n_test_per_task": n_test,
    "above_constant": above_constant,
    "constant_verdict": learned_sentence,
    "fill_blank_exact": fill_exact,
    "fill_blank_first_token": fill_first_token,
    "fill_blank_constant_first_token": fill_constant,
    "fill_blank_n": len(held_out_pairs),
    "best_step": best_step,
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
