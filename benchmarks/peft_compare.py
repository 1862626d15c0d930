"""The course's PEFT lab on the course base: full fine-tuning against LoRA, adapters, prompt tuning, selective.

The course tunes FLAN-T5 (which had seen dialogue summarization's family, not DialogSum itself) on
dialogue summaries and finds ROUGE-1 0.2334 before tuning, 0.4216 after full fine-tuning and 0.4081
with LoRA (r=32 on q,v, 1.41% of the parameters trainable): LoRA gets about 93% of full
fine-tuning's ROUGE-1 gain. This benchmark repeats that design on minillm's course base:

1. **Base.** ``minillm.course.ensure_base()``: a T5 pretrained with span corruption and
   instruction-tuned FLAN-style on five held-in tasks, among them news summarization; the task
   here, ``dialogue_summary`` (``HELD_OUT``), was in no mixture. Built once into the cache (it says
   how long), then loaded. ``--base FOLDER`` starts from another Hugging Face T5 folder instead.
2. **Methods and budgets.** From that base: full fine-tuning (100%); LoRA on q,v (alpha = 2r, r the
   largest up to 8 that keeps it within 2% trainable: r=6, 1.73% of the
   1,047,296-parameter course base); LoRA on every linear layer at the same parameter budget (smaller r);
   Houlsby adapters (bottleneck 8); prompt tuning (20 virtual tokens); selective (RMSNorm scales plus
   the last decoder block). The table prints each budget as trainable parameters and PEFT's
   trainable % (trainable / all, adapter included; ``peft.model.trainable_percent``). Same steps,
   batches and data for each.
3. **Learning rates** come from a small fixed grid per method, chosen by ROUGE-L on the task's
   *validation* split with seed 0 (never the test split); every seed then trains at that rate.
4. **Table.** Mean +- sd over the seeds (adapter initialization and batch order change; the base
   does not) of ROUGE-1/2/L/Lsum on the test split, trainable parameters and trainable %, AdamW
   state, median step time and checkpoint size.
5. **Verdict,** computed: each method's share of full fine-tuning's ROUGE-L gain over the base, with
   its standard error, against the course's target (LoRA q,v at <= 2% reaching >= 85%); a method that
   lags is named with the reason the literature gives (prompt tuning: Lester et al. 2021).

Writes ``peft_compare.json`` and ``peft_compare.png`` (ROUGE-L against trainable % on a log axis,
error bars = sd over seeds) to ``--out``. Everything is seeded and runs on one thread, so a second
run prints the same table; only the step-time column (a wall-clock measurement) differs.

Usage:
    python benchmarks/peft_compare.py --help
    python benchmarks/peft_compare.py                   # 3 seeds, rate grid, on the course base
    python benchmarks/peft_compare.py --quick           # no rate grid (the grid's middle rates), 3 seeds
    python benchmarks/peft_compare.py --base FOLDER     # another base (a Hugging Face T5 folder)
    MINILLM_SMOKE=1 python benchmarks/peft_compare.py   # seconds, on the smoke stand-in base

Every run prints its own "total" line and stores ``seconds`` and ``cpu_seconds`` in the JSON.

Measured (issue 22): ``MINILLM_CACHE=/work/basecache python benchmarks/peft_compare.py`` (every method,
every rate grid, 3 seeds, 150 steps, 64 validation and 100 test dialogues) on the course base
``base-66b5e327ffe70c4b`` (1,047,296 parameters): 1210 s wall, 722 s CPU on the shared 2-core machine.
ROUGE-L mean ± sd (rate chosen on validation): base 0.8; full fine-tuning 66.7 ± 1.9 (1e-3); LoRA q,v
r=6 (1.73%) 46.2 ± 3.4 (1e-2; validation 47.2 / 49.9 / 24.5 at 3e-3 / 1e-2 / 2e-2); LoRA all-linear
r=1 (2.11%) 50.3 ± 3.4 (1e-2); adapters (1.64%) 42.7 ± 0.2 (1e-2); prompt tuning (0.24%) 12.0 ± 1.0
(3e-2); selective (25.2%) 59.0 ± 0.5 (3e-3). Shares of full fine-tuning's gain: LoRA q,v 69% ± 3%
(the 85% target is missed), LoRA all-linear 75% ± 3%, adapters 64% ± 1%, prompt tuning 17% ± 1%,
selective 88% ± 2%. The measured why, as the verdict prints it: the base scored 0.8 on this task
(it had never seen it), full fine-tuning's q,v update keeps 44% of its energy in its top 6
directions, and LoRA's training loss over the last 15 steps was 1.57 against full fine-tuning's 0.63.
Levers tried first (one seed, validation ROUGE-L on 48 dialogues):
above 1e-2 LoRA did worse (2e-2: 43 with warmup and decay; 3e-2: 7, and 27 with warmup, decay and
clipping, on a near-identical earlier build); 300 steps instead of 150 took LoRA from 49.4 to 51.4
but full fine-tuning from 71.4 to 82.7; warmup and linear decay over 300 steps gave LoRA 57.4 and
full fine-tuning 72.4; alpha = 8r at 3e-3 gave 51.5 (150 steps) and 53.5 (300), alpha = r at 1e-2
46.9 and 54.8; LoRA+ (B's rate 8x A's, earlier build) 29-45. Each method at its best setting for the
same steps, LoRA's best over full fine-tuning's best was 51.5 / 71.4 at 150 steps and 57.4 / 82.7 at
300: about 70% of the gain either way. Tutorial 07's sweep shows what rank would take: r = 2, 8, 32
got 51%, 69%, 81% of the gain.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path[0] = str(Path(__file__).resolve().parents[1])  # the repo root, not this folder (its kernels.py would shadow a package)

import minillm  # noqa: E402
from minillm import course  # noqa: E402
from minillm.data import Batcher, Tokenizer, format_example, get_task  # noqa: E402
from minillm.data.collate import tokenize_records  # noqa: E402
from minillm.models import T5ForConditionalGeneration  # noqa: E402
from minillm.optim import AdamW  # noqa: E402
from minillm.peft import (NORMS, AdapterConfig, LoraConfig, PromptTuningConfig, SelectiveConfig,  # noqa: E402
                          get_peft_model)
from minillm.peft.model import count_parameters, trainable_percent  # noqa: E402

TASK = course.HELD_OUT
ALL_LINEAR = ["q", "k", "v", "o", "wi", "wo"]
MAX_SRC, MAX_TGT = 160, 32
COURSE = {"full_rouge1": 42.16, "lora_rouge1": 40.81, "lora_pct": 1.41, "base_rouge1": 23.34}
TARGET_SHARE, TARGET_PCT = 85.0, 2.0  # issue 22: LoRA q,v at <= 2% trainable reaches >= 85% of full's gain
WHY_LAGS = {"prompt tuning": "Lester et al. 2021 found prompt tuning matches fine-tuning only as models pass "
                             "about 10B parameters; on small models it lags far behind, and this base is tiny"}

# One small grid per method, factors of about 3, centred where the course base's scale wants it
# (a full fine-tuning rate above 3e-3 breaks a pretrained model; LoRA's B starts at 0 and wants more,
# but not much more: in 150-step probes LoRA q,v's validation ROUGE-L fell from 49 at 1e-2 to 43 at 2e-2
# (with a warmup) on the course base, and to 7 at 3e-2 on an earlier build, so 2e-2 closes its grid;
# LoRA all-linear fell to 6.5 at 2e-2, adapters to 35.8 and 39.2 at 2e-2 and 3e-2, so 1e-2 ends theirs).
LR_GRID = {"full fine-tuning": (3e-4, 1e-3, 3e-3), "LoRA q,v": (3e-3, 1e-2, 2e-2),
           "LoRA all-linear": (1e-3, 3e-3, 1e-2), "adapters": (1e-3, 3e-3, 1e-2),
           "prompt tuning": (3e-2, 1e-1, 3e-1), "selective": (3e-4, 1e-3, 3e-3)}
SETTINGS = {  # task train/val/test sizes, batch, adaptation steps, seeds, whether to search the rate grid
    "full": dict(n_train=1000, n_val=64, n_test=100, batch=16, steps=150, seeds=3, lr_grid=True),
    "quick": dict(n_train=1000, n_val=64, n_test=100, batch=16, steps=150, seeds=3, lr_grid=False),
    "smoke": dict(n_train=16, n_val=4, n_test=4, batch=4, steps=2, seeds=2, lr_grid=False),
}


# ----------------------------------------------------------------------------- building blocks
def train(model, pairs, steps: int, lr: float, batch: int, seed: int) -> dict:
    """AdamW on the parameters that require a gradient; the plain loop of tutorial 02."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = AdamW(params, lr=lr, weight_decay=0.0)
    batcher, times, losses = Batcher(pairs, batch, seed=seed), [], []
    model.train()
    while len(losses) < steps:
        batcher.set_epoch(len(losses) // max(1, len(batcher)))
        for b in batcher:
            start = time.perf_counter()
            loss = model(**b).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - start)
            losses.append(loss.item())
            if len(losses) == steps:
                break
    model.eval()
    state = sum(v.nbytes for s in opt.state.values() for v in s.values() if hasattr(v, "nbytes"))
    tail = losses[-max(1, steps // 10):]  # the last tenth of the steps: one batch's loss is noisy
    return {"step_ms": 1e3 * statistics.median(times), "optimizer_bytes": int(state), "loss_last": losses[-1],
            "loss_tail": statistics.fmean(tail)}


def qv_energy_share(tuned: dict, base: dict, r: int) -> float:
    """Mean over the q and v matrices of the % of ΔW = tuned - base's energy in its top r directions.

    The energy is the squared Frobenius norm, sum of sigma_i^2; by Eckart-Young the best rank-r matrix
    keeps the top r of them, so this is the most of full fine-tuning's update a rank-r LoRA can hold.
    """
    shares = []
    for key in (k for k in base if k.endswith((".q.weight", ".v.weight"))):
        sigma2 = np.linalg.svd(np.asarray(tuned[key] - base[key], np.float64), compute_uv=False) ** 2
        if sigma2.sum() > 0:
            shares.append(sigma2[:r].sum() / sigma2.sum())
    return 100 * statistics.fmean(shares) if shares else float("nan")


def rouge_scores(model, tokenizer, records) -> dict:
    """Corpus ROUGE-1/2/L/Lsum F1 x 100 of greedy generations (minillm.metrics matches rouge-score)."""
    from minillm.metrics import corpus_rouge  # noqa: PLC0415

    predictions = []
    for i in range(0, len(records), 32):
        chunk = records[i:i + 32]
        enc = tokenizer.batch_encode([p for p, _ in chunk], max_length=MAX_SRC)
        out = model.generate(enc["input_ids"], attention_mask=enc["attention_mask"], max_new_tokens=MAX_TGT)
        predictions += [tokenizer.decode(row) for row in out.tolist()]
    scores = corpus_rouge(predictions, [c for _, c in records])
    return {k: 100 * v.mid.fmeasure for k, v in scores.items()}


def mean_sd(values) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    values = list(values)
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def task_records(task: str, s: dict) -> dict:
    """The task's train / validation / test (prompt, completion) pairs, template 0."""
    t = get_task(task)
    sizes = {"train": s["n_train"], "validation": s["n_val"], "test": s["n_test"]}
    return {split: [format_example(t, ex, 0) for ex in t.examples(split, n, seed=1)] for split, n in sizes.items()}


def load_base(folder) -> tuple:
    """(config, state dict, tokenizer) of a Hugging Face T5 folder with its tokenizer.json."""
    model = T5ForConditionalGeneration.from_pretrained(folder)
    return model.config, {k: v.copy() for k, v in model.state_dict().items()}, Tokenizer.from_pretrained(str(folder))


def lora_qv_rank(config, budget_pct: float = TARGET_PCT, r_max: int = 8) -> int:
    """The largest rank up to ``r_max`` at which LoRA on q,v trains at most ``budget_pct``% (PEFT's %).

    With c numbers per rank and N base parameters, r c / (N + r c) <= p  <=>  r <= p N / (c (1 - p)).
    """
    model = T5ForConditionalGeneration(config)
    n = count_parameters(model)[1]
    per_rank = get_peft_model(model, LoraConfig(r=1, target_modules=["q", "v"])).get_nb_trainable_parameters()[0]
    p = budget_pct / 100
    return max(1, min(r_max, int(p * n / (per_rank * (1 - p)))))


def lora_all_linear_rank(config, budget: int) -> int:
    """The rank at which LoRA on every linear layer trains about ``budget`` numbers (at least 1)."""
    per_rank = get_peft_model(T5ForConditionalGeneration(config), LoraConfig(r=1, target_modules=ALL_LINEAR))
    return max(1, round(budget / per_rank.get_nb_trainable_parameters()[0]))


def method_config(name: str, config, lora_budget: int):
    """The PeftConfig of a method (None: full fine-tuning)."""
    if name == "full fine-tuning":
        return None
    if name == "LoRA q,v":
        r = lora_qv_rank(config)
        return LoraConfig(r=r, lora_alpha=2 * r, target_modules=["q", "v"])
    if name == "LoRA all-linear":
        r = lora_all_linear_rank(config, lora_budget)
        return LoraConfig(r=r, lora_alpha=2 * r, target_modules=ALL_LINEAR)
    if name == "adapters":
        return AdapterConfig(adapter_size=8)
    if name == "prompt tuning":
        return PromptTuningConfig(num_virtual_tokens=20, prompt_tuning_init="sample_vocab")
    return SelectiveConfig(patterns=[NORMS], last_n_decoder_blocks=1)


def run_method(name, config, state, tokenizer, data, lr, seed, s, lora_budget, split="test", save_to=None):
    """Adapt a fresh copy of the base with one method at one rate and seed; score on ``split``."""
    minillm.manual_seed(seed)
    model = T5ForConditionalGeneration(config)
    model.load_state_dict(state)
    method = method_config(name, config, lora_budget)
    if method is not None:
        model = get_peft_model(model, method)
    pairs, _ = tokenize_records(data["train"], tokenizer, MAX_SRC, MAX_TGT)
    stats = train(model, pairs, s["steps"], lr, s["batch"], seed=seed)
    row = {**rouge_scores(model, tokenizer, data[split]), **stats, "lr": lr, "seed": seed,
           "trainable": count_parameters(model)[0], "all_params": count_parameters(model)[1],
           "trainable_pct": trainable_percent(model)}
    if method is None:  # how much of this update a rank-r LoRA (r: LoRA q,v's) could express at best
        row["energy_rank"] = lora_qv_rank(config)
        row["qv_energy_top_r"] = qv_energy_share(model.state_dict(), state, row["energy_rank"])
    if save_to is not None:
        model.save_pretrained(save_to)
        weights = "model.safetensors" if method is None else "adapter_model.safetensors"
        row["checkpoint_bytes"] = (Path(save_to) / weights).stat().st_size
    return row


# ----------------------------------------------------------------------------- the experiment
def choose_lr(name, config, state, tokenizer, data, s, lora_budget) -> tuple[float, dict]:
    """The grid rate with the best validation ROUGE-L (seed 0); ties go to the smaller rate."""
    searched = s["lr_grid"] is True or name in (s["lr_grid"] or ())
    grid = LR_GRID[name] if searched else LR_GRID[name][1:2]
    if len(grid) == 1:  # nothing to choose: no validation run
        return grid[0], {}
    val = {lr: run_method(name, config, state, tokenizer, data, lr, 0, s, lora_budget, "validation")["rougeL"]
           for lr in grid}
    return max(grid, key=lambda lr: (val[lr], -lr)), val


def compare(config, state, tokenizer, data, s, methods, work: Path, echo=print) -> dict:
    """Every method: rate from the grid on validation, then ``seeds`` runs on test; mean +- sd."""
    base_model = T5ForConditionalGeneration(config)
    base_model.load_state_dict(state)
    rows = {"base (no tuning)": {"runs": [rouge_scores(base_model, tokenizer, data["test"])], "lr": None}}
    lora_budget = get_peft_model(T5ForConditionalGeneration(config),
                                 method_config("LoRA q,v", config, 0)).get_nb_trainable_parameters()[0]
    for name in methods:
        started = time.perf_counter()
        lr, val = choose_lr(name, config, state, tokenizer, data, s, lora_budget)
        runs = [run_method(name, config, state, tokenizer, data, lr, seed, s, lora_budget,
                           save_to=work / f"{name.replace(' ', '_').replace(',', '')}_{seed}")
                for seed in range(s["seeds"])]
        rows[name] = {"runs": runs, "lr": lr, "validation_rougeL_by_lr": val}
        m, sd = mean_sd(r["rougeL"] for r in runs)
        echo(f"  {name}: lr {lr:g} (validation ROUGE-L {', '.join(f'{k:g}: {v:.1f}' for k, v in val.items())}); "
             f"test ROUGE-L {m:.1f} +- {sd:.1f} ({time.perf_counter() - started:.0f} s)")
    return rows


def summarize(rows: dict) -> list[dict]:
    """One line per method: mean and sd of each score, and the (seed-independent) cost columns."""
    table = []
    for name, entry in rows.items():
        runs = entry["runs"]
        line = {"method": name, "lr": entry["lr"], "seeds": len(runs)}
        for key in ("rouge1", "rouge2", "rougeL", "rougeLsum"):
            line[key], line[key + "_sd"] = mean_sd(r[key] for r in runs)
        first = runs[0]
        line.update({k: first.get(k, 0) for k in ("trainable", "all_params", "trainable_pct", "optimizer_bytes",
                                                   "checkpoint_bytes")})
        line["step_ms"] = statistics.median(r["step_ms"] for r in runs) if "step_ms" in first else 0.0
        for key in ("loss_tail", "qv_energy_top_r"):  # means over seeds, where the runs have them
            if key in first:
                line[key] = statistics.fmean(r[key] for r in runs)
        if "energy_rank" in first:
            line["energy_rank"] = first["energy_rank"]
        table.append(line)
    return table


def format_table(table: list[dict], steps: int) -> str:
    """Markdown: mean +- sd over seeds; % is PEFT's trainable%."""
    head = ("| method | lr | R-1 | R-2 | R-L | R-Lsum | trainable | trainable % | AdamW state (KB) | step (ms) "
            "| checkpoint (KB) |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    lines = [head]
    for t in table:
        pm = lambda k: f"{t[k]:.1f} ± {t[k + '_sd']:.1f}"  # noqa: E731
        lines.append(f"| {t['method']} | {'-' if t['lr'] is None else format(t['lr'], 'g')} | {pm('rouge1')} | "
                     f"{pm('rouge2')} | {pm('rougeL')} | {pm('rougeLsum')} | {t['trainable']:,} | "
                     f"{t['trainable_pct']:.3f} | {t['optimizer_bytes'] / 1024:.1f} | {t['step_ms']:.1f} | "
                     f"{t['checkpoint_bytes'] / 1024:.1f} |")
    return "\n".join(lines) + f"\n(mean ± sd over seeds; {steps} steps each; step time is wall-clock and varies)"


def gap(table: list[dict], a: str, b: str, key: str = "rougeL") -> tuple[float, float]:
    """(mean of a - mean of b, standard error of that difference from the two sds and seed counts)."""
    ra, rb = next(t for t in table if t["method"] == a), next(t for t in table if t["method"] == b)
    se = (ra[key + "_sd"] ** 2 / ra["seeds"] + rb[key + "_sd"] ** 2 / rb["seeds"]) ** 0.5
    return ra[key] - rb[key], se


def gain_share(table: list[dict], name: str, key: str = "rougeL") -> tuple[float, float]:
    """(100 * (method - base) / (full - base), its standard error) for one method's mean score.

    The base is one deterministic score; the two means carry sd / sqrt(seeds) each, propagated to
    first order (the delta method): se(a/b)/(a/b) = sqrt((se_a/a)^2 + (se_b/b)^2).
    """
    rows = {t["method"]: t for t in table}
    base, full, method = rows["base (no tuning)"], rows["full fine-tuning"], rows[name]
    a, b = method[key] - base[key], full[key] - base[key]
    if b <= 0:
        return float("nan"), float("nan")
    se_a = method[key + "_sd"] / method["seeds"] ** 0.5
    se_b = full[key + "_sd"] / full["seeds"] ** 0.5
    share = a / b
    return 100 * share, 100 * abs(share) * (((se_a / a) ** 2 if a else 0.0) + (se_b / b) ** 2) ** 0.5


def verdict(table: list[dict], n_params: int) -> list[str]:
    """The sentences of the conclusion, each computed from the numbers (tolerance: 2 standard errors)."""
    rows = {t["method"]: t for t in table}
    base, full, lora = rows["base (no tuning)"], rows["full fine-tuning"], rows["LoRA q,v"]
    d, se = gap(table, "full fine-tuning", "LoRA q,v")
    tol = 2 * se
    out = [f"LoRA q,v is {d:+.1f} ROUGE-L points from full fine-tuning ({lora['rougeL']:.1f} vs "
           f"{full['rougeL']:.1f}, base {base['rougeL']:.1f}) at {lora['trainable_pct']:.2f}% of the parameters; "
           f"tolerance 2 standard errors of the difference = {tol:.1f} points, so the two are "
           + ("indistinguishable here." if abs(d) <= tol else ("apart: full fine-tuning is better." if d > 0 else
                                                               "apart: LoRA is better."))]
    if full["rougeL"] <= base["rougeL"]:
        out.append(f"Full fine-tuning did not raise ROUGE-L above the base ({full['rougeL']:.1f} vs "
                   f"{base['rougeL']:.1f}), so no method's share of its gain can be stated.")
        return out
    share, share_se = gain_share(table, "LoRA q,v")
    course_share = 100 * (COURSE["lora_rouge1"] - COURSE["base_rouge1"]) / (COURSE["full_rouge1"] - COURSE["base_rouge1"])
    met = share >= TARGET_SHARE and lora["trainable_pct"] <= TARGET_PCT
    out.append(f"LoRA q,v reached {share:.0f}% ± {share_se:.0f}% of full fine-tuning's ROUGE-L gain over the base at "
               f"{lora['trainable_pct']:.2f}% trainable: the target (>= {TARGET_SHARE:.0f}% at <= {TARGET_PCT:.0f}%) is "
               + ("met." if met else "missed.") + f" The course (FLAN-T5, 250M parameters) found {course_share:.0f}% "
               f"of the ROUGE-1 gain at {COURSE['lora_pct']}%; this base has {n_params:,} parameters.")
    if not met and share < TARGET_SHARE:
        out.append(why_short(base, full, lora))
    for name in (t["method"] for t in table if t["method"] not in ("base (no tuning)", "full fine-tuning", "LoRA q,v")):
        s, s_se = gain_share(table, name)
        lags = s + 2 * s_se < TARGET_SHARE
        text = (f"{name}: {s:.0f}% ± {s_se:.0f}% of the gain at {rows[name]['trainable_pct']:.2f}% trainable"
                + (", clearly short of the target" if lags else ""))
        if lags and name in WHY_LAGS:
            text += f" ({WHY_LAGS[name]})"
        if lags and "loss_tail" in rows[name] and "loss_tail" in full:
            text += (f"; its training loss ended at {rows[name]['loss_tail']:.2f} against full fine-tuning's "
                     f"{full['loss_tail']:.2f}")
        out.append(text + ".")
    best = max((t for t in table if t["method"] not in ("base (no tuning)", "full fine-tuning")), key=lambda t: t["rougeL"])
    out.append(f"The best parameter-efficient method was {best['method']} (ROUGE-L {best['rougeL']:.1f} ± "
               f"{best['rougeL_sd']:.1f} at {best['trainable_pct']:.2f}%).")
    return out


def why_short(base: dict, full: dict, lora: dict) -> str:
    """The measured reasons LoRA q,v fell short of the target: the rank-r share of full fine-tuning's
    update, the two training losses, and how far the base was from the task."""
    parts = [f"the base scored ROUGE-L {base['rougeL']:.1f} on this task (FLAN-T5 had ROUGE-1 "
             f"{COURSE['base_rouge1']} before the course's tuning), so the gain is a new task, not a nudge"]
    if "qv_energy_top_r" in full:
        r = full["energy_rank"]
        parts.append(f"full fine-tuning's update to q and v keeps {full['qv_energy_top_r']:.0f}% of its energy in its "
                     f"top {r} singular directions (mean over seeds and matrices), the most a rank-{r} update can "
                     "hold (Eckart-Young)")
    if "loss_tail" in lora and "loss_tail" in full:
        under = lora["loss_tail"] > full["loss_tail"]
        parts.append(f"LoRA's training loss over the last tenth of the steps was {lora['loss_tail']:.2f} against full "
                     f"fine-tuning's {full['loss_tail']:.2f}" + (", so LoRA underfits: it cannot reach in these steps "
                                                                  "what full fine-tuning reaches" if under else ""))
    return "Why it falls short: " + "; ".join(parts) + "."


def plot(table: list[dict], path: Path) -> bool:
    """ROUGE-L against trainable % (log axis), error bars = sd over seeds."""
    try:
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, t in enumerate(x for x in table if x["trainable"]):
        ax.errorbar(t["trainable_pct"], t["rougeL"], yerr=t["rougeL_sd"], fmt="o", capsize=4, color=f"C{i}",
                    label=t["method"])
    base = next(t for t in table if t["method"] == "base (no tuning)")
    ax.axhline(base["rougeL"], color="gray", ls=":", label="base (no tuning)")
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters (% of all, adapter included; log scale)")
    ax.set_ylabel("ROUGE-L on test dialogues (mean ± sd over seeds)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, help="seeds per method (default: 3)")
    parser.add_argument("--steps", type=int, help="adaptation steps per run (default: 150)")
    parser.add_argument("--quick", action="store_true", help="no rate grid: each method at its grid's middle rate")
    parser.add_argument("--base", help="start from this Hugging Face T5 folder instead of the course base")
    parser.add_argument("--methods", help="semicolon-separated subset of: " + "; ".join(LR_GRID))
    parser.add_argument("--grid", help="with --quick: semicolon-separated methods whose rate is still searched")
    parser.add_argument("--out", default="benchmarks/out", help="folder for peft_compare.json and .png")
    args = parser.parse_args(argv)
    smoke = os.environ.get("MINILLM_SMOKE", "").strip() not in ("", "0", "false", "False")
    s = dict(SETTINGS["smoke" if smoke else "quick" if args.quick else "full"])
    s.update({k: v for k, v in (("seeds", args.seeds), ("steps", args.steps)) if v is not None})
    methods = [m.strip() for m in args.methods.split(";")] if args.methods else list(LR_GRID)
    if args.grid and not smoke:
        s["lr_grid"] = [m.strip() for m in args.grid.split(";")]
    unknown = [m for m in methods if m not in LR_GRID]
    if unknown or "full fine-tuning" not in methods or "LoRA q,v" not in methods:
        parser.error(f"--methods: {unknown or methods} (each of {list(LR_GRID)}; full fine-tuning and LoRA q,v "
                     "are always needed)")
    folder = Path(args.base) if args.base else course.ensure_base(smoke=smoke)
    minillm.set_num_threads(1)  # one thread: the same sums in the same order, so the same table twice
    started, cpu = time.perf_counter(), time.process_time()
    out, work = Path(args.out), Path(tempfile.mkdtemp(prefix="peft_compare_"))
    out.mkdir(parents=True, exist_ok=True)
    print(f"settings: {s}\nbase: {folder}")
    config, state, tokenizer = load_base(folder)
    data = task_records(TASK, s)
    rows = compare(config, state, tokenizer, data, s, methods, work)
    table = summarize(rows)
    n_params = count_parameters(T5ForConditionalGeneration(config))[1]
    text = format_table(table, s["steps"])
    sentences = verdict(table, n_params)
    print(f"\n{TASK}, base {folder.name} ({n_params:,} parameters), test split of {s['n_test']} dialogues:\n{text}\n")
    print("\n".join(sentences))
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    result = {"settings": s, "base": str(folder), "table": table, "runs": rows, "verdict": sentences,
              "course": COURSE, "seconds": round(seconds, 1), "cpu_seconds": round(cpu_seconds, 1)}
    (out / "peft_compare.json").write_text(json.dumps(result, indent=2))
    drew = plot(table, out / "peft_compare.png")
    print(f"\nwrote {out / 'peft_compare.json'}" + (f" and {out / 'peft_compare.png'}" if drew else ""))
    print(f"total {seconds:.0f} s wall, {cpu_seconds:.0f} s CPU")
    return result


if __name__ == "__main__":
    main()
