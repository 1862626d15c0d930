"""minillm vs PyTorch + peft on a flan-t5-small-shaped model: the workload of issue 24.

A user brings a flan-t5-small-shaped checkpoint (vocab 32128, d_model 512, d_kv 64, 6 heads,
d_ff 1024, 8+8 layers, gated-gelu, an lm_head of its own) and fine-tunes it. This benchmark builds
such a folder with transformers' own initializer, loads it into both frameworks, and measures:

    LoRA step     r=32 on q and v (alpha 32), AdamW, batch 8 x (256 source + 64 target tokens),
                  half the rows padded (source 128 tokens, target 32); both frameworks get the
                  same LoRA weights (B drawn non-zero so that every product is exercised)
    full step     the same batch, every parameter trained
    peak memory   each framework's LoRA and full step in a process of its own (VmHWM), so
                  that one framework's heap does not count against the other
    decoding      greedy and 4-beam tokens/s for 32 new tokens, forced to full length (</s> off)

Steps are timed in turns, minillm then PyTorch, each turn after an untimed step of its own
(``train_step.time_in_blocks``), so machine noise hits both alike. The ratios are

    step ratio  = minillm median / PyTorch median         (< 1: minillm is faster; target <= 0.70 for LoRA)
    memory      = minillm peak / PyTorch peak
    decoding    = minillm tokens/s / PyTorch tokens/s     (> 1: minillm is faster)

and the verdict lines are printed from them.

Usage:
    python benchmarks/lora_step.py [--steps 3] [--threads 2] [--no-memory]
    MINILLM_SMOKE=1 python benchmarks/lora_step.py     # a tiny model of the same structure, seconds
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=3, help="timed steps per framework and mode")
    p.add_argument("--threads", type=int, default=2, help="BLAS / torch threads (the issue measured 2)")
    p.add_argument("--new-tokens", type=int, default=32, help="tokens generated per sequence")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory processes")
    p.add_argument("--disk", action="store_true", help="instead: the disk a `finetune --method lora` run takes, "
                   "by default and with --copy-base (one step, r=8 on q,v)")
    p.add_argument("--peak", help=argparse.SUPPRESS)    # internal: FRAMEWORK-MODE in a process of its own
    p.add_argument("--folder", help=argparse.SUPPRESS)  # internal: the model folder for --peak
    return p.parse_args(argv)


ARGS = parse_args()
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # before NumPy's BLAS starts
    os.environ[var] = str(ARGS.threads)

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[0] = os.path.join(HERE, "..")  # the repository root (this folder's kernels.py would shadow a package)
import minillm  # noqa: E402
from minillm.models import T5ForConditionalGeneration  # noqa: E402
from minillm.optim import AdamW  # noqa: E402
from minillm.peft import LoraConfig, get_peft_model  # noqa: E402

SMOKE = os.environ.get("MINILLM_SMOKE") == "1"
CONFIG = dict(vocab_size=32128, d_model=512, d_kv=64, d_ff=1024, num_layers=8, num_decoder_layers=8, num_heads=6,
              feed_forward_proj="gated-gelu", tie_word_embeddings=False, dropout_rate=0.1,
              decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
BATCH, SRC_LEN, TGT_LEN, RANK = 8, 256, 64, 32
if SMOKE:
    CONFIG.update(vocab_size=256, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4)
    BATCH, SRC_LEN, TGT_LEN, RANK = 4, 16, 8, 4
    ARGS.steps, ARGS.new_tokens = 1, 4


def build_folder(directory: str) -> str:
    """A flan-t5-small-shaped folder made by transformers' initializer (seed 0).

    transformers 5 ties the lm_head to the embedding whatever ``tie_word_embeddings`` says, so the
    head is untied by hand, drawn as transformers' initializer draws an untied head (std 1.0).
    """
    import torch
    import transformers

    torch.manual_seed(0)
    hf = transformers.T5ForConditionalGeneration(transformers.T5Config(**CONFIG))
    hf.lm_head.weight = torch.nn.Parameter(torch.randn_like(hf.shared.weight))
    hf.config.tie_word_embeddings = False
    hf.save_pretrained(directory)
    return directory


def make_batch():
    """Source, mask and labels; rows BATCH/2.. are padded to half length (labels -100 there)."""
    rng = np.random.default_rng(0)
    ids = rng.integers(2, CONFIG["vocab_size"], (BATCH, SRC_LEN))
    labels = rng.integers(2, CONFIG["vocab_size"], (BATCH, TGT_LEN))
    ids[BATCH // 2:, SRC_LEN // 2:] = 0
    labels[BATCH // 2:, TGT_LEN // 2:] = -100
    return ids, (ids != 0).astype(np.int64), labels


def load_minillm(folder: str, mode: str):
    model = T5ForConditionalGeneration.from_pretrained(folder)
    if mode == "lora":
        model = get_peft_model(model, LoraConfig(r=RANK, lora_alpha=RANK, target_modules=["q", "v"]))
    return model.train()


def load_torch(folder: str, mode: str):
    import peft
    import transformers

    hf = transformers.T5ForConditionalGeneration.from_pretrained(folder)
    if mode == "lora":
        hf = peft.get_peft_model(hf, peft.LoraConfig(task_type="SEQ_2_SEQ_LM", r=RANK, lora_alpha=RANK,
                                                     target_modules=["q", "v"], lora_dropout=0.0))
    return hf.train()


def same_lora_weights(model, hf) -> None:
    """Both adapters get the same A and B (B non-zero: at B = 0 a LoRA step skips half its work)."""
    import peft
    import torch

    rng = np.random.default_rng(1)
    theirs = peft.get_peft_model_state_dict(hf)
    ours = model.adapter_state()
    assert set(ours) == set(theirs), "the two adapters differ in their tensors"
    values = {k: (rng.standard_normal(p.shape) * 0.02).astype(np.float32) for k, p in sorted(ours.items())}
    for key, p in ours.items():
        p.data = values[key].copy()
    peft.set_peft_model_state_dict(hf, {k: torch.tensor(v) for k, v in values.items()})


def step_functions(model, hf, batch):
    """One training step of each framework: forward, backward, AdamW over the trainable parameters."""
    import torch

    ids, mask, labels = batch
    t_inputs = dict(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), labels=torch.tensor(labels))
    opt = AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    t_opt = torch.optim.AdamW([p for p in hf.parameters() if p.requires_grad], lr=1e-4)

    def minillm_step():
        model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad()

    def torch_step():
        hf(**t_inputs).loss.backward()
        t_opt.step()
        t_opt.zero_grad()

    return {"minillm": minillm_step, "pytorch": torch_step}


def time_in_turns(calls: dict, repeats: int) -> dict:
    """Median seconds per call; the calls take turns, each timed call after an untimed one of its own."""
    import time

    times = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            call()
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(v) for name, v in times.items()}


def decoding_rates(folder: str, batch) -> dict:
    """Greedy and 4-beam tokens/s of the base model, 32 new tokens per sequence (no </s> stop)."""
    import torch
    import transformers

    ids, mask, _ = batch
    model = T5ForConditionalGeneration.from_pretrained(folder)
    hf = transformers.T5ForConditionalGeneration.from_pretrained(folder).eval()
    n, rates = ARGS.new_tokens, {}
    for beams in (1, 4):
        def ours(beams=beams):
            return model.generate(ids, mask, max_new_tokens=n, num_beams=beams, eos_token_id=-1)

        def theirs(beams=beams):
            with torch.no_grad():
                return hf.generate(torch.tensor(ids), attention_mask=torch.tensor(mask), max_new_tokens=n,
                                   min_new_tokens=n, num_beams=beams, do_sample=False, early_stopping=False)

        seconds = time_in_turns({"minillm": ours, "pytorch": theirs}, repeats=2)
        rates["greedy" if beams == 1 else "4 beams"] = {k: BATCH * n / s for k, s in seconds.items()}
    return rates


def peak_in_own_process(framework: str, mode: str, folder: str) -> float:
    """Peak resident memory (MB) of a process that loads the model and runs two steps of one framework."""
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--peak", f"{framework}-{mode}", "--folder",
                          folder, "--threads", str(ARGS.threads)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mb"]


def run_peak(spec: str, folder: str) -> None:
    """The --peak process: one framework loads the folder, takes two steps, and prints its peak RSS."""
    framework, mode = spec.split("-")
    ids, mask, labels = make_batch()
    if framework == "minillm":
        model = load_minillm(folder, mode)
        opt = AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    else:
        import torch

        model = load_torch(folder, mode)
        ids, mask, labels = (torch.tensor(a) for a in (ids, mask, labels))
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    for _ in range(2):
        model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad()
    print(json.dumps({"peak_mb": peak_resident_mb()}))


def peak_resident_mb() -> float:
    """This process's peak resident memory: VmHWM (ru_maxrss would carry the parent's peak across exec)."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def table(rows) -> str:
    lines = [f"| {'measure':<28} | {'minillm':>12} | {'PyTorch + peft':>14} | {'ratio':>6} |",
             f"|{'-' * 30}|{'-' * 14}|{'-' * 16}|{'-' * 8}|"]
    for name, ours, theirs, unit in rows:
        lines.append(f"| {name:<28} | {ours:>9.3f} {unit:<2} | {theirs:>11.3f} {unit:<2} | {ours / theirs:>6.2f} |")
    return "\n".join(lines)


