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
# # Tutorial 04: prompting and generation
#
# **Learning goals.** After this tutorial you can
# 1. place prompt engineering in the **generative-AI project lifecycle** (scope, select, adapt,
#    evaluate, deploy) and say when it is enough and when to fine-tune;
# 2. write zero-, one- and few-shot prompts (**in-context learning**) and measure what the shots
#    buy on a small model;
# 3. decode with greedy search, beam search and sampling, and say what temperature, top-k and
#    top-p do to the next-token distribution;
# 4. check the identities that make decoding testable: one beam is greedy, top-k = 1 sampling is
#    greedy, and the same seed draws the same sample.
#
# Run: `python tutorials/04_prompting_and_generation.py` (it prints its own wall time at the end;
# the first tutorial you run builds the course base once, see `tutorials/_toy.py`; `MINILLM_SMOKE=1`
# takes seconds). Read alongside:
# `minillm/generation.py`, `minillm/data/templates.py`, `minillm/evaluation/harness.py`.

# %% Setup: output folder, figures, tables (the same cell opens every tutorial)
import json
import sys
import time
from pathlib import Path

import numpy as np

TUTORIAL = "04_prompting_and_generation"
HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
sys.path[:0] = [str(HERE.parent), str(HERE)]  # minillm from this checkout; tutorials/_setup.py
from _setup import SMOKE, plt, print_table, tutorial_output  # noqa: E402

OUT, FIGURES, save_figure = tutorial_output(TUTORIAL)


import minillm  # noqa: E402
from minillm.data import format_example, get_task  # noqa: E402
from minillm.evaluation import build_prompts, builtin_task, evaluate, select_shots  # noqa: E402
from minillm.generation import filter_logits  # noqa: E402
from minillm.course import FEW_SHOT_TASKS  # noqa: E402
from _toy import load_course_base  # noqa: E402

minillm.manual_seed(0)
WALL, CPU = time.perf_counter(), time.process_time()
print(f"smoke mode: {SMOKE}; figures and summary.json go to {OUT}")

# %% [markdown]
# ## 1. The project lifecycle, and where this tutorial sits
#
# | stage | the question | in this course |
# |---|---|---|
# | **scope** | what exactly must the model do? one task or many? | the course base's held-in tasks, then dialogue summaries |
# | **select** | use an existing model or pretrain your own? | the course base (`minillm.course`; tutorial 03 shows how it is made) |
# | **adapt & align** | prompt engineering; fine-tuning (full or PEFT) if prompting is not enough; alignment with human feedback (RLHF); **evaluate** each step (metrics, benchmarks) | *this tutorial*: prompts; 05-08: fine-tuning; 09: evaluation; RLHF: not in this course |
# | **application integration** | optimize and deploy the model for inference (decoding settings, size, latency); augment it with what it lacks (tools, retrieval) and build the application around it | section 3: decoding settings; the rest: not in this course |
#
# Prompting is the cheapest adaptation: no weights change. We try it first, on the course base:
# a T5 pretrained with span corruption and instruction-tuned on the held-in tasks, as FLAN-T5 is.

# %%
model, tokenizer, toy_info = load_course_base(SMOKE)
print(f"model source: {toy_info['source']}; {model.num_parameters():,} parameters")

# %% [markdown]
# ## 2. Zero-, one- and few-shot prompts
#
# A **zero-shot** prompt is the instruction and the input. A **k-shot** prompt puts k solved
# examples ("shots") first, in the same template, so the model can infer the task *in context*.
# Large models get much better with a few shots; small ones often do not, and the shots eat
# the context window. Shots come from the train split, never from the test examples we score.

# %%
task = builtin_task("word_problem", "test", n=4, seed=0)
prompts, _ = build_prompts(task, shots=2, seed=0)
shots = select_shots(task.shot_pool, task.examples[0], 2, seed=0, query_index=0)
print("a 2-shot prompt:\n" + "-" * 40 + "\n" + prompts[0] + "\n" + "-" * 40)
solved = ["\n".join(format_example("word_problem", s, template_id=0)) for s in shots]
prompt_contains_shots = all(s in prompts[0] for s in solved) and prompts[0].endswith(
    format_example("word_problem", task.examples[0], template_id=0)[0])
print(f"In this run the 2-shot prompt {'contains' if prompt_contains_shots else 'does NOT contain'} both solved "
      f"shots and ends with the unsolved question.")

