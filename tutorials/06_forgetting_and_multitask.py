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
# # Tutorial 06: catastrophic forgetting, and multitask fine-tuning as the remedy
#
# **Learning goals.** After this tutorial you can
# 1. measure **catastrophic forgetting**: score every task before and after fine-tuning on a new one;
# 2. read a forgetting matrix $R[j][i]$ (score on task $i$ after stage $j$) and compute
#    **backward transfer** (BWT) from it by hand;
# 3. explain why **FLAN-style multitask fine-tuning** (mix the new task with the old ones) keeps
#    earlier skills, and what it costs on the new task at equal compute;
# 4. decide when forgetting matters ("I only need one task") and when it does not.
#
# Run: `python tutorials/06_forgetting_and_multitask.py` (it prints its own wall time at the end;
# `MINILLM_SMOKE=1` takes seconds). Read alongside: `minillm/evaluation/forgetting.py`,
# `minillm/data/mixture.py`, `benchmarks/forgetting.py` (the same experiment with LoRA as a third arm).

# %% Setup: output folder, figures, tables (the same cell opens every tutorial)
import json
import sys
import time
from pathlib import Path

import numpy as np

TUTORIAL = "06_forgetting_and_multitask"
HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
sys.path[:0] = [str(HERE.parent), str(HERE)]  # minillm from this checkout; tutorials/_setup.py
from _setup import SMOKE, plt, print_table, tutorial_output  # noqa: E402

OUT, FIGURES, save_figure = tutorial_output(TUTORIAL)


import minillm  # noqa: E402
from minillm.data import build_mixture  # noqa: E402
from minillm.evaluation import ForgettingMatrix, backward_transfer, builtin_task, run_task, score_task  # noqa: E402
from minillm.models import T5ForConditionalGeneration  # noqa: E402
from minillm.training.trainer import Trainer  # noqa: E402
from minillm.course import HELD_IN, NEW_TASK  # noqa: E402
from _toy import constant_answer_scores, load_course_base, toy_training_args  # noqa: E402

minillm.manual_seed(0)
WALL, CPU = time.perf_counter(), time.process_time()
print(f"smoke mode: {SMOKE}; figures and summary.json go to {OUT}")

# %% [markdown]
# ## 1. The experiment
#
# Start from the course base (`minillm.course`), instruction-tuned on five held-in tasks
# (`HELD_IN`: news summaries, translation, sentiment, same_plan, word problems). A model can only forget what it knew, so the first table checks each old task against the
# score of a *constant answer* (the commonest training answer: the majority class for sentiment),
# and only the tasks the base does clearly better than that count as "known". A new use case arrives: **antonym** ("the soup is hot" -> "the soup is cold"), a task
# the model has never seen. Adapt a copy of the model two ways, with the same number of steps:
#
# * **single-task**: full fine-tuning on antonym examples only;
# * **multitask (FLAN-style)**: full fine-tuning on antonym *mixed with* the old tasks.
#
# Then score every task on its test split (0-100: ROUGE-L for news summaries, translation BLEU,
# accuracy by option log-likelihood for sentiment and same_plan, exact match for word problems and
# antonym).

# %%
OLD_TASKS = list(HELD_IN)  # NEW_TASK is "antonym": in no mixture of the base
TASKS = OLD_TASKS + [NEW_TASK]
METRIC = {"news_summary": "rougeL", "translation": "bleu", "sentiment": "accuracy", "same_plan": "accuracy",
          "word_problem": "exact_match", "antonym": "exact_match"}
n_eval = 6 if SMOKE else 60
eval_tasks = {name: builtin_task(name, "test", n_eval, seed=0, metrics=(METRIC[name],)) for name in TASKS}

base, tokenizer, toy_info = load_course_base(SMOKE)
base_state = {k: v.copy() for k, v in base.state_dict().items()}
print(f"model source: {toy_info['source']}; {base.num_parameters():,} parameters")


def score(model, stderr=None):
    """{task: score 0-100} on the fixed test examples (template 0, greedy or option likelihood).

    Pass a dict as ``stderr`` to receive each score's standard error (bootstrap for BLEU)."""
    results = {name: score_task(task, run_task(model, tokenizer, task, batch_size=32),
                                n_bootstrap=2 if stderr is None else 100)[0]
               for name, task in eval_tasks.items()}
    if stderr is not None:
        stderr.update({name: r.stderr for name, r in results.items()})
    return {name: r.value for name, r in results.items()}


