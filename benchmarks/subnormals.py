"""What subnormal floats cost on this CPU: the same work on normal and on subnormal float32 inputs.

The arrays mimic the logits gradient of an HF-initialized T5 (docs/speed.md): softmax of logits
with standard deviation 16 over a 2048-token vocabulary, divided by 1024 target tokens. Each
line times one operation on that gradient as it is, and on a copy flushed by
``minillm.fast.subnormals.flush_subnormals``; best of several runs, one BLAS thread.

Usage:
    python benchmarks/subnormals.py [--repeats 9]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

sys.path[0] = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
from minillm.fast.subnormals import count_subnormals, flush_subnormals  # noqa: E402


def best_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times) * 1e3


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=9)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    z = (16 * rng.standard_normal((1024, 2048))).astype(np.float32)
    shifted = z - z.max(axis=1, keepdims=True)
    prob = np.exp(shifted)
    grad = (prob / prob.sum(axis=1, keepdims=True) / 1024).astype(np.float32)
    flushed = flush_subnormals(grad.copy())
    h = rng.standard_normal((1024, 256)).astype(np.float32)
    w = rng.standard_normal((2048, 256)).astype(np.float32)
    print(f"gradient (1024, 2048): {count_subnormals(grad) / grad.size:.2%} subnormal entries; "
          f"load average {os.getloadavg()[0]:.1f} (a shared machine: compare within a line)")
    work = {
        "dW = g^T h (sgemm)": lambda g: g.T @ h,
        "dh = g W (sgemm)": lambda g: g @ w,
        "g * 0.5": lambda g: g * np.float32(0.5),
        "g * g (AdamW's g^2)": lambda g: g * g,
        "sqrt(g * g)": lambda g: np.sqrt(g * g),
    }
    print(f"{'operation':26}{'subnormals kept, ms':>22}{'flushed, ms':>14}{'ratio':>8}")
    with threadpool_limits(limits=1, user_api="blas"):
        for name, fn in work.items():
            kept, clean = best_ms(lambda: fn(grad), args.repeats), best_ms(lambda: fn(flushed), args.repeats)
            print(f"{name:26}{kept:22.2f}{clean:14.2f}{kept / clean:8.2f}")
        # exp with subnormal results (e^-88 .. e^-103, as in that softmax) against normal results
        to_subnormal = rng.uniform(-103, -88, grad.shape).astype(np.float32)
        to_normal = rng.uniform(-40, -25, grad.shape).astype(np.float32)
        kept, clean = best_ms(lambda: np.exp(to_subnormal), args.repeats), best_ms(lambda: np.exp(to_normal),
                                                                                 args.repeats)
        print(f"{'exp, subnormal results':26}{kept:22.2f}{clean:14.2f}{kept / clean:8.2f}   "
              f"(second column: exps with normal results)")
        flush = best_ms(lambda: flush_subnormals(grad.copy()), args.repeats)
        copy = best_ms(lambda: grad.copy(), args.repeats)
        print(f"flush_subnormals itself: {flush - copy:.2f} ms (timed with a copy, {copy:.2f} ms, subtracted)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
