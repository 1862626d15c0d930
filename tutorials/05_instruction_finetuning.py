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
# # Tutorial 05: instruction fine-tuning on your own [prompt, completion] data
#
# **Learning goals.** After this tutorial you can
# 1. write instruction data as a JSONL file of `{"prompt": ..., "completion": ...}` lines and load
#    it with `load_jsonl`, knowing that bad lines raise an error naming the line (nothing is
#    dropped silently);
# 2. check before training how many examples the length limits would cut;
# 3. run **full fine-tuning** (every weight is updated) with the `Trainer`: supervised learning on
#    labelled pairs, where pretraining was self-supervised;
# 4. evaluate a summarizer with ROUGE before and after, and read example outputs, not just scores;
# 5. notice what happened to a task we did *not* train on (the cue for tutorial 06).
#
# Run: `python tutorials/05_instruction_finetuning.py` (it prints its own wall time at the end;
# `MINILLM_SMOKE=1` takes seconds). Read alongside: `minillm/data/jsonl.py`, `minillm/training/trainer.py`,
# `minillm/metrics/rouge.py`.

# %% Setup: output folder, figures, tables (the same cell opens every tutorial)
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

TUTORIAL = "05_instruction_finetuning"
HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
sys.path[:0] = [str(HERE.parent), str(HERE)]  # minillm from this checkout; tutorials/_setup.py
from _setup import SMOKE, plt, print_table, tutorial_output  # noqa: E402

OUT, FIGURES, save_figure = tutorial_output(TUTORIAL)


import minillm  # noqa: E402
from minillm.data import DataError, Record, format_example, get_task, load_jsonl  # noqa: E402
from minillm.data.tasks_lexicon import NAMES  # noqa: E402
from minillm.metrics import corpus_bleu, corpus_rouge, rouge_score  # noqa: E402
from minillm.training.trainer import Trainer  # noqa: E402
from minillm.evaluation.harness import generate_texts  # noqa: E402
from _toy import MAX_SOURCE_LENGTH, MAX_TARGET_LENGTH, load_course_base, toy_training_args  # noqa: E402

minillm.manual_seed(0)
WALL, CPU = time.perf_counter(), time.process_time()
print(f"smoke mode: {SMOKE}; figures and summary.json go to {OUT}")

# %% [markdown]
# ## 1. Your data, as a file
#
# The use case: summarize short dialogues (the course's running example; FLAN-T5 on DialogSum in
# the original lab). A real project would export its own examples; here we render the built-in
# `dialogue_summary` task through its FLAN instruction templates and write one JSON object per
# line, exactly the format a user would bring.

# %%
task = get_task("dialogue_summary")
n_train = 40 if SMOKE else 2000
rng = random.Random(0)
data_file = OUT / "dialogue_summary.jsonl"
with open(data_file, "w", encoding="utf-8") as f:
    for example in task.examples("train", n_train, seed=0):
        prompt, completion = format_example(task, example, rng=rng)  # a random template each time
        f.write(json.dumps({"prompt": prompt, "completion": completion}) + "\n")
written = sum(1 for _ in open(data_file, encoding="utf-8"))
data = load_jsonl(data_file)  # the task name comes from the file name: "dialogue_summary"
print(f"first line of {data_file.name}:\n  {open(data_file, encoding='utf-8').readline().strip()[:160]}...")
print(f"In this run we wrote {written} lines and load_jsonl returned {len(data)} records "
      f"({data.num_blank_lines} blank lines), task name {data[0].task!r}.")

# %% [markdown]
# A broken file fails loudly, naming the line, instead of training on whatever survived:

# %%
bad_file = OUT / "broken.jsonl"
bad_file.write_text(open(data_file, encoding="utf-8").readline() + '{"prompt": "Summarize: Hi!", "answer": "x"}\n')
try:
    load_jsonl(bad_file)
    error_message = None
except DataError as error:
    error_message = str(error)
print(f"load_jsonl on a file whose line 2 uses the key 'answer':\n  DataError: {error_message}")

# %% [markdown]
# ## 2. Will it fit? Truncation before training
#
# Prompts longer than `max_source_length` tokens and completions longer than
# `max_target_length` are cut. Count first, so you can raise the limits instead of learning
# from half-summaries.

# %%
model, tokenizer, toy_info = load_course_base(SMOKE)
report = data.truncation_report(tokenizer, MAX_SOURCE_LENGTH, MAX_TARGET_LENGTH)
print(report)
print(f"model source: {toy_info['source']}; {model.num_parameters():,} parameters, all of them trainable here")

