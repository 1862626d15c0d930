"""The PEFT lab table: full fine-tuning vs LoRA vs adapters vs prompt tuning vs selective.

1. Train a tokenizer and a small T5 "base" on the built-in multitask mixture *without*
   dialogue_summary (FLAN-style instruction fine-tuning from scratch, briefly).
2. Adapt a fresh copy of that base to dialogue_summary with each method, for the same number of
   steps, with a plain loop: AdamW + Batcher + model(**batch).loss.backward().
3. Print one table: ROUGE-1/2/L on held-out dialogues, trainable parameters (and % of the model),
   optimizer-state memory (AdamW keeps 2 floats per trainable parameter), median step time and
   checkpoint size (the whole model for full fine-tuning, adapter_model.safetensors otherwise).

Usage:
    python benchmarks/peft_compare.py            # about 5-8 minutes on 2 CPU cores
    MINILLM_SMOKE=1 python benchmarks/peft_compare.py   # seconds: checks that it runs
"""
from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path[0] = str(Path(__file__).resolve().parents[1])  # the repo root, not this folder (its kernels.py would shadow a package)

import minillm  # noqa: E402
from minillm.data import Batcher, Tokenizer, build_mixture, format_example, get_task, pretraining_corpus  # noqa: E402
from minillm.data.collate import tokenize_records  # noqa: E402
from minillm.models import T5Config, T5ForConditionalGeneration  # noqa: E402
from minillm.optim import AdamW  # noqa: E402
from minillm.peft import (NORMS, AdapterConfig, LoraConfig, PromptTuningConfig, SelectiveConfig,  # noqa: E402
                          get_peft_model)

SMOKE = os.environ.get("MINILLM_SMOKE") == "1"
TASK = "dialogue_summary"
BASE_TASKS = ["translation", "sentiment", "paraphrase", "arithmetic", "antonym"]
SIZES = dict(d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4)
BASE_STEPS, ADAPT_STEPS, BATCH, N_TRAIN, N_EVAL = (4, 3, 4, 16, 4) if SMOKE else (350, 150, 16, 600, 48)
MAX_SRC, MAX_TGT = 96, 32


def rouge(predictions, references) -> dict:
    """Corpus ROUGE-1/2/L F1 x 100 (minillm.metrics, which matches rouge-score)."""
    from minillm.metrics import corpus_rouge  # noqa: PLC0415

    scores = corpus_rouge(predictions, references, rouge_types=("rouge1", "rouge2", "rougeL"))
    return {k: 100 * v.mid.fmeasure for k, v in scores.items()}


