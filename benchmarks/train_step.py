"""minillm (NumPy) vs transformers (PyTorch CPU): one T5 training step and greedy generation.

Both frameworks get the same weights, the same batch, the same number of threads, and the same
optimizer (AdamW), in four settings: two initializations x dropout 0.1 and 0.0.

    minillm init  minillm initializes the model and saves a Hugging Face folder; transformers
                  loads it.
    HF init       transformers' own initializer builds the model (the weights users fine-tune
                  from look like these), saves it with save_pretrained, and both frameworks load
                  that folder (minillm with from_pretrained).

Each step is timed in the same process, minillm (fast layer on), PyTorch and minillm with the
fast layer off (``minillm.fast_paths(False)``: the reference formulas) taking turns, so machine
noise hits all three alike. Each turn starts with one untimed step (``time_in_blocks`` says why).
The numbers that matter are the ratios:

    train-step ratio = minillm median / PyTorch median        (<= 1.0: minillm is as fast or faster)
    generation ratio = minillm tokens/s / transformers tokens/s (>= 1.0: minillm is as fast or faster)

``--subnormals`` also counts, op by op, the subnormal floats each reference op produces in one
step (docs/speed.md explains why they matter). ``--breakdown`` splits a step of each framework
into its linear layers' matrix products and everything else, and prints what a ratio of 0.9
would ask of the rest.

Usage:
    python benchmarks/train_step.py [--steps 10] [--threads N] [--settings minillm-0.1,hf-0.0]
                                    [--no-reference] [--subnormals] [--profile] [--breakdown]
    MINILLM_SMOKE=1 python benchmarks/train_step.py     # tiny config, seconds
"""
from __future__ import annotations

import argparse
import collections
import contextlib
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
    p.add_argument("--settings", default="minillm-0.1,minillm-0.0,hf-0.1,hf-0.0",
                   help="comma-separated INIT-DROPOUT settings, INIT in {minillm, hf}")
    p.add_argument("--no-reference", action="store_true", help="do not time the MINILLM_FAST=0 step")
    p.add_argument("--subnormals", action="store_true", help="count subnormal floats per op in one step")
    p.add_argument("--profile", action="store_true", help="cProfile minillm's step; print the top entries")
    p.add_argument("--breakdown", action="store_true",
                   help="time the linear layers' products apart from the rest, in both frameworks")
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
from minillm.autograd import Function  # noqa: E402
from minillm.fast.subnormals import count_subnormals  # noqa: E402
from minillm.optim import AdamW  # noqa: E402

SMOKE = os.environ.get("MINILLM_SMOKE") == "1"
# The toy configuration, laid out like T5 v1.1 / FLAN-T5 (gated-gelu, an lm_head of its own):
# d_model 256, 4+4 layers, 4 heads, d_kv 64, d_ff 1024, vocab 2048, batch 32, source length 64,
# target length 32. dropout_rate is set per setting. The untied head matters: transformers
# initializes it with std 1, so HF-initialized logits have std ~sqrt(d_model) = 16, and the
# softmax of such logits is where subnormal floats come from (docs/speed.md).
CONFIG = dict(vocab_size=2048, d_model=256, d_kv=64, d_ff=1024, num_layers=4, num_heads=4,
              feed_forward_proj="gated-gelu", dropout_rate=0.1, decoder_start_token_id=0,
              tie_word_embeddings=False)
BATCH, SRC_LEN, TGT_LEN = 32, 64, 32
if SMOKE:
    CONFIG.update(d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=2, vocab_size=128)
    BATCH, SRC_LEN, TGT_LEN = 4, 16, 8
    ARGS.steps, ARGS.warmup, ARGS.new_tokens = 2, 1, 4


def build_pair(init: str, dropout: float, folder: str):
    """(minillm model, transformers model) holding the same weights, both in training mode."""
    import torch
    import transformers

    minillm.manual_seed(0)
    own_dir, hf_dir = os.path.join(folder, "minillm-init"), os.path.join(folder, "hf-init")
    T5ForConditionalGeneration(T5Config(**dict(CONFIG, dropout_rate=dropout))).save_pretrained(own_dir)
    if init == "hf":  # transformers' initializer, on the configuration minillm wrote
        torch.manual_seed(0)
        hf_config = transformers.T5Config.from_pretrained(own_dir)
        transformers.T5ForConditionalGeneration(hf_config).save_pretrained(hf_dir)
        own_dir = hf_dir
    model = T5ForConditionalGeneration.from_pretrained(own_dir)
    hf = transformers.T5ForConditionalGeneration.from_pretrained(own_dir)
    model.train()
    hf.train()
    return model, hf