def main() -> None:
    import torch

    torch.set_num_threads(ARGS.threads)
    minillm.set_num_threads(ARGS.threads)
    batch = make_batch()
    with tempfile.TemporaryDirectory() as folder:
        build_folder(folder)
        rows, steps = [], {}
        for mode in ("lora", "full"):
            minillm.manual_seed(0)
            model, hf = load_minillm(folder, mode), load_torch(folder, mode)
            if mode == "lora":
                same_lora_weights(model, hf)
            steps[mode] = time_in_turns(step_functions(model, hf, batch), ARGS.steps)
            rows.append((f"{'LoRA r=' + str(RANK) + ' q,v' if mode == 'lora' else 'full'} step", steps[mode]["minillm"],
                         steps[mode]["pytorch"], "s"))
            del model, hf
        if not ARGS.no_memory:
            for mode in ("lora", "full"):
                rows.append((f"peak memory, {mode}", peak_in_own_process("minillm", mode, folder),
                             peak_in_own_process("pytorch", mode, folder), "MB"))
        rates = decoding_rates(folder, batch)
    for name, rate in rates.items():
        rows.append((f"{name} decoding", rate["minillm"], rate["pytorch"], "/s"))
    print(f"flan-t5-small shape{' (SMOKE: tiny)' if SMOKE else ''}: batch {BATCH} x ({SRC_LEN}+{TGT_LEN}), half the "
          f"rows padded, {ARGS.threads} threads, {ARGS.steps} timed steps per framework and mode (medians)")
    print(table(rows))
    lora = steps["lora"]["minillm"] / steps["lora"]["pytorch"]
    full = steps["full"]["minillm"] / steps["full"]["pytorch"]
    print(f"LoRA step: minillm takes {lora:.2f}x PyTorch + peft's time; the target (<= 0.70) is "
          f"{'met' if lora <= 0.70 else 'not met'}; {'faster' if lora < 1 else 'slower'} than PyTorch + peft.")
    print(f"full fine-tuning step: {full:.2f}x PyTorch's time ({'faster' if full < 1 else 'slower'}).")
    for name, rate in rates.items():
        ratio = rate["minillm"] / rate["pytorch"]
        print(f"{name} decoding: minillm at {ratio:.2f}x transformers' tokens/s "
              f"({'faster' if ratio > 1 else 'slower'}).")