# %% [markdown]
# ## 3. ROUGE before fine-tuning
#
# The held-out examples come from the task's **test** split (no dialogue in it occurs in training),
# each with a random template. ROUGE-1/2 count shared unigrams/bigrams, ROUGE-L the longest common
# subsequence (tutorial 09 computes them by hand). We also score a task we will *not* train on,
# translation (BLEU), to see what full fine-tuning does to it.

# %%
n_test = 6 if SMOKE else 60
test_rng = random.Random(1)
test = [Record(*format_example(task, ex, rng=test_rng), "dialogue_summary") for ex in task.examples("test", n_test, 0)]
other = [Record(*format_example("translation", ex, template_id=0), "translation")
         for ex in get_task("translation").examples("test", n_test, 0)]


def scores(model):
    """ROUGE-1/2/L F1 on the summaries and BLEU on the translations (greedy decoding)."""
    summaries = generate_texts(model, tokenizer, [r.prompt for r in test], MAX_SOURCE_LENGTH, MAX_TARGET_LENGTH)
    translations = generate_texts(model, tokenizer, [r.prompt for r in other], MAX_SOURCE_LENGTH, MAX_TARGET_LENGTH)
    rouge = corpus_rouge(summaries, [r.completion for r in test], rouge_types=("rouge1", "rouge2", "rougeL"))
    result = {name: rouge[name].mid.fmeasure for name in ("rouge1", "rouge2", "rougeL")}
    result["translation_bleu"] = corpus_bleu(translations, [[r.completion for r in other]]).score
    return result, summaries


before, summaries_before = scores(model)
initial = {name: p.numpy().copy() for name, p in model.named_parameters()}

# %% [markdown]
# ## 4. Full fine-tuning
#
# Every weight receives gradients and is updated: the result is a new version of the whole
# model. The `Trainer` turns the records into padded batches with labels (-100 on padding), runs
# AdamW with warmup and linear decay, and keeps a log. The learning rate is lower than in
# the base's instruction tuning (1e-3 vs 2e-3): we adjust a trained model rather than start from scratch.
# `dialogue_summary` is the course base's **held-out** task: it was never in its mixture (a news
# summarization task was, as FLAN's news summaries relate to DialogSum).

# %%
steps = 6 if SMOKE else 150
args = toy_training_args(OUT / "run", steps, learning_rate=1e-3, batch_size=16)
started = time.perf_counter()
result = Trainer(model, tokenizer, args, data.records).train()
train_seconds = time.perf_counter() - started
log = [json.loads(line) for line in (OUT / "run" / "log.jsonl").read_text().splitlines()]
curve = [(e["step"], e["loss"]) for e in log if "loss" in e]
changed = sum(not np.array_equal(initial[name], p.numpy()) for name, p in model.named_parameters())
print(f"In this run {result.global_step} steps took {train_seconds:.0f} s; the loss went from {curve[0][1]:.3f} "
      f"to {curve[-1][1]:.3f}, and {changed} of {len(initial)} parameter tensors changed (full fine-tuning).")

# %% [markdown]
# ## 5. ROUGE after fine-tuning

# %%
after, summaries_after = scores(model)
print_table(["metric (test split)", "before", "after"],
            [[name, before[name], after[name]] for name in ("rouge1", "rouge2", "rougeL", "translation_bleu")])
print(f"In this run ROUGE-L went from {before['rougeL']:.3f} to {after['rougeL']:.3f} on {n_test} held-out dialogues; "
      f"translation BLEU, a task we did not train on, went from {before['translation_bleu']:.1f} to "
      f"{after['translation_bleu']:.1f}.")
for record, old, new in list(zip(test, summaries_before, summaries_after))[:3]:
    print(f"reference: {record.completion!r}\n  before: {old!r}\n  after:  {new!r}")

# %% [markdown]
# ### What ROUGE does not see: the names
#
# ROUGE counts shared words. A summary that swaps who did what, or names people who were not in the
# dialogue, loses only the few tokens of the names. Below we take a reference, replace each person's
# name by another name, and score the wrong summary; then we count how many of the model's own
# summaries name someone the reference does not (or miss someone it names).

# %%
def names_in(text):
    """The set of person names (from the task's lexicon) that occur in a text."""
    return {w for w in text.replace(".", " ").replace(",", " ").split() if w in NAMES}