def make_batch():
    rng = np.random.default_rng(0)
    input_ids = rng.integers(2, CONFIG["vocab_size"], (BATCH, SRC_LEN))
    return input_ids, np.ones_like(input_ids), rng.integers(2, CONFIG["vocab_size"], (BATCH, TGT_LEN))


def steppers(model, hf, batch):
    """Three callables that each run one training step: minillm fast, PyTorch, minillm reference."""
    import torch

    input_ids, attention_mask, labels = batch
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

    def reference_step():
        with minillm.fast_paths(False):
            minillm_step()

    return {"minillm": minillm_step, "pytorch": torch_step, "reference": reference_step}, opt


def minor_faults() -> int:
    """Minor page faults of this process so far (0 where ``resource`` does not count them)."""
    try:
        import resource
    except ImportError:  # not on Windows
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def time_in_blocks(calls: dict, repeats: int, warmup: int, block: int = 1) -> tuple[dict, dict]:
    """Median seconds of each call, and its median minor page faults per call.

    The calls take turns, ``repeats`` rounds, so that machine noise hits all alike. In each
    turn a call first runs once untimed, then ``block`` times timed, so that no timed step
    follows the other framework's step directly: a user runs one framework at a time. It matters
    for PyTorch's allocations: measured on the toy config, its steps faulted in 18,368 and 7,392
    fresh pages per step in turns against 19,936 and 32,705 in strict alternation (HF init at
    dropout 0, minillm init at 0.1); minillm's faulted none either way, and the step times moved
    by less than the machine's noise.
    """
    for _ in range(warmup):
        for call in calls.values():
            call()
    times, faults = collections.defaultdict(list), collections.defaultdict(list)
    for _ in range(repeats):
        for name, call in calls.items():
            call()
            for _ in range(block):
                before, start = minor_faults(), time.perf_counter()
                call()
                times[name].append(time.perf_counter() - start)
                faults[name].append(minor_faults() - before)
    return ({name: statistics.median(v) for name, v in times.items()},
            {name: statistics.median(v) for name, v in faults.items()})


def generation_rates(model, hf, batch, reference: bool) -> dict:
    """Greedy tokens/s with the KV cache, forced to full length so both produce the same count."""
    import torch

    input_ids, attention_mask, _ = batch
    model.eval()
    hf.eval()
    n = ARGS.new_tokens

    def minillm_generate():
        return model.generate(input_ids, attention_mask, max_new_tokens=n, eos_token_id=-1)

    def torch_generate():
        with torch.no_grad():
            return hf.generate(torch.tensor(input_ids), attention_mask=torch.tensor(attention_mask),
                               max_new_tokens=n, min_new_tokens=n, do_sample=False, num_beams=1,
                               use_cache=True, pad_token_id=0)

    def reference_generate():
        with minillm.fast_paths(False):
            return minillm_generate()

    calls = {"minillm": minillm_generate, "pytorch": torch_generate}
    if reference:
        calls["reference"] = reference_generate
    seconds, _ = time_in_blocks(calls, repeats=3, warmup=1)
    model.train()
    hf.train()
    return {name: BATCH * n / s for name, s in seconds.items()}


@contextlib.contextmanager
def instrumented_ops(hook, modules=("minillm.",)):
    """Call ``hook(cls, phase, seconds, arrays)`` after every op's forward and backward.

    Every ``Function`` subclass defined in ``modules`` is wrapped (fast implementations too: they
    subclass the reference op). A call made from inside another wrapped call (a fast op calling
    its reference's ``forward``) is not reported again.
    """
    depth = [0]

    def wrap(cls, phase):
        original = cls.__dict__[phase]

        def timed(self, *args, **kwargs):
            depth[0] += 1
            start = time.perf_counter()
            try:
                result = original(self, *args, **kwargs)
            finally:
                depth[0] -= 1
            if depth[0] == 0:
                hook(type(self), phase, time.perf_counter() - start, result)
            return result

        setattr(cls, phase, timed)
        return cls, phase, original

    classes, todo = set(), [Function]
    while todo:
        for sub in todo.pop().__subclasses__():
            todo.append(sub)
            if sub.__module__.startswith(modules):
                classes.add(sub)
    originals = [wrap(cls, phase) for cls in classes for phase in ("forward", "backward") if phase in cls.__dict__]
    try:
        yield
    finally:
        for cls, phase, original in originals:
            setattr(cls, phase, original)