def fresh_copy():
    """A new model with the base's weights, so every arm starts from the same point."""
    model = T5ForConditionalGeneration(base.config)
    model.load_state_dict(base_state)
    return model


base_stderr = {}
base_scores = score(base, base_stderr)
chance = constant_answer_scores(eval_tasks)
# "Known": the base beats the constant answer by more than two standard errors.
known = [t for t in OLD_TASKS if base_scores[t] - chance[t] > 2 * base_stderr[t]]
print_table(["task", "constant answer", "base score", "base std. error", "known (> constant + 2 s.e.)"],
            [[t, chance[t], base_scores[t], base_stderr[t], "yes" if t in known else "no"] for t in TASKS])
unknown = [t for t in OLD_TASKS if t not in known]
print(f"In this run the base beat the constant answer on {len(known)} of {len(OLD_TASKS)} old tasks"
      + (f" ({', '.join(known)})" if known else "")
      + (f"; on {', '.join(unknown)} it did not, so a drop there would not be forgetting." if unknown else "."))

# %% [markdown]
# ## 2. Two ways to adapt
#
# Both arms see the same number of examples (steps x batch). In the multitask arm antonym gets
# half of them and the five old tasks share the other half (examples-proportional mixing of a
# full antonym pool and five pools a fifth its size), so it sees half as many antonym examples.
# Whether that costs it anything on antonym is for the numbers of section 3 to say.
#
# Why 300 steps of 32: antonym asks the base to copy a sentence word for word, which it never had to
# do (asked for an antonym, the base translates into Zorbish), and learning to copy is most of the
# work: after 300 steps of full fine-tuning (200 test sentences, issue 22's probe), 75 of the 92 wrong
# answers had the right opposite adjective and a wrong copy, often the two nouns swapped ("the
# light fox likes the student" for "the light student found the fox"). On an earlier build of the
# same recipe, 200 steps of 16 taught single-task 5% exact match.

# %%
n_pool = 40 if SMOKE else 1500
steps = 6 if SMOKE else 300
datasets = {"single-task": build_mixture([NEW_TASK], n_pool, seed=2),
            "multitask": build_mixture(TASKS, {t: n_pool if t == NEW_TASK else n_pool // len(OLD_TASKS)
                                               for t in TASKS}, seed=2)}
arms, arm_stderr, losses = {}, {}, {}
for arm, records in datasets.items():
    model = fresh_copy()
    started = time.perf_counter()
    result = Trainer(model, tokenizer, toy_training_args(OUT / arm, steps, learning_rate=1e-3, batch_size=32), records).train()
    arm_stderr[arm] = {}
    arms[arm] = score(model, arm_stderr[arm])
    losses[arm] = result.train_loss
    share = sum(r.task == NEW_TASK for r in records) / len(records)
    print(f"{arm}: {len(records)} records ({share:.0%} antonym), {steps} steps in "
          f"{time.perf_counter() - started:.0f} s, mean training loss {result.train_loss:.3f}")

# %% [markdown]
# ## 3. The forgetting matrix and backward transfer
#
# For each arm, row 0 is the base and row 1 is after fine-tuning. `learned_at` says when each
# task was learned: the old tasks at stage 0, antonym at stage 1. Backward transfer averages
# what later training did to the earlier tasks:
#
# $$\text{BWT} = \frac{1}{|E|}\sum_{i \in E} \big(R[\text{last}][i] - R[\text{learned}(i)][i]\big),$$
#
# with $E$ the tasks learned before the last stage. BWT < 0 is forgetting.

