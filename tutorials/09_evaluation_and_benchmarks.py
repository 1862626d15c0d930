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
# # Tutorial 09: evaluation, from one ROUGE score to a HELM-style report
#
# **Learning goals.** After this tutorial you can
# 1. compute ROUGE-1, ROUGE-2 and ROUGE-L by hand (n-gram counting with clipping, the longest
#    common subsequence) and get exactly the library's numbers;
# 2. compute BLEU by hand (clipped n-gram precisions, brevity penalty, geometric mean,
#    smoothing) for one sentence and for a corpus, and get exactly the library's numbers;
# 3. say why ROUGE suits summaries (recall of the reference) and BLEU suits translations
#    (precision of the output, with a penalty for being too short);
# 4. run a benchmark suite (mini-GLUE, averaged the GLUE way) and read a HELM-style report
#    (accuracy, calibration, robustness, efficiency), with standard errors.
#
# Run: `python tutorials/09_evaluation_and_benchmarks.py` (it prints its own wall time at the end;
# `MINILLM_SMOKE=1` takes seconds). Read alongside: `minillm/metrics/rouge.py`,
# `minillm/metrics/bleu.py`, `minillm/evaluation/suites.py`, `minillm/evaluation/helm.py`.

# %% Setup: output folder, figures, tables (the same cell opens every tutorial)
import json
import math
import re
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

TUTORIAL = "09_evaluation_and_benchmarks"
HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
sys.path[:0] = [str(HERE.parent), str(HERE)]  # minillm from this checkout; tutorials/_setup.py
from _setup import SMOKE, plt, print_table, tutorial_output  # noqa: E402

OUT, FIGURES, save_figure = tutorial_output(TUTORIAL)


import minillm  # noqa: E402
from minillm.data import format_example, get_task  # noqa: E402
from minillm.course import HELD_IN, HELD_OUT  # noqa: E402
from minillm.evaluation import builtin_task, helm_report, run_mini_glue  # noqa: E402
from minillm.metrics import corpus_bleu, rouge_score, sentence_bleu, tokenize_13a  # noqa: E402
from minillm.evaluation.harness import generate_texts  # noqa: E402
from _toy import load_course_base  # noqa: E402

minillm.manual_seed(0)
WALL, CPU = time.perf_counter(), time.process_time()
print(f"smoke mode: {SMOKE}; figures and summary.json go to {OUT}")

# %% [markdown]
# ## 1. ROUGE by hand
#
# ROUGE compares a generated summary with a reference written by a person. Tokens first (as
# Google's `rouge-score` does): lowercase, every run of characters outside `[a-z0-9]` becomes a
# space, split. Then for ROUGE-N count the n-grams of each side; an n-gram matches at most as
# often as it occurs on *both* sides (clipping):
#
# $$\text{overlap} = \sum_g \min(c_P(g), c_R(g)),\quad P = \frac{\text{overlap}}{\#\text{n-grams in } P},\quad
# R = \frac{\text{overlap}}{\#\text{n-grams in } R},\quad F_1 = \frac{2PR}{P+R}.$$
#
# ROUGE-L uses the **longest common subsequence** (in order, not necessarily contiguous)
# instead: $P = \text{LCS}/|P|$, $R = \text{LCS}/|R|$. It is filled in by dynamic programming:
# $L[i][j] = L[i-1][j-1] + 1$ if the tokens match, else $\max(L[i-1][j], L[i][j-1])$.

# %%
reference = "Paul will buy six lemons for Sam at the market."
prediction = "Paul buys six lemons at the market for Sam."


def rouge_tokens(text):
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).split()


def f1(overlap, n_pred, n_ref):
    precision, recall = overlap / max(n_pred, 1), overlap / max(n_ref, 1)
    return precision, recall, (2 * precision * recall / (precision + recall) if precision + recall else 0.0)


def rouge_n_by_hand(pred, ref, n):
    grams = lambda t: Counter(tuple(t[i:i + n]) for i in range(len(t) - n + 1))  # noqa: E731
    p, r = grams(pred), grams(ref)
    return f1(sum(min(c, r[g]) for g, c in p.items()), sum(p.values()), sum(r.values()))


def lcs_table(a, b):
    table = np.zeros((len(a) + 1, len(b) + 1), dtype=int)
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            table[i, j] = table[i - 1, j - 1] + 1 if a[i - 1] == b[j - 1] else max(table[i - 1, j], table[i, j - 1])
    return table