def subnormal_sources(step, opt) -> list:
    """Run ``step`` (a reference step) once, counting the subnormal floats every op's forward and
    backward produce, and those in the gradients and AdamW's moments after it."""
    tally = collections.defaultdict(lambda: [0, 0, 0, 0])  # forward sub, total, backward sub, total

    def count(name, column, arrays):
        for a in arrays if isinstance(arrays, (tuple, list)) else [arrays]:
            if isinstance(a, np.ndarray) and a.dtype == np.float32:
                tally[name][column] += count_subnormals(a)
                tally[name][column + 1] += a.size

    with instrumented_ops(lambda cls, phase, _, arrays: count(cls.__name__, 0 if phase == "forward" else 2, arrays),
                          modules=("minillm.ops",)):
        step()
    for state in opt.state.values():
        for key in ("exp_avg", "exp_avg_sq"):
            count(f"AdamW {key}", 0, state[key])
    return sorted(((name, *c) for name, c in tally.items() if c[0] or c[2]), key=lambda r: -(r[1] + r[3]))


def breakdown(calls, steps: int = 3) -> dict:
    """Seconds per step spent in the linear layers' products and in everything else, per framework.

    minillm: the wall time of ``Linear``'s forward and backward (three GEMMs per layer), from
    ``instrumented_ops``. PyTorch: the self time of ``aten::mm``/``addmm`` (HF's T5 calls them
    only from its ``nn.Linear`` layers; attention uses ``bmm``), from ``torch.profiler``. The
    rest is the step's time minus that.
    """
    import torch
    from minillm.ops.linalg import Linear

    linear = [0.0]

    def add(cls, phase, seconds, arrays):
        if issubclass(cls, Linear):
            linear[0] += seconds

    calls["minillm"]()
    with instrumented_ops(add):
        start = time.perf_counter()
        for _ in range(steps):
            calls["minillm"]()
        total = time.perf_counter() - start
    result = {"minillm": (linear[0] / steps, (total - linear[0]) / steps)}
    calls["pytorch"]()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            calls["pytorch"]()
        total = time.perf_counter() - start
    mm = sum(e.self_cpu_time_total for e in prof.key_averages() if e.key in ("aten::mm", "aten::addmm")) / 1e6
    result["pytorch"] = (mm / steps, (total - mm) / steps)
    return result


def print_breakdown(setting: str, parts: dict) -> None:
    """The linear layers' share of a step in both frameworks, and what the target asks of the rest."""
    (m_lin, m_rest), (t_lin, t_rest) = parts["minillm"], parts["pytorch"]
    print(f"\nwhere a step goes, {setting} (seconds per step):")
    print(f"{'':14}{'linear layers':>15}{'everything else':>17}{'step':>8}")
    for name, (lin, rest) in parts.items():
        print(f"{name:14}{lin:15.3f}{rest:17.3f}{lin + rest:8.3f}")
    budget = 0.9 * (t_lin + t_rest) - m_lin
    print(f"linear layers: minillm/PyTorch {m_lin / t_lin:.2f}; everything else: {m_rest / t_rest:.2f}. "
          f"For a step ratio of 0.9 with these products, minillm's other ops would have to take "
          f"{budget:.3f} s, {budget / t_rest:.2f} of PyTorch's {t_rest:.3f} s"
          + (" (impossible: the products alone exceed 0.9 of PyTorch's step)." if budget <= 0 else "."))


