"""minillm (NumPy) vs transformers (PyTorch CPU): one T5 training step and greedy generation.

Both frameworks get the same weights (minillm saves a Hugging Face folder that transformers
loads), the same batch, the same number of threads, and the same optimizer (AdamW). Each is
timed in the same process, alternating, so machine noise hits both alike. The numbers that
matter are the ratios:

    train-step ratio = minillm median / PyTorch median        (<= 1.0: minillm is as fast or faster)
    generation ratio = minillm tokens/s / transformers tokens/s (>= 1.0: minillm is as fast or faster)

Usage:
    python benchmarks/train_step.py [--steps 10] [--threads N] [--profile]
    MINILLM_SMOKE=1 python benchmarks/train_step.py     # tiny config, seconds
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=10, help="timed steps per framework (after warm-up)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="BLAS / torch threads")
    p.add_argument("--new-tokens", type=int, default=32, help="tokens generated per sequence")
    p.add_argument("--profile", action="store_true", help="cProfile minillm's step; print the top entries")
    return p.parse_args(argv)


ARGS = parse_args()
# Thread counts must be fixed before NumPy's BLAS starts.
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(ARGS.threads)

import numpy as np  # noqa: E402

# Python put this script's folder first on sys.path; it holds kernels.py, which would shadow the
# `kernels` package that transformers probes for. Use the repository root instead.
sys.path[0] = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
import minillm  # noqa: E402
from minillm.models import T5Config, T5ForConditionalGeneration  # noqa: E402
from minillm.optim import AdamW  # noqa: E402

SMOKE = os.environ.get("MINILLM_SMOKE") == "1"
# The configuration named in the issue: d_model 256, 4+4 layers, 4 heads, d_kv 64, d_ff 1024,
# gated-gelu, vocab 2048, batch 32, source length 64, target length 32.
CONFIG = dict(vocab_size=2048, d_model=256, d_kv=64, d_ff=1024, num_layers=4, num_heads=4,
              feed_forward_proj="gated-gelu", dropout_rate=0.1, decoder_start_token_id=0)
BATCH, SRC_LEN, TGT_LEN = 32, 64, 32
if SMOKE:
    CONFIG.update(d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=2, vocab_size=128)
    BATCH, SRC_LEN, TGT_LEN = 4, 16, 8
    ARGS.steps, ARGS.warmup, ARGS.new_tokens = 2, 1, 4


def main() -> int:
    try:
        import torch
        import transformers
    except ImportError:
        print("This benchmark compares against PyTorch: pip install 'minillm[parity]'")
        return 1
    torch.set_num_threads(ARGS.threads)
    minillm.set_num_threads(ARGS.threads)  # minillm's own threads; BLAS then runs one per call
    minillm.manual_seed(0)
    model = T5ForConditionalGeneration(T5Config(**CONFIG))
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        hf = transformers.T5ForConditionalGeneration.from_pretrained(folder)
    hf.train()
    model.train()

    rng = np.random.default_rng(0)
    input_ids = rng.integers(2, CONFIG["vocab_size"], (BATCH, SRC_LEN))
    attention_mask = np.ones_like(input_ids)
    labels = rng.integers(2, CONFIG["vocab_size"], (BATCH, TGT_LEN))
    t_inputs = dict(input_ids=torch.tensor(input_ids), attention_mask=torch.tensor(attention_mask),
                    labels=torch.tensor(labels))

    opt = AdamW(model.parameters(), lr=1e-4)
    t_opt = torch.optim.AdamW(hf.parameters(), lr=1e-4)

    def minillm_step():
        out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
        out.loss.backward()
        opt.step()
        opt.zero_grad()

    def torch_step():
        out = hf(**t_inputs)
        out.loss.backward()
        t_opt.step()
        t_opt.zero_grad()

    for _ in range(ARGS.warmup):
        minillm_step()
        torch_step()
    times = {"minillm": [], "pytorch": []}
    for _ in range(ARGS.steps):  # alternate, so that noise on the machine hits both
        for name, step in (("minillm", minillm_step), ("pytorch", torch_step)):
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in times.items()}

    # Greedy generation with the KV cache, forced to full length so both produce the same count.
    model.eval()
    hf.eval()
    n = ARGS.new_tokens

    def minillm_generate():
        return model.generate(input_ids, attention_mask, max_new_tokens=n, eos_token_id=-1)

    def torch_generate():
        with torch.no_grad():
            return hf.generate(t_inputs["input_ids"], attention_mask=t_inputs["attention_mask"],
                               max_new_tokens=n, min_new_tokens=n, do_sample=False, num_beams=1,
                               use_cache=True, pad_token_id=0)

    gen = {"minillm": [], "pytorch": []}
    minillm_generate(), torch_generate()  # warm-up
    for _ in range(3):
        for name, fn in (("minillm", minillm_generate), ("pytorch", torch_generate)):
            start = time.perf_counter()
            fn()
            gen[name].append(BATCH * n / (time.perf_counter() - start))
    tps = {k: statistics.median(v) for k, v in gen.items()}

    print(f"T5 d_model={CONFIG['d_model']} layers={CONFIG['num_layers']}+{CONFIG['num_layers']} "
          f"heads={CONFIG['num_heads']} d_ff={CONFIG['d_ff']} {CONFIG['feed_forward_proj']} "
          f"vocab={CONFIG['vocab_size']}; batch {BATCH}, source {SRC_LEN}, target {TGT_LEN}; "
          f"threads {ARGS.threads}; numpy {np.__version__}, torch {torch.__version__}")
    print(f"{'':32}{'minillm':>12}{'pytorch':>12}{'ratio':>10}")
    print(f"{'train step (fwd+bwd+AdamW), s':32}{med['minillm']:12.4f}{med['pytorch']:12.4f}"
          f"{med['minillm'] / med['pytorch']:10.3f}   (median of {ARGS.steps}; <= 1.0 is the target)")
    print(f"{'greedy generation, tokens/s':32}{tps['minillm']:12.1f}{tps['pytorch']:12.1f}"
          f"{tps['minillm'] / tps['pytorch']:10.3f}   (>= 1.0 is the target)")

    if ARGS.profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.enable()
        model.train()
        for _ in range(3):
            minillm_step()
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
    return 0


if __name__ == "__main__":
    sys.exit(main())
