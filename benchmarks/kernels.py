"""Benchmark minillm's CUDA kernels against cuBLAS and a materialized-softmax attention, and time a
T5 training step on NumPy, on CuPy with minillm's kernels, and on CuPy with cuBLAS.

Run on a machine with a GPU (benchmarks/gpu_check.sh does it for you, one section per step):

    python benchmarks/kernels.py                       # every section
    python benchmarks/kernels.py --section matmul      # or attention, or t5 (repeatable)
    python benchmarks/kernels.py --quick               # smaller sizes, for a smoke test

Prints markdown tables to paste into kernels/README.md:
  * matmul (fp32, C = A·B) at 1024, 2048, 4096: TFLOP/s of each version and % of cupy.matmul (cuBLAS);
  * attention forward and backward (fp32, batch 4, 8 heads, head_dim 64) at 512, 1024, 2048 tokens:
    time, TFLOP/s and peak memory, against a materialized softmax in CuPy (and torch SDPA if present);
  * one T5 training step (forward, backward, AdamW) of benchmarks/train_step.py's configuration.
Targets (issue 15): matmul >= 90% of cuBLAS at 4096; attention forward >= 3x the materialized one at
2048; the T5 step on the GPU faster than NumPy by as large a factor as possible.
"""
from __future__ import annotations

import argparse
import ast
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import cupy as cp  # noqa: E402  (this script needs a GPU by design)
import numpy as np  # noqa: E402

import minillm  # noqa: E402
from minillm.fast import cuda as kernels  # noqa: E402
from minillm.fast import cuda_attention  # noqa: E402


def gpu_time_ms(fn, min_total_ms: float = 200.0, max_reps: int = 50) -> float:
    """Median-free but robust enough: warm up twice, then average over ~min_total_ms of runs."""
    fn()
    fn()
    start, stop = cp.cuda.Event(), cp.cuda.Event()
    start.record()
    fn()
    stop.record()
    stop.synchronize()
    once = cp.cuda.get_elapsed_time(start, stop)
    reps = int(max(1, min(max_reps, min_total_ms / max(once, 1e-3))))
    start.record()
    for _ in range(reps):
        fn()
    stop.record()
    stop.synchronize()
    return cp.cuda.get_elapsed_time(start, stop) / reps


def peak_bytes(fn) -> int:
    """High-water mark of CuPy's memory pool while fn runs (the pool keeps freed blocks cached)."""
    pool = cp.get_default_memory_pool()
    cp.cuda.Device().synchronize()
    pool.free_all_blocks()
    before = pool.total_bytes()
    fn()
    cp.cuda.Device().synchronize()
    return pool.total_bytes() - before


# ---- matmul -------------------------------------------------------------------------------------

MATMUL_VERSIONS = ("double_buffered", "warptiled", "blocked", "tiled", "naive")  # newest first


def bench_matmul(sizes):
    print("\n### matmul, fp32, C = A·B (square): TFLOP/s, and % of cuBLAS for the best version\n", flush=True)
    print("| n | cuBLAS | " + " | ".join(MATMUL_VERSIONS) + " | best % of cuBLAS |")
    print("|---" * (len(MATMUL_VERSIONS) + 3) + "|")
    for n in sizes:
        a = cp.random.standard_normal((n, n), dtype=cp.float32)
        b = cp.random.standard_normal((n, n), dtype=cp.float32)
        flops = 2.0 * n ** 3
        tflops = {"cublas": flops / gpu_time_ms(lambda: cp.matmul(a, b)) / 1e9}
        expected = cp.matmul(a, b)
        wrong = []
        for version in MATMUL_VERSIONS:
            if version == "naive" and n > 2048:  # seconds per call at 4096; the point is made at small n
                tflops[version] = float("nan")
                continue
            c = kernels.matmul(a, b, version=version)
            if not cp.allclose(c, expected, rtol=1e-3, atol=1e-2 * n ** 0.5):
                wrong.append(version)
            tflops[version] = flops / gpu_time_ms(lambda: kernels.matmul(a, b, version=version)) / 1e9
        best = max(tflops[v] for v in MATMUL_VERSIONS if v != "naive" or n <= 2048)
        print(f"| {n} | {tflops['cublas']:.1f} | " + " | ".join(f"{tflops[v]:.1f}" for v in MATMUL_VERSIONS)
              + f" | {100 * best / tflops['cublas']:.0f}% |" + (f" MISMATCH: {wrong}" if wrong else ""), flush=True)
        del a, b, expected


