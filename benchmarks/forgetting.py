"""Catastrophic forgetting, measured on the course base: full fine-tuning vs multitask fine-tuning vs LoRA.

The course notes' claim, as an experiment:

    "fine-tuning on a single task ... catastrophic forgetting: forget other tasks.
     Solution: multitask fine-tuning, or parameter-efficient fine-tuning (PEFT)."

1. Start from the course base (``minillm.course.ensure_base()``; ``--base FOLDER`` for another
   Hugging Face T5 folder): a T5 pretrained with span corruption, then instruction-tuned on the
   five held-in tasks (``HELD_IN``: news_summary, translation, sentiment, same_plan, word_problem).
2. Adapt a copy of it (same weights, via load_state_dict) to the new task D (``NEW_TASK``,
   antonym: in no mixture of the base) in four ways, with the same number of steps:
     full         every weight trains on D only
     multitask    every weight trains on D mixed with every held-in task (half the examples are D,
                  the other half an equal share of each held-in task: replay)
     LoRA q,v     the base is frozen; rank-8 matrices on q and v train on D
     LoRA + head  rank-8 matrices on every linear layer, plus a trainable copy of ``lm_head``
                  (``modules_to_save``): more room than q,v, which at rank 8 learns the form of an
                  antonym answer ("the ...") but not to copy the sentence (it scores 0)
   and score the LoRA arms with the adapter off too (``disable_adapter()``: the base itself).
3. Check which held-in tasks the base knows: its score must beat a constant answer (the commonest
   training answer) by two standard errors; forgetting is measured on those only.
4. Repeat every arm over ``--seeds`` seeds (batch order and adapter initialization; the base is
   fixed) and print mean ± sd of the gain on D, the change on each held-in task and the backward
   transfer BWT = mean over the known held-in tasks of (score after - score of the base).
5. Print a verdict computed from those numbers against the course's targets: single-task full
   fine-tuning lowers at least 3 held-in tasks by more than two standard errors; multitask removes
   at least 70% of that drop; LoRA's forgetting beside full fine-tuning's.

Scores (0-100): news_summary ROUGE-L, translation BLEU, sentiment and same_plan accuracy,
word_problem and antonym exact match; all on test-split examples, prompts from template 0.
Training uses a plain loop (AdamW + Batcher + loss.backward(), warmup then linear decay, clipping),
not the Trainer: 300 steps of 32. Learning rates: full and multitask 1e-3, LoRA 5e-3 (issue 22's
probe on the course base, LoRA all-linear + lm_head, 300 steps, 50 test examples: 3e-3 reached 12%
exact match on antonym, 5e-3 34%, 1e-2 0%; LoRA q,v wrote no correct antonym answer at 3e-3 or 1e-2).

Forgetting with the adapter on can be format collapse rather than lost knowledge: a model that
answers every prompt as if it were antonym. The column "answers in D's form" measures that: the
share of the answers written on news_summary, translation and word_problem that start with "the ",
as an antonym answer does and no held-in answer does.

Why antonym takes 300 steps: the base must learn to copy a sentence, which no held-in task asks
(asked for an antonym, it translates into Zorbish). After 300 steps of full fine-tuning, 108 of 200
test answers were exact; of the 92 wrong ones, 75 had the right opposite adjective and a wrong copy
(often the two nouns swapped), 11 a right copy and a wrong adjective, 6 both wrong.

    python benchmarks/forgetting.py                 # 3 seeds (prints its total time)
    python benchmarks/forgetting.py --quick         # fewer steps and test examples
    python benchmarks/forgetting.py --base FOLDER   # another base
    MINILLM_SMOKE=1 python benchmarks/forgetting.py # seconds, on the smoke stand-in base
    python benchmarks/forgetting.py --plot forgetting.png

Measured (issue 22) with the defaults (300 steps of 32, 3 seeds, 200 test examples per task) on the
course base (1,047,296 parameters, cache key 66b5e327ffe70c4b): 1122 s wall, 421 s CPU, on the
shared 2-core machine beside other jobs. Change from the base, mean ± sd over seeds:

    arm (trainable %)     antonym      news_summary translation  sentiment   same_plan   word_problem BWT
    full fine-tuning      +50.5 ± 3.0  -74.5 ± 0.3  -39.6 ± 0.2  -4.7 ± 4.3  -1.3 ± 2.8  -8.0 ± 4.4   -25.6 ± 1.8
    multitask             +24.7 ± 4.1   +0.6 ± 0.7   -2.9 ± 1.0  -2.0 ± 2.8  +5.7 ± 1.3  +4.8 ± 2.8    +1.2 ± 1.3
    LoRA q,v (2.29)        +0.0 ± 0.0  -78.5 ± 2.6  -39.9 ± 0.1 -20.2 ± 1.3  -4.5 ± 0.0 -15.2 ± 8.4   -31.6 ± 1.6
    LoRA all + head (17.2) +33.8 ± 6.8 -74.7 ± 1.7  -40.0 ± 0.1 -23.8 ± 3.3  -5.3 ± 1.4 -20.0 ± 0.0   -32.8 ± 0.6

(base: news_summary 88.8, translation 40.1, sentiment 73.5, same_plan 61.0, word_problem 20.0,
antonym 0.0). Full fine-tuning lowered 3 of 5 held-in tasks by more than two standard errors
(news_summary, translation, word_problem; word_problem's -8.0 against two s.e. of 7.6): target met.
Multitask removed 98% of that drop while learning antonym half as well: target (>= 70%) met.
LoRA with the adapter on forgot more than full fine-tuning (BWT difference -6.0, s.e. 1.4, and
-7.1, s.e. 1.1). On the written tasks most of it is format collapse: 85 ± 12% and 94 ± 5% of their
answers there took antonym's form (LoRA q,v summarized a news report as "the queen follow the
musicet the musicet ..."), full fine-tuning's 71 ± 2%, the base's 0%. They also lost sentiment
(-20.2, -23.8; scored by option likelihood), which full fine-tuning kept within two standard
errors, and LoRA q,v learned no antonym at all. With the adapter off each arm is the base
exactly. At this scale PEFT keeps the old skills only in that the base stays frozen and the
adapter can be switched off; switched on, an adapter trained on D alone answers as D.
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
from minillm import course  # noqa: E402
from minillm.data import TASKS, Batcher, Tokenizer, format_example  # noqa: E402
from minillm.evaluation import ForgettingMatrix, builtin_task, run_task, score_task  # noqa: E402
from minillm.models import T5ForConditionalGeneration  # noqa: E402
from minillm.optim import AdamW, clip_grad_norm_, get_scheduler  # noqa: E402

OLD_TASKS = list(course.HELD_IN)  # what the base was instruction-tuned on
NEW_TASK = course.NEW_TASK        # D: in no mixture of the base
METRIC = {"news_summary": "rougeL", "translation": "bleu", "sentiment": "accuracy", "same_plan": "accuracy",
          "word_problem": "exact_match", "antonym": "exact_match"}
MAX_NEW_TOKENS = {"news_summary": 32, "translation": 24, "sentiment": 4, "same_plan": 4, "word_problem": 4,
                  "antonym": 12}
LOST_TARGET, REMOVED_TARGET = 3, 70.0  # issue 22: >= 3 held-in tasks lowered; multitask removes >= 70% of it

SMOKE = os.environ.get("MINILLM_SMOKE") == "1"
SETTINGS = dict(n_train=3000, n_eval=200, batch_size=32, adapt_steps=300, adapt_lr=1e-3, lora_lr=5e-3, seed=0,
                seeds=3)
QUICK = dict(n_eval=60, adapt_steps=200)
if SMOKE:
    SETTINGS.update(n_train=40, n_eval=6, batch_size=8, adapt_steps=2, seeds=2)


def records(task: str, n: int, seed: int) -> list:
    """(prompt, completion) pairs of the train split with the task's first template."""
    return [format_example(task, ex, template_id=0) for ex in TASKS[task].examples("train", n, seed)]


