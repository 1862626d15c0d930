"""The course's PEFT lab at toy scale: full fine-tuning against LoRA, adapters, prompt tuning, selective.

The course tunes FLAN-T5 (which had seen dialogue summarization) on dialogue summaries and finds
ROUGE-1 0.2334 before tuning, 0.4216 after full fine-tuning and 0.4081 with LoRA (r=32 on q,v,
1.41% of the parameters trainable): LoRA within 1.3 points. This benchmark repeats that design:

1. **Base.** A tokenizer and a small T5 are pretrained on the plain-text corpus (span corruption),
   then instruction-tuned on a FLAN-style mixture that *includes the task's family* (a share of
   dialogue summaries from the train split, next to translation, sentiment, paraphrase, arithmetic),
   so the base has produced the task's output words before any method adapts it.
2. **Methods.** From that base: full fine-tuning; LoRA on q,v (r=8); LoRA on every linear layer at
   the same parameter budget (smaller r); Houlsby adapters; prompt tuning (20 virtual tokens);
   selective (RMSNorm scales plus the last decoder block). Same steps, batches and data for each.
3. **Learning rates** come from a small fixed grid per method, chosen by ROUGE-L on the task's
   *validation* split with seed 0 (never the test split); every seed then trains at that rate.
4. **Table.** Mean +- sd over the seeds (adapter initialization and batch order change; the base
   does not) of ROUGE-1/2/L/Lsum on the test split, trainable parameters and trainable %
   (PEFT's definition: trainable / all parameters, adapter included; ``peft.model.trainable_percent``),
   AdamW state, median step time and checkpoint size.
5. **Verdict,** computed with a stated tolerance, and a **width/depth sweep** of full vs LoRA q,v
   (the course's explanation of LoRA's small gap is that a big model has features to re-use).

Writes ``peft_compare.json`` and ``peft_compare.png`` (ROUGE-L against trainable % on a log axis,
error bars = sd over seeds) to ``--out``. Everything is seeded and runs on one thread, so a second
run prints the same table; only the step-time column (a wall-clock measurement) differs.

Usage:
    python benchmarks/peft_compare.py --help
    python benchmarks/peft_compare.py --quick           # see RUNTIME below
    python benchmarks/peft_compare.py                   # 3 seeds, 150 steps, 3-size sweep
    MINILLM_SMOKE=1 python benchmarks/peft_compare.py   # seconds: checks that it runs

RUNTIME, measured on the shared 2-core development machine (other jobs running, so wall time is
mostly waiting; the CPU time is about the wall time on a quiet machine, one thread): the default
run took 2152 s wall and 504 s of CPU; ``--quick`` took 924 s wall and 145 s of CPU. Every run
prints its own "total" line and stores ``seconds`` and ``cpu_seconds`` in the JSON.

Caveat of the sweep: each size reuses the learning rates chosen for the main size, so a size whose
best rate differs is under-tuned (in the measured run full fine-tuning scored lower at d128x2 than
at d64x2, which narrows the gap there).
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

sys.path[0] = str(Path(__file__).resolve().parents[1])  # the repo root, not this folder (its kernels.py would shadow a package)

import minillm  # noqa: E402
from minillm.data import (Batcher, Tokenizer, build_mixture, format_example, get_task,  # noqa: E402
                          pretraining_corpus, span_corruption_pairs)
from minillm.data.collate import tokenize_records  # noqa: E402
from minillm.models import T5Config, T5ForConditionalGeneration  # noqa: E402
from minillm.optim import AdamW  # noqa: E402
from minillm.peft import (NORMS, AdapterConfig, LoraConfig, PromptTuningConfig, SelectiveConfig,  # noqa: E402
                          get_peft_model)
from minillm.peft.model import count_parameters, trainable_percent  # noqa: E402

TASK = "dialogue_summary"
FAMILY_MIXTURE = ["dialogue_summary", "translation", "sentiment", "paraphrase", "arithmetic"]
ALL_LINEAR = ["q", "k", "v", "o", "wi", "wo"]
MAX_SRC, MAX_TGT = 96, 32
COURSE = {"full_rouge1": 42.16, "lora_rouge1": 40.81, "lora_pct": 1.41, "base_rouge1": 23.34}

# (name, size): the main model is "d64"; the sweep adds the others.
SIZES = {"d32x1": dict(d_model=32, d_ff=64, num_layers=1), "d64x2": dict(d_model=64, d_ff=128, num_layers=2),
         "d128x2": dict(d_model=128, d_ff=256, num_layers=2)}
MAIN_SIZE = "d64x2"
# One small grid per method, factors of about 3 (a first --quick run chose the top of the earlier
# full / adapters / selective grids, 3e-3, 1e-2, 3e-3, so those grids start one step higher).
LR_GRID = {"full fine-tuning": (1e-3, 3e-3, 1e-2), "LoRA q,v": (3e-3, 1e-2, 3e-2),
           "LoRA all-linear": (3e-3, 1e-2, 3e-2), "adapters": (3e-3, 1e-2, 3e-2),
           "prompt tuning": (3e-2, 1e-1, 3e-1), "selective": (1e-3, 3e-3, 1e-2)}
SETTINGS = {  # base pretrain/instruct steps, examples per base task, task train/val/test sizes, batch
    "full": dict(pretrain_steps=300, instruct_steps=600, base_examples=600, family_examples=150,
                 n_train=600, n_val=32, n_test=64, batch=16, steps=150, seeds=3, sweep=list(SIZES), lr_grid=True),
    "quick": dict(pretrain_steps=150, instruct_steps=300, base_examples=400, family_examples=100,
                  n_train=400, n_val=16, n_test=32, batch=16, steps=80, seeds=2, sweep=["d32x1", "d64x2"], lr_grid=True),
    "smoke": dict(pretrain_steps=3, instruct_steps=3, base_examples=12, family_examples=4,
                  n_train=16, n_val=4, n_test=4, batch=4, steps=2, seeds=2, sweep=["d32x1"], lr_grid=False),
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
    return {"step_ms": 1e3 * statistics.median(times), "optimizer_bytes": int(state), "loss_last": losses[-1]}


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


def build_tokenizer(s: dict) -> Tokenizer:
    """BPE on the plain-text corpus plus the base mixture's training text (train split only)."""
    records = build_mixture(FAMILY_MIXTURE, s["base_examples"], seed=0)
    return Tokenizer.train(pretraining_corpus(2 * s["base_examples"]) + [r.prompt + " " + r.completion
                           for r in records], vocab_size=1000, num_sentinels=16)