def rouge_by_hand(pred_text, ref_text):
    pred, ref = rouge_tokens(pred_text), rouge_tokens(ref_text)
    scores = {f"rouge{n}": rouge_n_by_hand(pred, ref, n) for n in (1, 2)}
    scores["rougeL"] = f1(int(lcs_table(ref, pred)[-1, -1]), len(pred), len(ref))
    return scores


ref_tokens, pred_tokens = rouge_tokens(reference), rouge_tokens(prediction)
table = lcs_table(ref_tokens, pred_tokens)
hand_rouge = rouge_by_hand(prediction, reference)
library_rouge = rouge_score(prediction, reference, ["rouge1", "rouge2", "rougeL"])
rouge_diff = max(abs(h - l) for k in hand_rouge for h, l in zip(hand_rouge[k], library_rouge[k]))
print(f"reference tokens:  {ref_tokens}\nprediction tokens: {pred_tokens}")
print_table(["", "precision", "recall", "F1", "library F1"],
            [[k, *hand_rouge[k], library_rouge[k].fmeasure] for k in hand_rouge])
print(f"In this run the LCS had {table[-1, -1]} tokens, and the hand-computed ROUGE matched rouge_score within "
      f"{rouge_diff:.1e} (precision, recall and F1 of all three types).")
if plt is not None:
    fig, ax = plt.subplots(figsize=(6.5, 5))
    image = ax.imshow(table, cmap="Greens")
    fig.colorbar(image, ax=ax, label="L[i][j]: LCS length so far")
    ax.set_xlabel("prediction tokens (j)")
    ax.set_ylabel("reference tokens (i)")
    for (i, j), v in np.ndenumerate(table):
        ax.text(j, i, v, ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(pred_tokens) + 1), [""] + pred_tokens, rotation=60)
    ax.set_yticks(range(len(ref_tokens) + 1), [""] + ref_tokens)
    ax.set_title(f"LCS table: L[i][j] for reference[:i], prediction[:j]; LCS = {table[-1, -1]}")
    save_figure(fig, "lcs_table.png")

# %% [markdown]
# ## 2. BLEU by hand
#
# BLEU asks the opposite question: how much of the *output* is in the reference? For
# n = 1..4, the clipped n-gram precision $p_n$ (clipped counts / output n-grams). Precision alone
# would reward a two-word output, so a **brevity penalty** punishes outputs shorter than the
# reference: $BP = 1$ if $c \ge r$, else $e^{1 - r/c}$ ($c$, $r$: output and reference lengths).
#
# $$\text{BLEU} = 100 \cdot BP \cdot \exp\Big(\tfrac{1}{N}\sum_{n=1}^{N} \log p_n\Big)$$
#
# A corpus BLEU sums the counts over all sentences *before* dividing. One zero $p_n$ makes BLEU 0,
# so sacreBLEU's default **exp smoothing** gives the k-th order with no match $p_n = 1/(2^k \cdot
# \text{total}_n)$. Sentence BLEU also uses the *effective order*: orders longer than the sentence
# are left out. Tokens come from `tokenize_13a`, WMT's standard tokenizer (it splits off punctuation).

# %%
def bleu_by_hand(hypotheses, references, effective_order=False, max_n=4):
    """Corpus BLEU (one reference per hypothesis), written out; returns (score, details)."""
    counts, totals, c, r = np.zeros(max_n), np.zeros(max_n), 0, 0
    for hyp, ref in zip(hypotheses, references):
        h, g = tokenize_13a(hyp.rstrip()), tokenize_13a(ref.rstrip())
        c, r = c + len(h), r + len(g)
        for n in range(1, max_n + 1):
            hyp_grams = Counter(tuple(h[i:i + n]) for i in range(len(h) - n + 1))
            ref_grams = Counter(tuple(g[i:i + n]) for i in range(len(g) - n + 1))
            counts[n - 1] += sum(min(k, ref_grams[gram]) for gram, k in hyp_grams.items())
            totals[n - 1] += sum(hyp_grams.values())
    bp = 1.0 if c >= r else (math.exp(1 - r / c) if c > 0 else 0.0)
    orders = int((totals > 0).sum()) if effective_order else max_n
    if counts.sum() == 0 or orders == 0 or (not effective_order and (totals == 0).any()):
        return 0.0, dict(counts=counts, totals=totals, bp=bp, precisions=np.zeros(max_n))
    precisions, halvings = np.zeros(max_n), 1
    for n in range(orders):
        if counts[n] > 0:
            precisions[n] = counts[n] / totals[n]
        else:  # exp smoothing
            halvings *= 2
            precisions[n] = 1 / (halvings * totals[n])
    score = 100 * bp * math.exp(np.log(precisions[:orders]).mean())
    return score, dict(counts=counts, totals=totals, bp=bp, precisions=precisions)