def train(model, pairs_of_text, tokenizer, steps: int, lr: float, batch_size: int, seed: int,
          label: str = "") -> float:
    """A plain training loop; only parameters with requires_grad are updated. Returns the last loss.

    AdamW with the tutorials' schedule: linear warmup over the first tenth of the steps (at most 30),
    then linear decay to 0, gradients clipped to norm 1. Issue 22's probe (full fine-tuning on antonym
    at 1e-3, a 1M-parameter base, 50 test examples, one seed): 300 steps of 32 this way reached 60%
    exact match; 200 steps of 16 at a constant rate without clipping, 12%.
    Prints the loss curve: the mean loss of every 100 steps (fewer when ``steps`` is small)."""
    batches = Batcher.from_records(pairs_of_text, tokenizer, batch_size, max_source_length=128,
                                   max_target_length=32, shuffle=True, seed=seed)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = AdamW(params, lr=lr, weight_decay=0.0)
    schedule = get_scheduler("linear", optimizer, num_warmup_steps=min(30, steps // 10), num_training_steps=steps)
    model.train()
    step, epoch, loss, window, curve = 0, 0, float("nan"), [], []
    every = min(100, max(1, steps // 4))
    while step < steps:
        batches.set_epoch(epoch)
        for batch in batches:
            out = model(**batch)
            optimizer.zero_grad()
            out.loss.backward()
            clip_grad_norm_(params, 1.0)
            optimizer.step()
            schedule.step()
            loss, step = float(out.loss.item()), step + 1
            window.append(loss)
            if step % every == 0 or step == steps:
                curve.append(sum(window) / len(window))
                window = []
            if step == steps:
                break
        epoch += 1
    model.eval()
    print(f"  {label or 'training'}: lr {lr:g}, {steps} steps, mean loss per {every} steps "
          + " ".join(f"{v:.2f}" for v in curve), flush=True)
    return loss


def make_scorer(tokenizer, n_eval: int, seed: int):
    """(score, eval_tasks): score(model, stderr=None) -> {task: score} on fixed test examples of A-D,
    plus ``D_FORM``: the share of written held-in answers that take D's form (``d_form_share``).

    Pass a dict as ``stderr`` to receive each score's standard error (bootstrap for BLEU), and a dict
    as ``outputs`` to receive each task's prompts, targets and predictions."""
    eval_tasks = {}
    for name in OLD_TASKS + [NEW_TASK]:
        task = builtin_task(name, "test", n_eval, seed, metrics=(METRIC[name],))
        task.max_new_tokens = MAX_NEW_TOKENS[name]
        eval_tasks[name] = task

    def score(model, stderr=None, outputs=None) -> dict:
        produced = {name: run_task(model, tokenizer, task, batch_size=50) for name, task in eval_tasks.items()}
        results = {name: score_task(task, produced[name], n_bootstrap=2 if stderr is None else 100)[0]
                   for name, task in eval_tasks.items()}
        if stderr is not None:
            stderr.update({name: r.stderr for name, r in results.items()})
        if outputs is not None:
            outputs.update(produced)
        return {name: r.value for name, r in results.items()} | {D_FORM: d_form_share(produced)}
    return score, eval_tasks


D_FORM = "answers in D's form"
FULL, MULTI = "full fine-tuning on D", "multitask (D + held-in)"
WRITTEN = [t for t in OLD_TASKS if METRIC[t] != "accuracy"]  # held-in tasks whose answer the model writes


def d_form_share(outputs: dict) -> float:
    """Share (0-100) of the answers written on the held-in tasks (``WRITTEN``) that take antonym's
    form, a sentence that starts with a lowercase "the ". No held-in answer does: news summaries
    start with a capital, translations are Zorbish, word problems are numbers. A high share is
    format collapse: the model answers every prompt as if it were D."""
    answers = [p for t in WRITTEN for p in outputs[t].predictions]
    return 100.0 * sum(a.startswith("the ") for a in answers) / len(answers)


def constant_answer(eval_tasks: dict, seed: int) -> dict:
    """{task: score} of always giving the task's commonest training answer (the "chance" level)."""
    from collections import Counter  # noqa: PLC0415

    from minillm.evaluation.harness import TaskOutput, build_prompts  # noqa: PLC0415

    levels = {}
    for name, task in eval_tasks.items():
        counts = Counter(ex["target"] for ex in TASKS[name].examples("train", 2000, seed))
        answer = min(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0]
        prompts, targets = build_prompts(task, 0, seed, task.examples)
        levels[name] = score_task(task, TaskOutput(prompts, targets, [answer] * len(targets)), n_bootstrap=2)[0].value
    return levels


def mean_sd(values) -> tuple[float, float]:
    values = list(values)
    mean = sum(values) / len(values)
    sd = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5 if len(values) > 1 else 0.0
    return mean, sd


def replay(old: dict, n: int) -> list:
    """``n`` replay examples: an equal share of every held-in task's list (``old``: {task: pairs})."""
    per_task = max(1, n // len(old))
    return [pair for pairs in old.values() for pair in pairs[:per_task]]


def show_answers(outputs: dict) -> None:
    """Print what a model wrote for the first test example of each written task and of D."""
    for name in WRITTEN + [NEW_TASK]:
        print(f"    {name}: {outputs[name].predictions[0]!r} (reference {outputs[name].targets[0]!r})")


def adapt_arms(fresh_base, new, old, tokenizer, s, seed, lora_r, score) -> dict:
    """One seed of every arm: {arm: {task: score}}, plus the trainable share of the LoRA arms.

    On seed 0 it prints each arm's answers to the first test example of every written task."""
    from minillm.peft import LoraConfig, get_peft_model  # noqa: PLC0415
    from minillm.peft.model import trainable_percent  # noqa: PLC0415

    n, steps, batch = s["n_train"], s["adapt_steps"], s["batch_size"]
    arms, pct = {}, {}

    def measure(arm, model):
        outputs = {}
        arms[arm] = score(model, outputs=outputs)
        if seed == 0:
            show_answers(outputs)

    minillm.manual_seed(seed)
    full = fresh_base()
    train(full, new, tokenizer, steps, s["adapt_lr"], batch, seed + 1, FULL)
    measure(FULL, full)
    multi = fresh_base()
    train(multi, new[: n // 2] + replay(old, n // 2), tokenizer, steps, s["adapt_lr"], batch, seed + 1, MULTI)
    measure(MULTI, multi)
    loras = {"LoRA q,v": LoraConfig(r=lora_r, lora_alpha=2 * lora_r, target_modules=["q", "v"]),
             "LoRA all-linear + lm_head": LoraConfig(r=lora_r, lora_alpha=2 * lora_r, modules_to_save=["lm_head"],
                                                     target_modules=["q", "k", "v", "o", "wi", "wo"])}
    for name, config in loras.items():
        minillm.manual_seed(seed)
        lora = get_peft_model(fresh_base(), config)
        pct[name] = trainable_percent(lora)
        train(lora, new, tokenizer, steps, s["lora_lr"], batch, seed + 1, f"{name} ({pct[name]:.2f}% trainable)")
        measure(name, lora)
        if seed == 0:  # the adapter off is the base model: checked once, it is exactly the base
            with lora.disable_adapter():
                arms[f"{name}, adapter off"] = score(lora)
    return arms, pct


def change_stderr(st: dict, task: str, base_stderr: dict) -> float:
    """Standard error of an arm's mean change on a task: the base score's error and the seeds'
    (sd / sqrt(seeds)), combined."""
    return (base_stderr[task] ** 2 + (st["change"][task][1] / st["seeds"] ** 0.5) ** 2) ** 0.5


def mean_drop(st: dict, tasks: list) -> float:
    """Mean over ``tasks`` of how far the arm fell below the base (a rise counts as 0)."""
    return sum(max(0.0, -st["change"][t][0]) for t in tasks) / len(tasks)


def verdict(stats: dict, known: list, base_stderr: dict) -> list[str]:
    """Sentences computed from mean ± sd over seeds, against the course's targets.

    "Lost" a task: the mean change is below -2 standard errors (``change_stderr``); "learned"
    antonym: mean gain above 2 standard errors of the mean.
    """
    if not known:
        return ["The base beat the constant answer on no old task, so this run cannot measure forgetting."]
    lines = []
    lost = {arm: [t for t in known if st["change"][t][0] < -2 * change_stderr(st, t, base_stderr)]
            for arm, st in stats.items()}
    full_lost = lost[FULL]
    lines.append(f"Single-task full fine-tuning on D lowered {len(full_lost)} of {len(known)} known held-in tasks by "
                 f"more than two standard errors ({', '.join(full_lost) or 'none'}): the target (>= {LOST_TARGET}) "
                 + ("is met." if len(full_lost) >= LOST_TARGET else "is missed."))
    for arm, st in stats.items():
        if arm.endswith("adapter off"):
            continue
        kept = [t for t in known if t not in lost[arm]]
        text = (f"{arm}: antonym {st['gain'][0]:+.1f} ± {st['gain'][1]:.1f}, BWT {st['bwt'][0]:+.1f} ± {st['bwt'][1]:.1f}"
                f"; kept {', '.join(kept) or 'none'}" + (f", lost ground on {', '.join(lost[arm])}" if lost[arm] else ""))
        if arm != FULL and full_lost:
            full_drop, drop = mean_drop(stats[FULL], full_lost), mean_drop(st, full_lost)
            removed = 100 * (1 - drop / full_drop)
            text += (f"; on the tasks full fine-tuning lowered it fell {drop:.1f} points on average against "
                     f"{full_drop:.1f}: {removed:.0f}% of the drop removed")
            if arm == MULTI:
                text += f" (target >= {REMOVED_TARGET:.0f}%: {'met' if removed >= REMOVED_TARGET else 'missed'})"
        lines.append(text + ".")
    learned = [a for a, st in stats.items() if not a.endswith("adapter off") and st["gain"][0] > 0
               and st["gain"][0] > 2 * st["gain"][1] / st["seeds"] ** 0.5]
    lines.append(f"Arms that learned antonym (mean gain > 2 standard errors): {', '.join(learned) or 'none'}.")
    return lines


def d_form_note(base_scores: dict) -> str:
    """The column's meaning, with the base's own share."""
    return (f"the share of answers written on {', '.join(WRITTEN)} that start like an antonym answer "
            f"(\"the ...\"); the base: {base_scores[D_FORM]:.0f}%")


def exact(off: dict) -> str:
    """Whether an adapter-off arm scored exactly as the base did on every task."""
    untouched = all(mean == 0.0 and sd == 0.0 for mean, sd in off["change"].values())
    return ("every score is exactly the base's: the frozen base is untouched" if untouched
            else "the scores differ from the base's: the base weights changed")


def lora_verdict(stats: dict, base_scores: dict, known: list) -> list[str]:
    """LoRA's forgetting beside full fine-tuning's (the course: PEFT is less prone to it), computed.

    BWTs differ when their difference exceeds two standard errors (sd / sqrt(seeds) of each)."""
    if not known:
        return []
    full, lines = stats[FULL], []
    for arm, st in stats.items():
        if not arm.startswith("LoRA") or arm.endswith("adapter off"):
            continue
        diff = st["bwt"][0] - full["bwt"][0]
        se = (st["bwt"][1] ** 2 / st["seeds"] + full["bwt"][1] ** 2 / full["seeds"]) ** 0.5
        found = ("forgot less than full fine-tuning" if diff > 2 * se else "forgot more than full fine-tuning"
                 if diff < -2 * se else "forgot as much as full fine-tuning (within two standard errors)")
        off = stats.get(f"{arm}, adapter off")
        lines.append(f"{arm}, adapter on, {found}: BWT {st['bwt'][0]:+.1f} against {full['bwt'][0]:+.1f}"
                     f" (difference {diff:+.1f}, s.e. {se:.1f}); {st['form'][0]:.0f}% of its written held-in answers"
                     f" took antonym's form (full fine-tuning {full['form'][0]:.0f}%, the base "
                     f"{base_scores[D_FORM]:.0f}%)"
                     + (f"; with the adapter off, {exact(off)}." if off else "."))
    return lines


def plot_scores(path: str, base_scores: dict, base_stderr: dict, stats: dict) -> str | None:
    """Bars of every task's score: the base (error bar: its standard error) and each arm with the
    adapter on (mean over seeds; error bar: the sd over seeds). Returns the path, or None without
    matplotlib."""
    try:
        import matplotlib  # noqa: PLC0415
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        return None
    tasks = OLD_TASKS + [NEW_TASK]
    rows = [("base", base_scores, base_stderr)] + [
        (arm, st["mean"], {t: st["change"][t][1] for t in tasks}) for arm, st in stats.items()
        if not arm.endswith("adapter off")]
    fig, ax = plt.subplots(figsize=(10, 4))
    width = 0.8 / len(rows)
    for j, (label, scores, errors) in enumerate(rows):
        x = [i + (j - (len(rows) - 1) / 2) * width for i in range(len(tasks))]
        ax.bar(x, [scores[t] for t in tasks], width, yerr=[errors[t] for t in tasks], capsize=2, label=label)
    ax.set_xticks(range(len(tasks)), [t + (" (new)" if t == NEW_TASK else "") for t in tasks], fontsize=8)
    seeds = next(iter(stats.values()))["seeds"]
    ax.set_ylabel("test score (0-100)")
    ax.set_title(f"Scores after adapting to {NEW_TASK} (mean over {seeds} seeds; bars: base s.e., arms' sd)",
                 fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--plot", help="save a plot of the scores (needs matplotlib)")
    parser.add_argument("--lora-r", type=int, default=8, help="LoRA rank (default: 8)")
    parser.add_argument("--seeds", type=int, help="seeds per arm (default: 3)")
    parser.add_argument("--steps", type=int, help="adaptation steps per arm (default: 300; --quick: 200)")
    parser.add_argument("--n-eval", type=int, help="test examples per task (default: 200; --quick: 60)")
    parser.add_argument("--quick", action="store_true", help="fewer steps and test examples")
    parser.add_argument("--base", help="start from this Hugging Face T5 folder instead of the course base")
    args = parser.parse_args(argv)
    s = dict(SETTINGS, **(QUICK if args.quick and not SMOKE else {}))
    s.update({k: v for k, v in (("seeds", args.seeds), ("adapt_steps", args.steps),
                                                       ("n_eval", args.n_eval)) if v})
    folder = args.base or course.ensure_base(smoke=SMOKE)
    minillm.set_num_threads(1)  # deterministic sums: the same table twice
    start = time.perf_counter()
    minillm.manual_seed(s["seed"])
    model = T5ForConditionalGeneration.from_pretrained(folder).eval()
    tokenizer = Tokenizer.from_pretrained(str(folder))
    print(f"settings: {s}\nbase: {folder} ({model.num_parameters():,} parameters)")
    score, eval_tasks = make_scorer(tokenizer, s["n_eval"], s["seed"])
    per_task = s["n_train"] // len(OLD_TASKS)
    old = {name: records(name, per_task, s["seed"]) for name in OLD_TASKS}
    new = records(NEW_TASK, s["n_train"], s["seed"])

    # 1. the base; every arm starts from a copy of its weights
    base_state = {k: v.copy() for k, v in model.state_dict().items()}
    base_stderr = {}
    base_scores = score(model, base_stderr)
    chance = constant_answer(eval_tasks, s["seed"])
    known = [t for t in OLD_TASKS if base_scores[t] - chance[t] > 2 * base_stderr[t]]
    print("| task | constant answer | base | base s.e. | known |\n|---|---:|---:|---:|---|")
    for t in OLD_TASKS + [NEW_TASK]:
        print(f"| {t} | {chance[t]:.1f} | {base_scores[t]:.1f} | {base_stderr[t]:.1f} | {'yes' if t in known else 'no'} |")

    def fresh_base():
        m = T5ForConditionalGeneration(model.config)
        m.load_state_dict(base_state)
        return m.eval()

    # 2. the arms, seed by seed
    per_seed, pct = [], {}
    for seed in range(s["seeds"]):
        arms, pct = adapt_arms(fresh_base, new, old, tokenizer, s, seed, args.lora_r, score)
        per_seed.append(arms)
        print(f"seed {seed} done ({time.perf_counter() - start:.0f}s)", flush=True)

    # 3. mean ± sd over seeds of the change on every task and of BWT over the known old tasks
    stats = {}
    for arm in per_seed[0]:
        runs = [p[arm] for p in per_seed if arm in p]
        change = {t: mean_sd(r[t] - base_scores[t] for r in runs) for t in OLD_TASKS + [NEW_TASK]}
        bwt = mean_sd(sum(r[t] - base_scores[t] for t in known) / len(known) for r in runs) if known else (0.0, 0.0)
        stats[arm] = {"change": change, "gain": change[NEW_TASK], "bwt": bwt, "seeds": len(runs),
                      "form": mean_sd(r[D_FORM] for r in runs),
                      "mean": {t: mean_sd(r[t] for r in runs)[0] for t in OLD_TASKS + [NEW_TASK]}}
    matrix = ForgettingMatrix(OLD_TASKS + [NEW_TASK])
    matrix.record("base (held-in)", base_scores)
    for arm, st in stats.items():
        matrix.record(arm, st["mean"])
    print(f"\nMean scores over {s['seeds']} seeds (" + ", ".join(f"{t}: {METRIC[t]}" for t in METRIC)
          + f")\n\n{matrix.table()}")
    header = ("| arm | trainable % | gain on D | " + " | ".join(f"change on {t}" for t in OLD_TASKS)
              + f" | BWT (known) | {D_FORM} (%) |")
    print("\nChange from the base, mean ± sd over seeds (BWT averages the known old tasks: "
          f"{', '.join(known) or 'none'}; {D_FORM}: {d_form_note(base_scores)})\n\n" + header + "\n|---|---:|---:|"
          + "---:|" * len(OLD_TASKS) + "---:|---:|")
    for arm, st in stats.items():
        share = ("-" if arm.endswith("adapter off") else
                 next((f"{v:.2f}" for k, v in pct.items() if arm.startswith(k)), "100"))
        cells = [f"{st['gain'][0]:+.1f} ± {st['gain'][1]:.1f}"] + [f"{st['change'][t][0]:+.1f} ± {st['change'][t][1]:.1f}"
                                                                   for t in OLD_TASKS]
        print(f"| {arm} | {share} | " + " | ".join(cells) + f" | {st['bwt'][0]:+.1f} ± {st['bwt'][1]:.1f} | "
              f"{st['form'][0]:.0f} ± {st['form'][1]:.0f} |")
    print("\n" + "\n".join(verdict(stats, known, base_stderr) + lora_verdict(stats, base_scores, known)))
    if args.plot:
        print(f"\nplot: {plot_scores(args.plot, base_scores, base_stderr, stats) or 'matplotlib missing'}")
    print(f"\ntotal time {time.perf_counter() - start:.0f}s" + (" (MINILLM_SMOKE=1: tiny sizes)" if SMOKE else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