def build_base(size: str, tokenizer: Tokenizer, s: dict, family: list = FAMILY_MIXTURE, echo=print):
    """Pretrain (span corruption) then instruction-tune a T5 of ``size``; returns (config, state)."""
    minillm.manual_seed(0)
    dims = SIZES[size]
    config = T5Config(vocab_size=tokenizer.vocab_size, d_kv=16, num_heads=dims["d_model"] // 16, dropout_rate=0.0,
                      **dims)
    model = T5ForConditionalGeneration(config)
    started = time.perf_counter()
    corpus = span_corruption_pairs(pretraining_corpus(4 * s["base_examples"], seed=1), tokenizer, seed=0)
    pre = train(model, corpus, s["pretrain_steps"], 3e-3, 32, seed=0)
    sizes = {t: s["family_examples"] if t == TASK else s["base_examples"] for t in family}
    pairs, _ = tokenize_records(build_mixture(family, sizes, seed=0), tokenizer, MAX_SRC, MAX_TGT)
    inst = train(model, pairs, s["instruct_steps"], 3e-3, 32, seed=0)
    echo(f"  base {size}: {count_parameters(model)[1]:,} parameters; pretraining loss {pre['loss_last']:.2f}, "
         f"instruction loss {inst['loss_last']:.2f} ({time.perf_counter() - started:.0f} s)")
    return config, {k: v.copy() for k, v in model.state_dict().items()}