example = get_task("translation").examples("test", 1, seed=0)[0]
bleu_ref = example["target"]
words = bleu_ref.split()
bleu_hyp = " ".join(words[:-2] + words[-1:])  # a translation that drops one word
hand_sentence, details = bleu_by_hand([bleu_hyp], [bleu_ref], effective_order=True)
library_sentence = sentence_bleu(bleu_hyp, [bleu_ref])
print(f"reference:  {bleu_ref!r}\nhypothesis: {bleu_hyp!r}")
print_table(["n", "clipped matches", "output n-grams", "p_n"],
            [[n + 1, int(details["counts"][n]), int(details["totals"][n]), float(details["precisions"][n])]
             for n in range(4)])
print(f"In this run BP = {details['bp']:.4f}; sentence BLEU by hand = {hand_sentence:.6f}, "
      f"sentence_bleu = {library_sentence.score:.6f} (difference {abs(hand_sentence - library_sentence.score):.1e}).")

# %% [markdown]
# ## 3. The same metrics on a model's outputs
#
# The worked examples were tiny; now the course base (`minillm.course`, loaded by
# `tutorials/_toy.py`) translates and summarizes held-out examples, and both implementations
# score the corpus. Empty or garbled outputs are edge cases the hand versions must handle too.

# %%
model, tokenizer, toy_info = load_course_base(SMOKE)
n_corpus = 6 if SMOKE else 100
pairs = {name: [format_example(name, ex, template_id=0) for ex in get_task(name).examples("test", n_corpus, seed=1)]
         for name in ("translation", "dialogue_summary")}
outputs = {name: generate_texts(model, tokenizer, [p for p, _ in prs], max_new_tokens=32)
           for name, prs in pairs.items()}
translation_refs = [t for _, t in pairs["translation"]]
hand_corpus_bleu = bleu_by_hand(outputs["translation"], translation_refs)[0]
library_corpus_bleu = corpus_bleu(outputs["translation"], [translation_refs]).score
summary_refs = [t for _, t in pairs["dialogue_summary"]]
hand_l = [rouge_by_hand(p, r)["rougeL"][2] for p, r in zip(outputs["dialogue_summary"], summary_refs)]
library_l = [rouge_score(p, r, ["rougeL"])["rougeL"].fmeasure
             for p, r in zip(outputs["dialogue_summary"], summary_refs)]
corpus_rouge_diff = float(np.max(np.abs(np.array(hand_l) - np.array(library_l))))
corpus_bleu_diff = abs(hand_corpus_bleu - library_corpus_bleu)
print_table(["metric on the model's outputs", "by hand", "library"],
            [["corpus BLEU (translation)", hand_corpus_bleu, library_corpus_bleu],
             ["mean ROUGE-L F1 (summaries)", float(np.mean(hand_l)), float(np.mean(library_l))]])
print(f"In this run ({toy_info['source']} model, {n_corpus} examples each) the largest per-example ROUGE-L "
      f"difference was {corpus_rouge_diff:.1e} and the corpus BLEU difference {corpus_bleu_diff:.1e}.")
for (prompt, ref), out in list(zip(pairs["translation"], outputs["translation"]))[:2]:
    print(f"  {prompt.splitlines()[-1]!r}\n    reference {ref!r}\n    output    {out!r}")
assert max(rouge_diff, corpus_rouge_diff) < 1e-9
assert max(abs(hand_sentence - library_sentence.score), corpus_bleu_diff) < 1e-9

# %% [markdown]
# ## 4. A benchmark suite: mini-GLUE
#
# GLUE reports one number: the mean over tasks of each task's mean over its metrics (so a task
# with two metrics weighs as much as one with one). mini-GLUE casts the built-in tasks GLUE's
# way; we give it the tasks the course base was tuned on (`HELD_IN`) and the one it never saw
# (`HELD_OUT`, dialogue summaries), so the suite's average mixes what the base knows with what it
# does not, as a benchmark of held-out tasks would. Labels (sentiment, same_plan) are scored as
# multiple choice by option log-likelihood; the rest are generated. We use the FLAN templates the
# model was trained with (`prompt_style="flan"`). All values are 0-100 with a standard error,
# because a hundred examples are still a small sample.

# %%
n_bench = 6 if SMOKE else 100
glue_report, glue = run_mini_glue(model, tokenizer, n=n_bench, prompt_style="flan", batch_size=32, n_bootstrap=50,
                                   tasks=HELD_IN + [HELD_OUT])