def folder_bytes(path: str) -> dict:
    """{entry of ``path``: bytes in it (files' sizes, summed over a folder)}."""
    sizes = {}
    for name in sorted(os.listdir(path)):
        full = os.path.join(path, name)
        sizes[name] = (sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(full) for f in fs)
                       if os.path.isdir(full) else os.path.getsize(full))
    return sizes


def disk() -> None:
    """Run `minillm finetune --method lora` for one step, by default and with --copy-base; print the sizes."""
    from minillm.data import Tokenizer

    with tempfile.TemporaryDirectory() as root:
        base, data = build_folder(os.path.join(root, "base")), os.path.join(root, "data.jsonl")
        texts = [f"Add one to {a}. The answer is {a + 1}." for a in range(200)]
        Tokenizer.train(texts, vocab_size=300, model="unigram", num_sentinels=10).save(base)
        with open(data, "w", encoding="utf-8") as f:
            f.writelines(json.dumps({"prompt": f"Add one to {a}.", "completion": str(a + 1)}) + "\n" for a in range(40))
        print(f"base folder: {sum(folder_bytes(base).values()) / 1e6:.1f} MB")
        for name, extra in (("default", []), ("--copy-base", ["--copy-base"])):
            out = os.path.join(root, name.strip("-"))
            subprocess.run([sys.executable, "-m", "minillm", "finetune", "--model", base, "--data", data, "--method",
                            "lora", "--max-steps", "1", "--batch-size", "2", "--eval-num-examples", "1",
                            "--eval-max-new-tokens", "2", "--max-source-length", "32", "--max-target-length", "8",
                            "--threads", str(ARGS.threads), "--out", out, *extra], check=True, capture_output=True,
                           cwd=os.path.join(HERE, ".."))
            sizes = folder_bytes(out)
            listed = ", ".join(f"{k} {v / 1e6:.2f} MB" for k, v in sizes.items() if v > 10_000)
            print(f"LoRA run, {name}: {sum(sizes.values()) / 1e6:.1f} MB ({listed})")


if __name__ == "__main__":
    if ARGS.peak:
        run_peak(ARGS.peak, ARGS.folder)
    elif ARGS.disk:
        disk()
    else:
        main()