# %%
n_eval = 4 if SMOKE else 200
shot_counts = [0, 1, 2, 4]
icl_tasks = [builtin_task(name, "test", n_eval, seed=0, **({"metrics": ("bleu",)} if name == "translation" else {}))
             for name in FEW_SHOT_TASKS]  # the course base's short held-in tasks: two shots still fit
icl = {t.name: {} for t in icl_tasks}
for k in shot_counts:
    report = evaluate(model, tokenizer, icl_tasks, shots=k, seed=0, batch_size=32, n_bootstrap=20)
    for r in report.results:
        icl[r.task][k] = (r.value, r.stderr)
print_table(["task (metric, 0-100)"] + [f"{k}-shot" for k in shot_counts],
            [[f"{name} ({t.metrics[0]})"] + [f"{icl[name][k][0]:.1f} ± {icl[name][k][1]:.1f}" for k in shot_counts]
             for name, t in zip(icl, icl_tasks)])
change = {name: icl[name][2][0] - icl[name][0][0] for name in icl}


def shot_effects(scores: dict) -> dict:
    """{task: (better, worse)}: the shot counts that beat / fall below 0-shot by more than two
    standard errors of the difference."""
    effects = {}
    for name, by_k in scores.items():
        (v0, e0) = by_k[0]
        margin = {k: 2 * (by_k[k][1] ** 2 + e0 ** 2) ** 0.5 for k in shot_counts[1:]}
        effects[name] = ([k for k in shot_counts[1:] if by_k[k][0] - v0 > margin[k]],
                         [k for k in shot_counts[1:] if v0 - by_k[k][0] > margin[k]])
    return effects


def shot_verdict(effects: dict) -> str:
    """The per-task sentence, and how it compares with the course's note on small models."""
    parts = [f"{name}: " + (f"better than 0-shot with {better} shots" if better else "no shot count better")
             + (f", worse with {worse}" if worse else "") for name, (better, worse) in effects.items()]
    gained = [name for name, (better, _) in effects.items() if better]
    lost = [name for name, (_, worse) in effects.items() if worse]
    course = ("so, as the course notes for small models, in-context examples did not help this one" if not gained
              else f"so in-context examples helped {', '.join(gained)}, more than the course's note on small "
                   "models would lead you to expect")
    return "; ".join(parts) + f". {len(gained)} of {len(effects)} tasks gained and {len(lost)} lost, {course}"


prompt_tokens = {k: float(np.mean([len(tokenizer.encode(p)) for p in build_prompts(icl_tasks[0], k, 0)[0]]))
                 for k in shot_counts}
icl_effects = shot_effects(icl)
icl_verdict = shot_verdict(icl_effects)
print("In this run going from 0 to 2 shots changed " + ", ".join(f"{name} by {d:+.1f}" for name, d in change.items()) +
      f" points (n = {n_eval} test examples each; the ± is one standard error). Against 0-shot, by more than two "
      f"standard errors of the difference: {icl_verdict}. Each shot lengthens the prompt: a {icl_tasks[0].name} "
      "prompt averaged " + ", ".join(f"{prompt_tokens[k]:.0f} tokens at {k} shots" for k in shot_counts) + ".")

# %% [markdown]
# ## 3. Decoding: greedy, beam search, sampling
#
# The decoder outputs a distribution over the next token; a **decoding strategy** turns it into
# text. **Greedy** takes the most likely token each step. **Beam search** keeps the `num_beams`
# running partial sequences with the highest *total* log-probability (a raw sum); a sequence
# that has ended (`</s>`) is ranked against the other finished ones by its sum divided by
# length$^{\text{length\_penalty}}$, so the length normalization applies to finished sequences only. **Sampling** draws from
# the distribution, reshaped first:
# * **temperature** T divides the logits: T < 1 sharpens (towards greedy), T > 1 flattens;
# * **top-k** keeps only the k most likely tokens;
# * **top-p** (nucleus) keeps the smallest set of most likely tokens whose probability reaches p.
#
# First, what these do to one real next-token distribution. We summarize a news report, a task
# the base was tuned on (a dialogue, which it has never been asked to summarize, gets a one-word
# answer, and there is little to decode), and take the distribution at the step of the greedy
# summary where the model was least sure: the one with the largest entropy $-\sum_v p_v \log p_v$.

# %%
example = get_task("news_summary").examples("test", 1, seed=0)[0]
prompt, reference = format_example("news_summary", example, template_id=0)
enc = tokenizer.batch_encode([prompt])
greedy_ids = [int(i) for i in model.generate(enc["input_ids"], enc["attention_mask"], max_new_tokens=32)[0, 1:]]
with minillm.no_grad():  # every step's logits at once: the decoder reads <pad> then the greedy tokens
    step_logits = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                        decoder_input_ids=np.array([[0] + greedy_ids[:-1]])).logits.numpy()[0]