print(glue_report.table())
print(glue.format())
glue_by_hand = float(np.mean([np.mean([r.value for r in glue_report.results if r.task == t])
                              for t in dict.fromkeys(r.task for r in glue_report.results)]))
print(f"In this run the GLUE-style score was {glue.score:.2f}; averaging the table by hand gives {glue_by_hand:.2f}.")

# %% [markdown]
# ## 5. A HELM-style report
#
# HELM's point: one accuracy hides what matters when you deploy. For each classification-style
# scenario we report **accuracy**; **calibration** (expected calibration error of the label
# probabilities: does "90% sure" mean 90% right? lower is better); **robustness** (an example
# counts only if it is solved clean *and* under typos, casing changes and joined words); and
# **efficiency** (tokens per second, parameters).

# %%
helm_tasks = [builtin_task(name, "test", n_bench) for name in ("sentiment", "same_plan", "word_problem")]
helm = helm_report(model, tokenizer, tasks=helm_tasks, batch_size=32)
print(helm.table())
rows = {r.scenario: r for r in helm.rows}
print("In this run " + "; ".join(f"{r.scenario}: accuracy {r.accuracy:.1f}, robustness {r.robustness:.1f}"
                                 + (f", ECE {r.ece:.3f}" if r.ece is not None else "") for r in helm.rows) + ".")
if plt is not None:
    fig, (ax, ax_r) = plt.subplots(1, 2, figsize=(12, 3.8), gridspec_kw={"width_ratios": [2, 1]})
    kinds = ["clean"] + list(helm.rows[0].perturbed_accuracy)
    for j, r in enumerate(helm.rows):
        ax.bar(np.arange(len(kinds)) + (j - 1) * 0.27, [r.accuracy] + list(r.perturbed_accuracy.values()), 0.27,
               label=f"{r.scenario} ({r.metric})")
    ax.set_xticks(range(len(kinds)), kinds)
    ax.set_xlabel("input version")
    ax.set_ylabel("accuracy on that version (0-100)")
    ax.set_title("per-perturbation accuracy")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3)  # below: off the bars and ticks
    names = [r.scenario for r in helm.rows]
    ax_r.bar(np.arange(len(names)) - 0.2, [r.accuracy for r in helm.rows], 0.4, label="accuracy (clean)")
    ax_r.bar(np.arange(len(names)) + 0.2, [r.robustness for r in helm.rows], 0.4,
             label="robustness (solved clean and under every perturbation)")
    ax_r.set_xticks(range(len(names)), names)
    ax_r.set_xlabel("scenario")
    ax_r.set_ylabel("score (0-100)")
    ax_r.set_title("HELM's robustness metric")
    ax_r.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=1)
    save_figure(fig, "helm_robustness.png")

# %% [markdown]
# ## Summary
#
# Exercises: give the BLEU hypothesis a missing *first* word and predict how $p_2..p_4$ change;
# score a prediction against two references (`rouge_score(pred, [ref_a, ref_b])` keeps the best);
# rerun mini-GLUE with `prompt_style="t5"` and explain the drop.

# %%
summary = {
    "model_source": toy_info["source"],
    "base_folder": toy_info["folder"],
    "rouge_hand": {k: list(v) for k, v in hand_rouge.items()},
    "rouge_library": {k: list(v) for k, v in library_rouge.items()},
    "rouge_max_abs_diff": rouge_diff,
    "lcs_length": int(table[-1, -1]),
    "sentence_bleu_hand": hand_sentence,
    "sentence_bleu_library": library_sentence.score,
    "corpus_bleu_hand": hand_corpus_bleu,
    "corpus_bleu_library": library_corpus_bleu,
    "corpus_rougeL_max_abs_diff": corpus_rouge_diff,
    "glue_per_task": glue.per_task,
    "glue_score": glue.score,
    "glue_score_by_hand": glue_by_hand,
    "glue_results": [{"task": r.task, "metric": r.metric, "value": r.value, "stderr": r.stderr}
                     for r in glue_report.results],
    "helm": helm.to_dict()["scenarios"],
    "wall_seconds": round(time.perf_counter() - WALL, 1),
    "cpu_seconds": round(time.process_time() - CPU, 1),
    "figures": FIGURES,
}
(OUT / "summary.json").write_text(json.dumps(summary, indent=2))
print(f"This run took {summary['wall_seconds']:.0f} s of wall time.")
print("SUMMARY " + json.dumps(summary))