# %%
learned_at = {t: 0 for t in OLD_TASKS} | {NEW_TASK: 1}
matrices, bwt, bwt_by_hand = {}, {}, {}
for arm, scores in arms.items():
    m = ForgettingMatrix(TASKS, learned_at=learned_at)
    m.record("base", base_scores)
    m.record(f"after {arm}", scores)
    matrices[arm], bwt[arm] = m, m.backward_transfer()
    R = np.array(m.R)
    bwt_by_hand[arm] = float(np.mean([R[1, i] - R[0, i] for i, t in enumerate(TASKS) if learned_at[t] < 1]))
    print(f"\n{arm}:\n{m.table(digits=1)}")
    print(f"BWT = {bwt[arm]:+.2f} (by hand from the matrix: {bwt_by_hand[arm]:+.2f}); "
          f"{NEW_TASK} gained {m.change(NEW_TASK):+.1f}")
print_table(["arm", f"{NEW_TASK} gain", "BWT (old tasks)", "worst old-task drop"],
            [[arm, matrices[arm].change(NEW_TASK), bwt[arm], min(matrices[arm].change(t) for t in OLD_TASKS)]
             for arm in arms])
print(f"In this run single-task fine-tuning gave BWT {bwt['single-task']:+.1f} and multitask {bwt['multitask']:+.1f} "
      f"points; antonym rose by {matrices['single-task'].change(NEW_TASK):+.1f} and "
      f"{matrices['multitask'].change(NEW_TASK):+.1f} points respectively.")


def forgetting_verdict(known, drop, stderr):
    """The conclusion, computed: mean loss on the known old tasks per arm, and how much mixing saved."""
    if not known:
        return "No old task was above its constant-answer level in the base, so this run cannot show forgetting."
    loss = {arm: sum(max(0.0, -drop[arm][t]) for t in known) / len(known) for arm in drop}
    kept = [t for t in known if drop["multitask"][t] >= -2 * stderr[t]]
    text = (f"On the {len(known)} known old task(s) single-task fine-tuning lost {loss['single-task']:.1f} points "
            f"on average and multitask {loss['multitask']:.1f}")
    if loss["single-task"] > 0:
        text += f": mixing the old tasks in removed {100 * (1 - loss['multitask'] / loss['single-task']):.0f}% of the forgetting"
    lost = [t for t in known if t not in kept]
    text += (f". Multitask kept {', '.join(kept) or 'none'} within two standard errors"
             + (f" and still lost ground on {', '.join(lost)}." if lost else ", so it kept every known skill."))
    return text


def new_task_verdict(scores, stderr):
    """What multitask paid on the new task, computed: the arms' difference against two standard errors."""
    diff = scores["single-task"][NEW_TASK] - scores["multitask"][NEW_TASK]
    se = float(np.hypot(stderr["single-task"][NEW_TASK], stderr["multitask"][NEW_TASK]))
    if diff > 2 * se:
        found = f"multitask paid for it: {diff:.1f} points less than single-task"
    elif diff < -2 * se:
        found = f"multitask scored {-diff:.1f} points more than single-task"
    else:
        found = f"the two arms were within two standard errors (difference {diff:+.1f}, s.e. {se:.1f}), so no cost showed"
    return (f"On {NEW_TASK} single-task reached {scores['single-task'][NEW_TASK]:.1f} and multitask "
            f"{scores['multitask'][NEW_TASK]:.1f} with half the {NEW_TASK} examples: {found}.")


drops = {arm: {t: matrices[arm].change(t) for t in OLD_TASKS} for arm in arms}
verdict = forgetting_verdict(known, drops, base_stderr)
new_verdict = new_task_verdict(arms, arm_stderr)
print(verdict)
print(new_verdict)

# %% [markdown]
# `ForgettingMatrix` is bookkeeping around a plain function: `backward_transfer(R, learned_at)`
# takes a bare list of rows, and must give the same numbers.

# %%
assert all(abs(backward_transfer(matrices[a].R, [learned_at[t] for t in TASKS]) - bwt[a]) < 1e-12 for a in arms)


def error_bar(task, value, stderr):
    """(below, above) the bar: one standard error, never past 0 or 100.

    For a share (accuracy, exact match) it is Wilson's score interval at z = 1, which stays open at
    0% and 100%, where the plain error sqrt(p(1-p)/n) is zero: 0 of 60 right still allows about 1.6%."""
    if METRIC[task] not in ("accuracy", "exact_match"):
        return min(stderr, value), min(stderr, 100 - value)
    p, n = value / 100, n_eval
    center = (p + 1 / (2 * n)) / (1 + 1 / n)
    half = (p * (1 - p) / n + 1 / (4 * n * n)) ** 0.5 / (1 + 1 / n)
    return 100 * (p - (center - half)), 100 * (center + half - p)