# ---- attention ----------------------------------------------------------------------------------

def materialized_forward(q, k, v, scale):
    s = scale * cp.matmul(q, k.swapaxes(-1, -2))  # (B, H, L, L): the memory the fused kernel avoids
    s -= s.max(axis=-1, keepdims=True)
    p = cp.exp(s)
    p /= p.sum(axis=-1, keepdims=True)
    return cp.matmul(p, v), p


def materialized_backward(q, k, v, p, grad_out, scale):
    dv = cp.matmul(p.swapaxes(-1, -2), grad_out)
    dp = cp.matmul(grad_out, v.swapaxes(-1, -2))
    ds = p * (dp - (p * dp).sum(axis=-1, keepdims=True))
    return scale * cp.matmul(ds, k), scale * cp.matmul(ds.swapaxes(-1, -2), q), dv


def torch_sdpa():
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    return torch, F


def bench_attention(lengths, batch=4, heads=8, head_dim=64):
    scale = head_dim ** -0.5
    torch_pair = torch_sdpa()
    print(f"\n### attention, fp32, batch {batch}, {heads} heads, head_dim {head_dim}, no mask\n")
    header = "| L | pass | fused ms | fused TFLOP/s | fused peak MiB | materialized ms | materialized peak MiB | speedup |"
    if torch_pair:
        header += " torch SDPA ms |"
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for length in lengths:
        shape = (batch, heads, length, head_dim)
        q, k, v, grad_out = (cp.random.standard_normal(shape, dtype=cp.float32) * 0.5 for _ in range(4))
        forward_flops = 4.0 * batch * heads * length * length * head_dim
        out, lse = cuda_attention.attention_forward(q, k, v, scale=scale)
        ref_out, p = materialized_forward(q, k, v, scale)
        ok = bool(cp.allclose(out, ref_out, atol=1e-3, rtol=1e-3))
        rows = {  # pass: (fused, materialized, flops); backward = 2.5x forward (FlashAttention-2's count)
            "forward": (lambda: cuda_attention.attention_forward(q, k, v, scale=scale),
                        lambda: materialized_forward(q, k, v, scale), forward_flops),
            "backward": (lambda: cuda_attention.attention_backward(q, k, v, out, lse, grad_out, scale=scale),
                         lambda: materialized_backward(q, k, v, p, grad_out, scale), 2.5 * forward_flops),
            "backward fa2": (lambda: cuda_attention.attention_backward(q, k, v, out, lse, grad_out, scale=scale,
                                                                       version="fa2"),
                             lambda: materialized_backward(q, k, v, p, grad_out, scale), 2.5 * forward_flops),
        }
        for name, (fused, materialized, flops) in rows.items():
            fused_ms, mat_ms = gpu_time_ms(fused), gpu_time_ms(materialized)
            fused_mib, mat_mib = peak_bytes(fused) / 2**20, peak_bytes(materialized) / 2**20
            line = (f"| {length} | {name} | {fused_ms:.2f} | {flops / fused_ms / 1e9:.1f} | {fused_mib:.0f} | "
                    f"{mat_ms:.2f} | {mat_mib:.0f} | {mat_ms / fused_ms:.1f}x |")
            if torch_pair:
                line += f" {torch_time_ms(torch_pair, shape, scale, name.split()[0]):.2f} |"
            print(line + ("" if ok else " MISMATCH"), flush=True)
        del q, k, v, grad_out, out, lse, ref_out, p


def torch_time_ms(torch_pair, shape, scale, name):
    torch, F = torch_pair
    q, k, v = (torch.randn(shape, device="cuda", requires_grad=True) for _ in range(3))
    if name == "forward":
        fn = lambda: F.scaled_dot_product_attention(q, k, v, scale=scale)  # noqa: E731
    else:
        out = F.scaled_dot_product_attention(q, k, v, scale=scale)
        grad = torch.randn_like(out)
        fn = lambda: torch.autograd.grad(out, (q, k, v), grad, retain_graph=True)  # noqa: E731
    for _ in range(2):
        fn()
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(10):
        fn()
    stop.record()
    torch.cuda.synchronize()
    return start.elapsed_time(stop) / 10


# ---- T5 training step ---------------------------------------------------------------------------