reference = test[0].completion
swap = {n: [m for m in NAMES if m not in names_in(test[0].prompt)][i] for i, n in enumerate(sorted(names_in(reference)))}
wrong_names = " ".join(swap.get(w.rstrip(".,"), w.rstrip(".,")) + w[len(w.rstrip(".,")):] for w in reference.split())
wrong_rouge = rouge_score(wrong_names, reference, rouge_types=("rouge1", "rougeL"))
names_wrong = [names_in(s) != names_in(r.completion) for s, r in zip(summaries_after, test)]
rouge_l_each = [rouge_score(s, r.completion, rouge_types=("rougeL",))["rougeL"].fmeasure for s, r in zip(summaries_after, test)]
wrong_mean = float(np.mean([v for v, w in zip(rouge_l_each, names_wrong) if w])) if any(names_wrong) else None
print(f"reference:        {reference!r}\nnames swapped:    {wrong_names!r}")
print(f"ROUGE-1 {wrong_rouge['rouge1'].fmeasure:.3f} and ROUGE-L {wrong_rouge['rougeL'].fmeasure:.3f} for a summary "
      f"whose {len(swap)} name(s) are all wrong. Of the fine-tuned model's {n_test} test summaries, "
      f"{sum(names_wrong)} name a different set of people than the reference"
      + (f", and those still scored ROUGE-L {wrong_mean:.3f} on average." if wrong_mean is not None else ".")
      + " Read the outputs, not only the score.")
if plt is not None:
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(14, 3.5), gridspec_kw={"width_ratios": [3, 3, 1.4]})
    ax1.plot(*zip(*curve))
    ax1.set_xlabel("step")
    ax1.set_ylabel("training loss")
    ax1.set_title("full fine-tuning on dialogue_summary.jsonl")
    names = ["rouge1", "rouge2", "rougeL"]
    ax2.bar(np.arange(3) - 0.2, [before[n] for n in names], 0.4, label="before")
    ax2.bar(np.arange(3) + 0.2, [after[n] for n in names], 0.4, label="after")
    ax2.set_xticks(range(3), names)
    ax2.set_xlabel("metric (dialogue_summary, the tuned task)")
    ax2.set_ylabel("F1 on the test split")
    ax2.legend()
    ax3.bar([0, 1], [before["translation_bleu"], after["translation_bleu"]], color=["C0", "C1"])
    ax3.set_xticks([0, 1], ["before", "after"])
    ax3.set_xlabel("translation (not tuned)")
    ax3.set_ylabel("BLEU (0-100)")
    bleu_change = after["translation_bleu"] - before["translation_bleu"]
    ax3.set_title(f"the other task: BLEU {'fell' if bleu_change < 0 else 'rose' if bleu_change > 0 else 'held'} "
                  f"{abs(bleu_change):.1f}")
    save_figure(fig, "rouge_before_after.png")

# %% [markdown]
# ## Summary
#
# Exercises: write the JSONL with one template only and test with the others (does the model
# generalize across phrasings?); train for a tenth of the steps; save the model with
# `model.save_pretrained` and reload it.

# %%
summary = {
    "smoke": SMOKE,
    "model_source": toy_info["source"],
    "base_folder": toy_info["folder"],
    "jsonl_lines_written": written,
    "jsonl_records_loaded": len(data),
    "jsonl_blank_lines": data.num_blank_lines,
    "bad_line_error": error_message,
    "truncated_prompts": report.num_source_truncated,
    "truncated_completions": report.num_target_truncated,
    "train_steps": result.global_step,
    "loss_first": curve[0][1],
    "loss_last": curve[-1][1],
    "parameter_tensors_changed": int(changed),
    "parameter_tensors": len(initial),
    "n_test": n_test,
    "before": before,
    "after": after,
    "names_swapped_summary": wrong_names,
    "names_swapped_reference": reference,
    "names_swapped_rouge1": wrong_rouge["rouge1"].fmeasure,
    "names_swapped_rougeL": wrong_rouge["rougeL"].fmeasure,
    "names_swapped_count": len(swap),
    "summaries_with_wrong_names": int(sum(names_wrong)),
    "wrong_name_summaries_mean_rougeL": wrong_mean,
    "translation_bleu_change": after["translation_bleu"] - before["translation_bleu"],
    "wall_seconds": round(time.perf_counter() - WALL, 1),
    "cpu_seconds": round(time.process_time() - CPU, 1),
    "figures": FIGURES,
}
(OUT / "summary.json").write_text(json.dumps(summary, indent=2))
print(f"This run took {summary['wall_seconds']:.0f} s of wall time.")
print("SUMMARY " + json.dumps(summary))