if plt is not None:
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.27
    errors = {"base": base_stderr} | arm_stderr
    for j, (label, scores) in enumerate([("base", base_scores)] + list(arms.items())):
        x = np.arange(len(TASKS)) + (j - 1) * width
        bars = np.array([error_bar(t, scores[t], errors[label][t]) for t in TASKS]).T
        ax.bar(x, [scores[t] for t in TASKS], width, yerr=bars, capsize=3, label=label)
        for xi, t, above in zip(x, TASKS, bars[1]):  # the value on each bar, so a bar near zero still reads
            ax.text(xi, scores[t] + above + 0.5, f"{scores[t]:.1f}", ha="center", fontsize=7)
    ax.set_xticks(range(len(TASKS)), [t + (" (new)" if t == NEW_TASK else "") for t in TASKS], fontsize=8)
    ax.set_ylabel("test score (0-100)")
    ax.set_ylim(0, 112)
    ax.set_title(f"BWT: single-task {bwt['single-task']:+.1f}, multitask {bwt['multitask']:+.1f}\n"
                 "error bars: one s.e. (bootstrap for ROUGE-L and BLEU, Wilson's interval for shares)", fontsize=9)
    ax.legend(loc="upper right", fontsize=8)
    save_figure(fig, "forgetting.png")

# %% [markdown]
# **When does it matter?** If antonyms are all you will ever ask for, forgetting is no problem:
# take the single-task model. If the model must keep its other skills, mix the old tasks in
# (multitask, as FLAN does with hundreds of tasks) or freeze the base and train a small add-on
# (PEFT, tutorials 07-08: the base weights stay frozen, so switching the adapter off gives the
# base back exactly). Switched *on*, an adapter trained on antonym alone is no shield:
# `benchmarks/forgetting.py` measured LoRA on this base (3 seeds) at BWT -31.6 (q,v) and -32.8 (all
# linear layers + lm_head) against full fine-tuning's -25.6, with 85-94% of its written answers to old
# prompts shaped like an antonym answer ("the ..."). PEFT protects the old skills by keeping the base,
# so that the adapter can be switched off or swapped, not by forgetting less while it is on.
#
# ## Summary
#
# Exercises: double the steps of both arms; give antonym a quarter of the multitask mixture
# (equal pools: `build_mixture(TASKS, n_pool)`); add `dialogue_summary` to the scored tasks.

# %%
summary = {
    "model_source": toy_info["source"],
    "base_folder": toy_info["folder"],
    "tasks": TASKS,
    "learned_at": [learned_at[t] for t in TASKS],
    "n_eval": n_eval,
    "steps": steps,
    "base_scores": base_scores,
    "base_stderr": base_stderr,
    "constant_answer": chance,
    "known_old_tasks": known,
    "old_task_change": drops,
    "verdict": verdict,
    "new_task_verdict": new_verdict,
    "arm_scores": arms,
    "arm_stderr": arm_stderr,
    "error_bars": {label: {t: error_bar(t, scores[t], errors[t]) for t in TASKS}
                   for label, scores, errors in [("base", base_scores, base_stderr)]
                   + [(arm, arms[arm], arm_stderr[arm]) for arm in arms]},
    "matrices": {arm: m.to_dict() for arm, m in matrices.items()},
    "bwt": bwt,
    "bwt_by_hand": bwt_by_hand,
    "new_task_gain": {arm: matrices[arm].change(NEW_TASK) for arm in arms},
    "train_loss": losses,
    "wall_seconds": round(time.perf_counter() - WALL, 1),
    "cpu_seconds": round(time.process_time() - CPU, 1),
    "figures": FIGURES,
}
(OUT / "summary.json").write_text(json.dumps(summary, indent=2))
print(f"This run took {summary['wall_seconds']:.0f} s of wall time and {summary['cpu_seconds']:.0f} s of CPU time "
      "(on a machine shared with other work the wall time is the larger).")
print("SUMMARY " + json.dumps(summary))