def toy_t5_setup() -> dict:
    """CONFIG, BATCH, SRC_LEN and TGT_LEN as benchmarks/train_step.py defines them (read, not imported:
    importing it would parse this script's command line and fix its thread counts)."""
    tree = ast.parse((REPO / "benchmarks" / "train_step.py").read_text(encoding="utf-8"))
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) and node.targets[0].id == "CONFIG":
            found["CONFIG"] = {kw.arg: ast.literal_eval(kw.value) for kw in node.value.keywords}  # dict(...)
        elif isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Tuple):
            names = [t.id for t in node.targets[0].elts]
            if names == ["BATCH", "SRC_LEN", "TGT_LEN"]:
                found.update(zip(names, ast.literal_eval(node.value)))
    return found


def time_t5_step(setup: dict, device: str, steps: int, fast: bool = True, dropout: float | None = None) -> float:
    """Median seconds of one training step (forward, backward, AdamW) on ``device``."""
    from minillm.models import T5Config, T5ForConditionalGeneration
    from minillm.optim import AdamW

    config = dict(setup["CONFIG"], **({} if dropout is None else {"dropout_rate": dropout}))
    minillm.manual_seed(0)
    model = T5ForConditionalGeneration(T5Config(**config))
    if device == "cuda":
        model.to("cuda")
    model.train()
    rng = np.random.default_rng(0)
    batch, vocab = setup["BATCH"], config["vocab_size"]
    input_ids = rng.integers(2, vocab, (batch, setup["SRC_LEN"]))
    attention_mask = np.ones_like(input_ids)
    labels = rng.integers(2, vocab, (batch, setup["TGT_LEN"]))
    opt = AdamW(model.parameters(), lr=1e-4)

    def step():
        with minillm.fast_paths(fast):
            out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
            out.loss.backward()
            opt.step()
            opt.zero_grad()
        if device == "cuda":
            cp.cuda.Device().synchronize()

    for _ in range(2):  # warm-up: NVRTC compiles, CuPy's memory pool fills
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_t5_step(steps: int):
    setup = toy_t5_setup()
    c = setup["CONFIG"]
    print(f"\n### T5 training step (fwd + bwd + AdamW), benchmarks/train_step.py's configuration: d_model "
          f"{c['d_model']}, {c['num_layers']}+{c['num_layers']} layers, {c['num_heads']} heads, d_kv {c['d_kv']}, "
          f"d_ff {c['d_ff']} {c['feed_forward_proj']}, vocab {c['vocab_size']}, batch {setup['BATCH']}, source "
          f"{setup['SRC_LEN']}, target {setup['TGT_LEN']}, dropout {c['dropout_rate']}; median of {steps} steps\n",
          flush=True)
    print("| backend | s / step | speedup over NumPy |")
    print("|---|---|---|")
    rows = [("NumPy, CPU fast paths, %d threads" % os.cpu_count(), "cpu", True, None),
            ("CuPy + minillm kernels", "cuda", True, None),
            ("CuPy + cuBLAS (fast_paths(False): composed attention)", "cuda", False, None),
            ("CuPy + minillm kernels, dropout 0 (fused attention runs)", "cuda", True, 0.0)]
    baseline = None
    for name, device, fast, dropout in rows:
        seconds = time_t5_step(setup, device, steps, fast, dropout)
        baseline = baseline or seconds
        print(f"| {name} | {seconds:.4f} | {baseline / seconds:.1f}x |", flush=True)
    print("\n(The fused attention kernel takes no dropout: with the configuration's attention dropout the "
          "kernel rows run attention composed, and only the linear layers run on minillm's matmul.)")


SECTIONS = ("matmul", "attention", "t5")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes only (smoke test)")
    parser.add_argument("--section", action="append", choices=SECTIONS,
                        help="run only this section (repeatable); default: all")
    parser.add_argument("--steps", type=int, default=5, help="timed T5 steps per backend")
    args = parser.parse_args()
    sections = args.section or SECTIONS
    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    print(f"## minillm kernels on {props['name'].decode()} (shared memory per block after opt-in: "
          f"{kernels.shared_memory_limit() // 1024} KB)", flush=True)
    if "matmul" in sections:
        bench_matmul([512, 1024] if args.quick else [1024, 2048, 4096])
    if "attention" in sections:
        bench_attention([256, 512] if args.quick else [512, 1024, 2048])
    if "t5" in sections:
        bench_t5_step(2 if args.quick else args.steps)


if __name__ == "__main__":
    main()