def lora_all_linear_rank(config, budget: int) -> int:
    """The rank at which LoRA on every linear layer trains about ``budget`` numbers (at least 1)."""
    per_rank = get_peft_model(T5ForConditionalGeneration(config), LoraConfig(r=1, target_modules=ALL_LINEAR))
    return max(1, round(budget / per_rank.get_nb_trainable_parameters()[0]))


def method_config(name: str, config, lora_budget: int):
    """The PeftConfig of a method (None: full fine-tuning)."""
    if name == "full fine-tuning":
        return None
    if name == "LoRA q,v":
        return LoraConfig(r=8, lora_alpha=16, target_modules=["q", "v"])
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
    if save_to is not None:
        model.save_pretrained(save_to)
        weights = "model.safetensors" if method is None else "adapter_model.safetensors"
        row["checkpoint_bytes"] = (Path(save_to) / weights).stat().st_size
    return row


# ----------------------------------------------------------------------------- the experiment
def choose_lr(name, config, state, tokenizer, data, s, lora_budget) -> tuple[float, dict]:
    """The grid rate with the best validation ROUGE-L (seed 0); ties go to the smaller rate."""
    grid = LR_GRID[name] if s["lr_grid"] else LR_GRID[name][1:2]
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


def verdict(table: list[dict], sweep: dict, n_params: int) -> list[str]:
    """The sentences of the conclusion, each computed from the numbers (tolerance: 2 standard errors)."""
    full = next(t for t in table if t["method"] == "full fine-tuning")
    lora = next(t for t in table if t["method"] == "LoRA q,v")
    d, se = gap(table, "full fine-tuning", "LoRA q,v")
    d1, _ = gap(table, "full fine-tuning", "LoRA q,v", "rouge1")
    tol = 2 * se
    same = abs(d) <= tol
    out = [f"LoRA q,v (r=8) is {d:+.1f} ROUGE-L points from full fine-tuning ({lora['rougeL']:.1f} vs "
           f"{full['rougeL']:.1f}) at {lora['trainable_pct']:.2f}% of the parameters; tolerance 2 standard errors "
           f"of the difference = {tol:.1f} points, so the two are "
           + ("indistinguishable here." if same else ("apart: full fine-tuning is better." if d > 0 else
                                                      "apart: LoRA is better."))]
    out.append(f"The course (FLAN-T5, 250M parameters) found LoRA r=32 on q,v {COURSE['full_rouge1'] - COURSE['lora_rouge1']:.1f} "
               f"ROUGE-1 points below full fine-tuning at {COURSE['lora_pct']}%; here the ROUGE-1 gap is {d1:.1f} "
               f"points at {lora['trainable_pct']:.1f}%, on a model of {n_params:,} parameters.")
    best = max((t for t in table if t["method"] not in ("base (no tuning)", "full fine-tuning")), key=lambda t: t["rougeL"])
    out.append(f"The best parameter-efficient method was {best['method']} (ROUGE-L {best['rougeL']:.1f} ± "
               f"{best['rougeL_sd']:.1f} at {best['trainable_pct']:.2f}%).")
    if len(sweep) >= 2:
        items = sorted(sweep.items(), key=lambda kv: kv[1]["params"])
        gaps = ", ".join(f"{v['gap']:+.1f} ± {v['gap_se']:.1f} at {v['params']:,} parameters" for _, v in items)
        first, last = items[0][1], items[-1][1]
        noise = 2 * (first["gap_se"] ** 2 + last["gap_se"] ** 2) ** 0.5
        trend = ("shrinks" if last["gap"] < first["gap"] - noise else
                 "grows" if last["gap"] > first["gap"] + noise else "does not change beyond its noise")
        out.append(f"Why the difference: the course's explanation is that LoRA re-uses features the frozen base "
                   f"already computes, which a 250M-parameter model has and a {n_params:,}-parameter one lacks. "
                   f"Across the width/depth sweep the full-minus-LoRA ROUGE-L gap is {gaps}: it {trend} as the "
                   f"model grows (tolerance {noise:.1f} points), which "
                   + ("supports" if trend == "shrinks" else "does not by itself support") + " that explanation at "
                   "these sizes.")
    return out


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