def main() -> int:
    try:
        import torch
        import transformers
    except ImportError:
        print("This benchmark compares against PyTorch: pip install 'minillm[parity]'")
        return 1
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    torch.set_num_threads(ARGS.threads)
    minillm.set_num_threads(ARGS.threads)  # minillm's own threads; BLAS then runs one per call
    batch = make_batch()
    print(f"T5 d_model={CONFIG['d_model']} layers={CONFIG['num_layers']}+{CONFIG['num_layers']} "
          f"heads={CONFIG['num_heads']} d_ff={CONFIG['d_ff']} {CONFIG['feed_forward_proj']} "
          f"vocab={CONFIG['vocab_size']}; batch {BATCH}, source {SRC_LEN}, target {TGT_LEN}; "
          f"threads {ARGS.threads}; numpy {np.__version__}, torch {torch.__version__}; "
          f"median of {ARGS.steps} steps, in turns, each turn after one untimed step")
    rows, generation = [], {}
    for setting in ARGS.settings.split(","):
        init, dropout = setting.rsplit("-", 1)
        if init not in ("minillm", "hf"):
            raise SystemExit(f"--settings: unknown initialization {init!r} in {setting!r} (minillm or hf)")
        with tempfile.TemporaryDirectory() as folder:
            model, hf = build_pair(init, float(dropout), folder)
        calls, opt = steppers(model, hf, batch)
        if ARGS.no_reference:
            del calls["reference"]
        med, faults = time_in_blocks(calls, ARGS.steps, ARGS.warmup)
        rows.append((init, float(dropout), med, faults))
        if init not in generation:
            generation[init] = generation_rates(model, hf, batch, reference=not ARGS.no_reference)
        if ARGS.subnormals:
            print(f"\nsubnormal float32 values in one reference step, {init} init, dropout {dropout}:")
            print(f"{'op':24}{'forward':>22}{'backward':>22}")
            for name, f_sub, f_all, b_sub, b_all in subnormal_sources(calls["reference" if "reference" in calls
                                                                           else "minillm"], opt):
                print(f"{name:24}{f_sub:>12} ({f_sub / max(f_all, 1):6.2%}){b_sub:>12} ({b_sub / max(b_all, 1):6.2%})")
        if ARGS.profile:
            _profile(calls["minillm"])
        if ARGS.breakdown:
            print_breakdown(f"{init} init, dropout {dropout}", breakdown(calls))
    print_tables(rows, generation)
    return 0


def print_tables(rows, generation) -> None:
    print(f"\n{'train step (fwd+bwd+AdamW)':30}{'minillm s':>11}{'pytorch s':>11}{'ratio':>8}"
          f"{'FAST=0 s':>11}{'ratio':>8}   page faults/step: minillm, pytorch")
    for init, dropout, med, faults in rows:
        ref = (f"{med['reference']:11.3f}{med['reference'] / med['pytorch']:8.2f}" if "reference" in med
               else " " * 19)
        print(f"{init + ' init, dropout ' + str(dropout):30}{med['minillm']:11.3f}{med['pytorch']:11.3f}"
              f"{med['minillm'] / med['pytorch']:8.2f}{ref}   {faults['minillm']:>8.0f} {faults['pytorch']:>8.0f}")
    print("(ratio = minillm / PyTorch step time; <= 0.9 is the target with the fast layer on)")
    met = [f"{init} init, dropout {dropout}" for init, dropout, med, _ in rows if med["minillm"] / med["pytorch"] <= 0.9]
    print(f"train-step target met in {len(met)} of {len(rows)} settings" + (f": {'; '.join(met)}" if met else ""))
    print(f"\n{'greedy generation, tokens/s':30}{'minillm':>11}{'pytorch':>11}{'ratio':>8}{'FAST=0':>11}{'ratio':>8}")
    for init, tps in generation.items():
        ref = f"{tps['reference']:11.1f}{tps['reference'] / tps['pytorch']:8.2f}" if "reference" in tps else ""
        print(f"{init + ' init':30}{tps['minillm']:11.1f}{tps['pytorch']:11.1f}{tps['minillm'] / tps['pytorch']:8.2f}{ref}")
    print("(ratio = minillm / PyTorch tokens per second; >= 1.0 is the target)")
    met = [init for init, tps in generation.items() if tps["minillm"] >= tps["pytorch"]]
    print(f"generation target met in {len(met)} of {len(generation)} initializations")


def _profile(step) -> None:
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(3):
        step()
    profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    sys.exit(main())