step_p = np.exp(step_logits - step_logits.max(-1, keepdims=True))
step_p /= step_p.sum(-1, keepdims=True)
entropy = -(step_p * np.log(np.maximum(step_p, 1e-30))).sum(-1)
unsure = int(np.argmax(entropy))
unsure_logits = step_logits[unsure: unsure + 1]
print(f"greedy summary: {tokenizer.decode(greedy_ids).strip()!r}\nthe least sure step: {unsure} of "
      f"{len(greedy_ids)} (entropy {entropy[unsure]:.2f} nats; median step {np.median(entropy):.3f}), after "
      f"{tokenizer.decode(greedy_ids[:unsure]).strip()!r}")


def probabilities(logits):
    """softmax of (filtered) logits; -inf logits get probability 0."""
    e = np.exp(logits - logits.max())
    return (e / e.sum())[0]


settings = {"T=0.5": dict(temperature=0.5), "T=1": dict(temperature=1.0), "T=2": dict(temperature=2.0),
            "top-k=5": dict(top_k=5), "top-p=0.9": dict(top_p=0.9)}
dists = {name: probabilities(filter_logits(unsure_logits, **kw)) for name, kw in settings.items()}
kept = {name: int((p > 0).sum()) for name, p in dists.items()}
top = np.argsort(-dists["T=1"])[:8]
print_table(["token"] + list(settings), [[repr(tokenizer.id_to_token(int(i)))] + [float(dists[n][i]) for n in settings]
                                         for i in top] + [["tokens kept"] + [kept[n] for n in settings]])
print(f"In this run the most likely token at that step had probability {dists['T=0.5'][top[0]]:.2f} at T=0.5, "
      f"{dists['T=1'][top[0]]:.2f} at T=1 and {dists['T=2'][top[0]]:.2f} at T=2; top-p=0.9 kept "
      f"{kept['top-p=0.9']} of {unsure_logits.shape[-1]} tokens.")
if plt is not None:
    fig, ax = plt.subplots(figsize=(8, 3.5))
    width = 0.8 / len(settings)
    for j, name in enumerate(settings):
        ax.bar(np.arange(len(top)) + j * width, dists[name][top], width, label=name)
    ax.set_xticks(np.arange(len(top)) + 0.4 - width / 2, [tokenizer.id_to_token(int(i)) for i in top], rotation=30)
    ax.set_xlabel(f"candidate token at step {unsure} of the summary (the 8 most likely at T=1)")
    ax.set_ylabel("probability")
    ax.set_title("one next-token distribution, reshaped")
    ax.legend()
    save_figure(fig, "next_token_distribution.png")

# %% [markdown]
# Now whole sequences. Each row scores its output by the model's own total log-probability
# $\log p(y \mid x) = \sum_t \log p(y_t \mid x, y_{<t})$, and we draw several samples per
# setting to see how varied they are.

# %%
def decode(**kwargs):
    """Generated ids (without the start token) for the prompt, cut after </s>."""
    ids = [int(i) for i in model.generate(enc["input_ids"], enc["attention_mask"], max_new_tokens=32, **kwargs)[0, 1:]]
    return ids[: ids.index(tokenizer.eos_token_id) + 1] if tokenizer.eos_token_id in ids else ids


def log_prob(ids):
    """Total log-probability of the decoder ids given the prompt (teacher forcing)."""
    with minillm.no_grad():
        loss = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], labels=np.array([ids])).loss
    return -float(loss.item()) * len(ids)


n_samples = 3 if SMOKE else 10
greedy = decode()
rows, decoded = [], {}
for name, kwargs in [("greedy", {}), ("beam search, 4 beams", dict(num_beams=4)),
                     ("sample T=0.7", dict(do_sample=True, temperature=0.7)),
                     ("sample T=1.0", dict(do_sample=True, temperature=1.0)),
                     ("sample T=1.5", dict(do_sample=True, temperature=1.5)),
                     ("sample top-k=5", dict(do_sample=True, top_k=5)),
                     ("sample top-p=0.9", dict(do_sample=True, top_p=0.9))]:
    outputs = [decode(**kwargs, seed=s) if kwargs.get("do_sample") else decode(**kwargs)
               for s in range(n_samples if kwargs.get("do_sample") else 1)]
    decoded[name] = outputs
    rows.append([name, len({tuple(o) for o in outputs}), float(np.mean([log_prob(o) for o in outputs])),
                 tokenizer.decode(outputs[0]).strip()])