def run_sweep(sizes, tokenizer, data, s, main_rows, main_base, work, echo=print) -> dict:
    """Full vs LoRA q,v at each size (the main size reuses its results); rates from the main size."""
    lrs = {name: main_rows[name]["lr"] for name in ("full fine-tuning", "LoRA q,v")}
    out = {}
    for size in sizes:
        if size == MAIN_SIZE:
            config, rows = main_base[0], main_rows
        else:
            config, state = build_base(size, tokenizer, s, echo=echo)
            budget = get_peft_model(T5ForConditionalGeneration(config),
                                    method_config("LoRA q,v", config, 0)).get_nb_trainable_parameters()[0]
            rows = {name: {"lr": lr, "runs": [run_method(name, config, state, tokenizer, data, lr, seed, s, budget)
                                              for seed in range(s["seeds"])]} for name, lr in lrs.items()}
        table = summarize({k: rows[k] for k in lrs})
        for t in table:
            t["checkpoint_bytes"] = t.get("checkpoint_bytes") or 0
        g, se = gap(table, "full fine-tuning", "LoRA q,v")
        out[size] = {"params": count_parameters(T5ForConditionalGeneration(config))[1], "gap": g, "gap_se": se,
                     "full_rougeL": table[0]["rougeL"], "lora_rougeL": table[1]["rougeL"],
                     "lora_pct": table[1]["trainable_pct"]}
        echo(f"  sweep {size}: full {table[0]['rougeL']:.1f}, LoRA q,v {table[1]['rougeL']:.1f}, gap {g:+.1f} ± {se:.1f}")
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, help="seeds per method (default: 3; --quick: 2)")
    parser.add_argument("--steps", type=int, help="adaptation steps per run (default: 150; --quick: 80)")
    parser.add_argument("--quick", action="store_true", help="smaller base, data and sweep (a quicker look)")
    parser.add_argument("--no-sweep", action="store_true", help="skip the width/depth sweep")
    parser.add_argument("--out", default="benchmarks/out", help="folder for peft_compare.json and .png")
    args = parser.parse_args(argv)
    smoke = os.environ.get("MINILLM_SMOKE", "").strip() not in ("", "0", "false", "False")
    s = dict(SETTINGS["smoke" if smoke else "quick" if args.quick else "full"])
    s.update({k: v for k, v in (("seeds", args.seeds), ("steps", args.steps)) if v is not None})
    minillm.set_num_threads(1)  # one thread: the same sums in the same order, so the same table twice
    started, cpu = time.perf_counter(), time.process_time()
    out, work = Path(args.out), Path(tempfile.mkdtemp(prefix="peft_compare_"))
    out.mkdir(parents=True, exist_ok=True)
    print(f"settings: {s}")
    tokenizer = build_tokenizer(s)
    data = task_records(TASK, s)
    config, state = build_base(MAIN_SIZE, tokenizer, s)
    rows = compare(config, state, tokenizer, data, s, list(LR_GRID), work)
    table = summarize(rows)
    n_params = count_parameters(T5ForConditionalGeneration(config))[1]
    sweep = {} if args.no_sweep else run_sweep(s["sweep"], tokenizer, data, s, rows, (config, state), work)
    text = format_table(table, s["steps"])
    sentences = verdict(table, sweep, n_params)
    print(f"\n{TASK}, base {MAIN_SIZE} ({n_params:,} parameters), test split of {s['n_test']} dialogues:\n{text}\n")
    print("\n".join(sentences))
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    result = {"settings": s, "table": table, "runs": rows, "sweep": sweep, "verdict": sentences,
              "course": COURSE, "seconds": round(seconds, 1), "cpu_seconds": round(cpu_seconds, 1)}
    (out / "peft_compare.json").write_text(json.dumps(result, indent=2))
    drew = plot(table, out / "peft_compare.png")
    print(f"\nwrote {out / 'peft_compare.json'}" + (f" and {out / 'peft_compare.png'}" if drew else ""))
    print(f"total {seconds:.0f} s wall, {cpu_seconds:.0f} s CPU")
    return result


if __name__ == "__main__":
    main()