def train(model, batcher, steps, lr):
    """The plain loop. Returns (median step seconds, optimizer-state bytes)."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = AdamW(params, lr=lr, weight_decay=0.0)
    model.train()
    times, step, epoch = [], 0, 0
    while step < steps:
        batcher.set_epoch(epoch)
        for batch in batcher:
            start = time.perf_counter()
            loss = model(**batch).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
            times.append(time.perf_counter() - start)
            step += 1
            if step == steps:
                break
        epoch += 1
    model.eval()
    state_bytes = sum(v.nbytes for s in opt.state.values() for v in s.values() if hasattr(v, "nbytes"))
    return statistics.median(times), state_bytes, loss.item()


def evaluate(model, tokenizer, records):
    predictions = []
    for i in range(0, len(records), 16):
        chunk = records[i:i + 16]
        enc = tokenizer.batch_encode([r[0] for r in chunk], max_length=MAX_SRC)
        out = model.generate(enc["input_ids"], attention_mask=enc["attention_mask"], max_new_tokens=MAX_TGT)
        predictions += [tokenizer.decode(row) for row in out.tolist()]
    return rouge(predictions, [r[1] for r in records])


def dir_size(path: Path, name: str) -> int:
    return (path / name).stat().st_size


def main():
    t0 = time.time()
    minillm.manual_seed(0)
    base_records = build_mixture(BASE_TASKS, examples_per_task=N_TRAIN, seed=0)
    tokenizer = Tokenizer.train(pretraining_corpus(200 if SMOKE else 2000) + [r.prompt + " " + r.completion
                                for r in base_records], vocab_size=1000, num_sentinels=10)
    config = T5Config(vocab_size=tokenizer.vocab_size, dropout_rate=0.0, **SIZES)
    base = T5ForConditionalGeneration(config)
    pairs, _ = tokenize_records(base_records, tokenizer, MAX_SRC, MAX_TGT)
    step_s, _, loss = train(base, Batcher(pairs, BATCH, seed=0), BASE_STEPS, lr=3e-3)
    print(f"base: {BASE_STEPS} multitask steps without {TASK} (loss {loss:.2f}, {step_s * 1e3:.0f} ms/step, "
          f"{time.time() - t0:.0f} s)", flush=True)
    work = Path(tempfile.mkdtemp(prefix="peft_compare_"))
    base.save_pretrained(work / "base")

    task = get_task(TASK)
    train_records = [format_example(task, ex, 0) for ex in task.examples("train", N_TRAIN, seed=1)]
    eval_records = [format_example(task, ex, 0) for ex in task.examples("test", N_EVAL, seed=1)]
    task_pairs, _ = tokenize_records(train_records, tokenizer, MAX_SRC, MAX_TGT)
    methods = [
        ("base (no tuning)", None, 0.0),
        ("full fine-tuning", "full", 1e-3),
        ("LoRA r=8 q,v", LoraConfig(r=8, lora_alpha=16, target_modules=["q", "v"]), 1e-2),
        ("adapters m=16", AdapterConfig(adapter_size=16), 3e-3),
        ("prompt tuning 20", PromptTuningConfig(num_virtual_tokens=20, prompt_tuning_init="sample_vocab"), 3e-1),
        ("selective last+norms", SelectiveConfig(patterns=[NORMS], last_n_decoder_blocks=1), 1e-3),
    ]
    rows = []
    for name, method, lr in methods:
        model = T5ForConditionalGeneration.from_pretrained(work / "base")
        total = model.num_parameters()
        if method is None:
            scores, trainable, state, step_s, ckpt = evaluate(model, tokenizer, eval_records), 0, 0, 0.0, 0
        else:
            if method != "full":
                model = get_peft_model(model, method)
            trainable = sum(p.size for p in model.parameters() if p.requires_grad)
            step_s, state, _ = train(model, Batcher(task_pairs, BATCH, seed=1), ADAPT_STEPS, lr)
            scores = evaluate(model, tokenizer, eval_records)
            out = work / name.split()[0].lower()
            model.save_pretrained(out)
            ckpt = dir_size(out, "model.safetensors" if method == "full" else "adapter_model.safetensors")
        rows.append((name, scores, trainable, 100 * trainable / total, state, step_s, ckpt))
        print(f"  done: {name} ({time.time() - t0:.0f} s)", flush=True)

    print(f"\n{TASK}: {ADAPT_STEPS} steps x batch {BATCH} from the same base; ROUGE on {N_EVAL} test dialogues "
          f"(greedy). Base model: {total:,} parameters.")
    header = (f"| {'method':<22} | {'R-1':>5} | {'R-2':>5} | {'R-L':>5} | {'trainable':>9} | {'%':>7} "
              f"| {'opt state':>9} | {'step ms':>7} | {'checkpoint':>10} |")
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for name, s, trainable, pct, state, step_s, ckpt in rows:
        print(f"| {name:<22} | {s['rouge1']:5.1f} | {s['rouge2']:5.1f} | {s['rougeL']:5.1f} | {trainable:>9,} "
              f"| {pct:7.3f} | {state / 1024:6.1f} KB | {step_s * 1e3:7.1f} | {ckpt / 1024:7.1f} KB |")
    print(f"\ntotal {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