print(f"prompt: {prompt!r}\nreference: {reference!r}")
print_table(["decoding", f"distinct of {n_samples}", "mean log p", "first output"],
            [r[:3] + [repr(r[3])] for r in rows])
distinct = {r[0]: r[1] for r in rows}
print(f"In this run beam search found log p = {rows[1][2]:.2f} against greedy's {rows[0][2]:.2f}; sampling at "
      f"T=0.7 gave {distinct['sample T=0.7']} distinct outputs in {n_samples} draws and T=1.5 gave "
      f"{distinct['sample T=1.5']}.")
exact = {name: sum(tokenizer.decode(o).strip() == reference for o in outs) for name, outs in decoded.items()}
print("Outputs equal to the reference: " + ", ".join(f"{name} {exact[name]} of {len(decoded[name])}"
                                                      for name in decoded) + ".")

# %% [markdown]
# ### Identities worth checking
#
# * `num_beams=1` without sampling *is* greedy search (as in Hugging Face's `generate`).
# * Sampling with `top_k=1` leaves one candidate per step, so it must equal greedy.
# * `seed=` seeds the call's own generator: the same seed gives the same sample, whatever else
#   has drawn random numbers in between; a different seed usually gives a different one.

# %%
beam_one_equals_greedy = decode(num_beams=1) == greedy
top_k1_equals_greedy = all(decode(do_sample=True, top_k=1, seed=s) == greedy for s in range(3))
first_draw = decode(do_sample=True, temperature=1.5, seed=7)
minillm.manual_seed(123)  # reseeding the global generator in between changes nothing
same_seed_repeats = decode(do_sample=True, temperature=1.5, seed=7) == first_draw
seeds_differ = len({tuple(decode(do_sample=True, temperature=1.5, seed=s)) for s in range(5)})
print_table(["identity", "held in this run"], [["num_beams=1 equals greedy", beam_one_equals_greedy],
                                               ["top_k=1 sampling equals greedy (3 seeds)", top_k1_equals_greedy],
                                               ["same seed, same sample", same_seed_repeats],
                                               ["distinct samples from seeds 0-4 at T=1.5", seeds_differ]])

# %% [markdown]
# ## Summary
#
# Exercises: add a `length_penalty` to beam search and watch the output length; write your own
# template for arithmetic and compare zero-shot accuracy; sample at T=0.1 and compare with greedy.

# %%
summary = {
    "model_source": toy_info["source"],
    "base_folder": toy_info["folder"],
    "few_shot_prompt_contains_shots": bool(prompt_contains_shots),
    "icl_shot_counts": shot_counts,
    "icl_scores": {name: {str(k): v[0] for k, v in by_k.items()} for name, by_k in icl.items()},
    "icl_stderr": {name: {str(k): v[1] for k, v in by_k.items()} for name, by_k in icl.items()},
    "icl_verdict": icl_verdict,
    "icl_better_worse": {name: {"better": b, "worse": w} for name, (b, w) in icl_effects.items()},
    "icl_prompt_tokens": {str(k): v for k, v in prompt_tokens.items()},
    "icl_n_eval": n_eval,
    "icl_change_0_to_2_shots": change,
    "tokens_kept": kept,
    "top_token_prob_by_temperature": {n: float(dists[n][top[0]]) for n in ("T=0.5", "T=1", "T=2")},
    "least_sure_step": unsure, "step_entropies": [float(e) for e in entropy], "equal_to_reference": exact, "least_sure_entropy": float(entropy[unsure]),
    "decoding": {r[0]: {"distinct": r[1], "mean_log_prob": r[2], "first_output": r[3]} for r in rows},
    "greedy_equals_num_beams_1": bool(beam_one_equals_greedy),
    "greedy_equals_top_k_1_sampling": bool(top_k1_equals_greedy),
    "same_seed_repeats": bool(same_seed_repeats),
    "distinct_samples_5_seeds": seeds_differ,
    "wall_seconds": round(time.perf_counter() - WALL, 1),
    "cpu_seconds": round(time.process_time() - CPU, 1),
    "figures": FIGURES,
}
(OUT / "summary.json").write_text(json.dumps(summary, indent=2))
print(f"This run took {summary['wall_seconds']:.0f} s of wall time.")
print("SUMMARY " + json.dumps(summary))
