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
# # Tutorial 10: GPU kernels, a tiled matmul and a fused attention
#
# **Learning goals.** After this tutorial you can
# 1. explain why a matrix multiply is limited by memory traffic, and how tiling (shared memory) and
#    register blocking raise the number of flops per byte read;
# 2. follow the loop nest of a tiled matmul, written first in NumPy, then in `kernels/matmul.cu`;
# 3. derive the *online softmax* that lets attention run tile by tile without ever storing the
#    `L × L` score matrix (FlashAttention), and the backward that recomputes it from one float per row;
# 4. run the real CUDA source on the CPU with minillm's emulator and check it against NumPy;
# 5. read GPU timings, when this machine has a GPU.
#
# Run: `python tutorials/10_gpu_kernels.py` (`MINILLM_SMOKE=1` for a seconds-long run). No GPU is
# needed: the same `.cu` files compile with g++ against `kernels/emu/cuda_emu.h`, one CPU thread per
# CUDA thread. Read alongside: `kernels/README.md`, `kernels/matmul.cu`, `kernels/attention.cu`,
# `minillm/fast/cuda.py` and `minillm/fast/cuda_attention.py` (the host side: grids, shared memory,
# launches).

# %% Setup: output folder, figures, tables (the same cell opens every tutorial)
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

TUTORIAL = "10_gpu_kernels"
HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
REPO = HERE.parent
sys.path[:0] = [str(HERE.parent), str(HERE)]  # minillm from this checkout; tutorials/_setup.py
from _setup import SMOKE, plt, print_table, tutorial_output  # noqa: E402

OUT, FIGURES, save_figure = tutorial_output(TUTORIAL)


import minillm  # noqa: E402
from minillm.fast import cuda as kernels  # noqa: E402
from minillm.fast import cuda_attention  # noqa: E402
from tests.kernels import reference  # noqa: E402  (the kernel tests' float64 references)
from tests.kernels.emulator import Emulator, build, compiler_available  # noqa: E402

rng = np.random.default_rng(0)
print(f"smoke mode: {SMOKE}; figures and summary.json go to {OUT}")

# %% [markdown]
# ## 1. Why a matmul is about memory
#
# $C = AB$ with $A$ of shape $M\times K$ and $B$ of shape $K\times N$ costs $2MNK$ flops. A GPU does
# tens of TFLOP/s but reads its DRAM at a few TB/s, so a kernel that fetches both operands of every
# multiply-add from DRAM (8 bytes for 2 flops) is starved. The cure is **reuse**: a thread block that
# computes an $R \times C$ tile of $C$ loads, per step of $k$, $R$ values of $A$ and $C$ values of $B$
# into fast memory and does $R\,C$ multiply-adds with them. Its *arithmetic intensity* is
#
# $$\frac{\text{flops}}{\text{bytes from DRAM}} = \frac{2RC}{4(R + C)} .$$
#
# The table takes each version's block and tile of $C$ from `minillm/fast/cuda.py`, the launcher
# (before any help from caches). What counts is the tile a block *stages* in fast memory: the naive
# kernel's block also covers a tile of $C$, but stages nothing, so each of its threads fetches its own
# operands, the intensity of a $1\times 1$ tile.

# %%
intensity_rows = []
for name, (block, (rows, cols)) in kernels._MATMUL_BLOCKS.items():
    staged = (1, 1) if name == "naive" else (rows, cols)  # naive: no shared memory, nothing reused on chip
    intensity = 2 * staged[0] * staged[1] / (4 * (staged[0] + staged[1]))
    intensity_rows.append([name, block[0] * block[1], f"{rows}x{cols}", f"{staged[0]}x{staged[1]}", intensity,
                           2 * staged[0] * staged[1] / (staged[0] + staged[1])])
print_table(["version", "threads", "tile of C per block", "tile staged on chip", "flop per DRAM byte",
             "uses of each loaded value"], intensity_rows)
naive_row, tiled_row = intensity_rows[0], intensity_rows[1]
print(f"The naive block covers a {naive_row[2]} tile of C but stages {naive_row[3]}: {naive_row[4]:.2f} flop "
      f"per byte, against {tiled_row[4]:.0f} for the {tiled_row[3]} tiles of the tiled version. The last "
      f"three versions share the {intensity_rows[-1][3]} tile ({intensity_rows[-1][4]:.0f} flop per byte): "
      "warp tiling and double buffering attack shared-memory traffic and latency, not DRAM traffic.")

# %% [markdown]
# ### The tiled loop nest, in NumPy
#
# Here is the structure of `matmul_tiled` with NumPy slices in place of threads. Each `(bi, bj)` pair is
# one thread block; the `k0` loop is the kernel's loop over K, where the block copies one tile of `A`
# and one of `B` into **shared memory** (`__syncthreads()`), multiplies them, and waits again before
# the next copy overwrites them. Ragged edges simply read zeros. We count the values read from "DRAM"
# to confirm the reuse factor. Change `TILE` and rerun.

# %%
def tiled_matmul(A, B, TILE=16):
    """C = A @ B computed tile by tile; returns (C, number of values read from A and B)."""
    M, K = A.shape
    N = B.shape[1]
    C = np.zeros((M, N), dtype=np.float64)
    loads = 0
    for bi in range(0, M, TILE):                      # blockIdx.y
        for bj in range(0, N, TILE):                  # blockIdx.x
            acc = np.zeros((min(TILE, M - bi), min(TILE, N - bj)))  # one register per thread
            for k0 in range(0, K, TILE):              # the loop inside the kernel
                a_tile = A[bi:bi + TILE, k0:k0 + TILE]   # cooperative copy into __shared__
                b_tile = B[k0:k0 + TILE, bj:bj + TILE]
                loads += a_tile.size + b_tile.size
                acc += a_tile @ b_tile                # every value is used TILE times
            C[bi:bi + TILE, bj:bj + TILE] = acc
    return C, loads


M, K, N = (40, 48, 32) if SMOKE else (96, 128, 80)
A = rng.uniform(-1, 1, (M, K))
B = rng.uniform(-1, 1, (K, N))
tile_rows = []
for tile in (1, 4, 16):
    C, loads = tiled_matmul(A, B, tile)
    tile_rows.append([tile, loads, 2 * M * N * K / loads, float(np.abs(C - A @ B).max())])
print_table(["TILE", "values read", "reads saved vs TILE=1 (x)", "max |C - A@B|"], tile_rows)
print(f"In this run ({M}x{K} @ {K}x{N}) TILE=16 read {tile_rows[-1][1]:,} values instead of "
      f"{tile_rows[0][1]:,}, {tile_rows[-1][2]:.1f}x fewer, with the same result.")

# %% [markdown]
# ## 2. The real kernels, on emulated threads
#
# `kernels/matmul.cu` holds five versions: **naive** (one thread per element of C, coalesced reads),
# **tiled** (the loop nest above, 16x16 tiles in shared memory), **blocked** (each thread keeps an
# 8x8 patch of C in registers and reads `float4`s, so a block reuses each value 128 times),
# **warptiled** (the same patches arranged as 64x32 warp tiles, fewer shared-memory reads) and
# **double_buffered** (two pairs of shared tiles: the next step's loads fly during this multiply). The
# emulator compiles the unchanged `.cu` with g++, runs every CUDA thread as a CPU thread, and the
# host code of `minillm/fast/cuda.py` computes exactly the grid and arguments it would send to a GPU.
# Outputs start as NaN, so an element a kernel forgets to write cannot pass. Emulated times measure
# the emulator, not the kernels.

# %%
emulator = None
if not compiler_available():
    print("g++ was not found, so the kernels cannot be emulated in this run; sections 2 and 3 are skipped.")
else:
    cache = Path(os.environ.get("MINILLM_EMU_CACHE") or Path.home() / ".cache" / "minillm" / "emu")
    started = time.perf_counter()
    emulator = Emulator(build(cache))  # compiled once per source version, then cached
    print(f"emulator libraries ready in {time.perf_counter() - started:.1f} s (cache: {cache})")


def within_tolerance(actual, expected, atol, rtol):
    """The kernel tests' criterion: no NaN, and |actual - expected| <= atol + rtol |expected|."""
    finite = np.isfinite(expected)
    return bool(not np.isnan(actual).any() and np.array_equal(np.isinf(actual), ~finite)
                and (np.abs(actual[finite] - expected[finite]) <= atol + rtol * np.abs(expected[finite])).all())


matmul_rows, matmul_max_err, matmul_all_match = [], 0.0, emulator is not None
cases = [(33, 35, 37, False, False)] + ([] if SMOKE else [(70, 45, 150, True, False), (130, 64, 129, False, True)])
if emulator is not None:
    for m, k, n, ta, tb in cases:
        a = rng.uniform(-1, 1, (k, m) if ta else (m, k)).astype(np.float32)
        b = rng.uniform(-1, 1, (n, k) if tb else (k, n)).astype(np.float32)
        expected = (a.T if ta else a).astype(np.float64) @ (b.T if tb else b).astype(np.float64)
        for version in kernels._MATMUL_BLOCKS:
            started = time.perf_counter()
            c = kernels._matmul(emulator.backend(), a, b, ta, tb, version)
            seconds = time.perf_counter() - started
            err = float(np.abs(c - expected).max())
            ok = within_tolerance(c, expected, atol=1e-6 * k, rtol=1e-5)  # fp32 sums of k products
            matmul_max_err, matmul_all_match = max(matmul_max_err, err), matmul_all_match and ok
            matmul_rows.append([version, f"{m}x{k} @ {k}x{n}", f"{'T' if ta else 'N'}{'T' if tb else 'N'}",
                                err, "yes" if ok else "NO", f"{seconds:.2f}"])
    print_table(["version", "shape", "op(a) op(b)", "max abs error vs float64", "within tolerance",
                 "emulated s"], matmul_rows)
    print(f"In this run all {len(matmul_rows)} emulated matmuls matched NumPy: {matmul_all_match} "
          f"(largest error {matmul_max_err:.2e}).")

# %% [markdown]
# ## 3. Fused attention: the online softmax
#
# Attention computes $S = \text{scale}\cdot QK^\top + \text{bias}$ (masked), $P = \operatorname{softmax}(S)$,
# $O = PV$. Written plainly, $S$ and $P$ are $L\times L$ per head and make a round trip to DRAM.
# FlashAttention never stores them: a block keeps its query rows on chip and streams the keys in tiles
# of $B_c$. For each row it carries a running max $m$, a running sum $\ell$ and an unnormalised
# output $o$; a new tile of scores $s_j$ (values $v_j$) updates them as
#
# $$m' = \max(m, \max_j s_j),\qquad \ell' = \ell\, e^{m - m'} + \sum_j e^{s_j - m'},\qquad
# o' = o\, e^{m - m'} + \sum_j e^{s_j - m'} v_j .$$
#
# The factor $e^{m-m'}$ re-expresses the old terms relative to the new max, so at the end
# $o/\ell = \sum_j \operatorname{softmax}(s)_j v_j$ exactly, every exponent is $\le 0$ (no overflow),
# and $\text{lse} = m + \log \ell$ is all the backward needs: it recomputes $P = e^{S - \text{lse}}$.

# %%
def online_softmax_attention(s, v, block):
    """O = softmax(s) @ v for one query row s (k_len,), visiting the keys `block` at a time."""
    m, l, o, trace = -np.inf, 0.0, np.zeros(v.shape[1]), []
    for j0 in range(0, len(s), block):
        s_tile, v_tile = s[j0:j0 + block], v[j0:j0 + block]
        m_new = max(m, s_tile.max())
        l = l * np.exp(m - m_new) + np.exp(s_tile - m_new).sum()
        o = o * np.exp(m - m_new) + np.exp(s_tile - m_new) @ v_tile
        m = m_new
        trace.append([j0, m, l])
    return o / l, m + np.log(l), trace


k_len, d = 12, 4
s_row = rng.standard_normal(k_len) * 3
v_rows = rng.standard_normal((k_len, d))
o_online, lse_online, trace = online_softmax_attention(s_row, v_rows, block=4)
p_full = np.exp(s_row - s_row.max()) / np.exp(s_row - s_row.max()).sum()
online_err = float(np.abs(o_online - p_full @ v_rows).max())
print_table(["tile starts at key", "running max m", "running sum l"], trace)
print(f"In this run the tile-by-tile output matched softmax(s) @ v within {online_err:.1e}, and lse "
      f"{lse_online:.6f} vs log-sum-exp {np.log(np.exp(s_row).sum()):.6f}.")

# What fusing saves: the L x L scores per head that a materialized softmax keeps for backward.
memory_rows = [[L, f"{4 * 8 * L * L * 4 / 2**20:,.0f}", f"{4 * 8 * L * 4 / 2**20:.3f}"] for L in (512, 1024, 2048, 4096)]
print_table(["L (batch 4, 8 heads, fp32)", "P materialized, MiB", "lse only (fused), MiB"], memory_rows)

# %% [markdown]
# ### The CUDA attention kernels against a float64 reference
#
# `attention.cu` implements the forward above (64 query rows per block, 128 threads) and a two-kernel
# backward (`dQ` per query tile, `dK, dV` per key tile) with T5's needs: an additive relative-position
# bias shared by the batch (and its gradient), a key padding mask and causal masking. We emulate it on
# a ragged problem with all three switched on and compare with `tests/kernels/reference.py`, which
# materializes the softmax in float64.

# %%
attention_rows, attention_all_match, attention_max_err, recompute_err = [], emulator is not None, 0.0, None
padding_pairs_causal_allows, padding_grad_max = 0, None
if emulator is not None:
    batch, heads, q_len, k_len, head_dim = (1, 2, 40, 50, 32) if SMOKE else (2, 2, 130, 150, 64)
    q = (0.3 * rng.standard_normal((batch, heads, q_len, head_dim))).astype(np.float32)
    k = (0.3 * rng.standard_normal((batch, heads, k_len, head_dim))).astype(np.float32)
    v = rng.standard_normal((batch, heads, k_len, head_dim)).astype(np.float32)
    grad_out = rng.standard_normal((batch, heads, q_len, head_dim)).astype(np.float32)
    bias = rng.standard_normal((heads, q_len, k_len)).astype(np.float32)   # shared by the batch, like T5's
    # Causal masking is top-left aligned (query i sees keys j <= i), so with q_len < k_len the last
    # k_len - q_len keys are hidden from every query anyway: padding there would test nothing. The
    # padded keys sit inside the causal window instead, at a different place in each sequence.
    key_mask = np.ones((batch, k_len), dtype=bool)
    for b in range(batch):
        key_mask[b, q_len - 20 + 5 * b: q_len - 13 + 5 * b] = False         # 7 padding keys the causal mask shows
    options = dict(bias=bias, key_mask=key_mask, causal=True, scale=1.0)    # T5 uses scale 1
    causal_only = reference.visible_keys(batch, q_len, k_len, None, True)[:, 0]
    padding_pairs_causal_allows = int((causal_only & ~key_mask[:, None, :]).sum())
    started = time.perf_counter()
    out, lse = cuda_attention._attention_forward(emulator.backend(), q, k, v, bias, key_mask, True, 1.0)
    grads = cuda_attention._attention_backward(emulator.backend(), q, k, v, out, lse, grad_out, bias, key_mask,
                                               True, 1.0)
    seconds = time.perf_counter() - started
    ref_out, ref_lse = reference.attention_forward(q, k, v, **options)
    ref_grads = reference.attention_backward(q, k, v, grad_out, **options)
    checks = [("out", out, ref_out, 2e-5, 1e-4), ("lse", lse, ref_lse, 2e-5, 1e-4)] + [
        (name, g, r, 1e-4, 1e-3) for name, g, r in zip(("dq", "dk", "dv", "dbias"), grads, ref_grads)]
    for name, actual, expected, atol, rtol in checks:  # the kernel tests' tolerances
        ok = within_tolerance(actual, expected, atol, rtol)
        err = float(np.abs(actual - expected)[np.isfinite(expected)].max())
        attention_all_match, attention_max_err = attention_all_match and ok, max(attention_max_err, err)
        attention_rows.append([name, actual.shape, err, "yes" if ok else "NO"])
    print_table(["output", "shape", "max abs error vs float64", "within tolerance"], attention_rows)
    print(f"In this run (batch {batch}, {heads} heads, {q_len} queries, {k_len} keys, head_dim {head_dim}, "
          f"bias + padding + causal) forward and backward took {seconds:.1f} s emulated, and every output "
          f"matched the reference: {attention_all_match} (largest error {attention_max_err:.2e}).")
    # The backward never stores P: it recomputes P = exp(S - lse) from the one float per row.
    probs, _ = reference.attention_probabilities(q, k, **options)
    visible = reference.visible_keys(batch, q_len, k_len, key_mask, True)
    scores = q.astype(np.float64) @ k.swapaxes(-1, -2).astype(np.float64) + bias
    recomputed = np.where(visible, np.exp(scores - lse[..., None]), 0.0)
    recompute_err = float(np.abs(recomputed - probs).max())
    print(f"P recomputed as exp(S - lse) from the kernel's lse matched the materialized P within {recompute_err:.1e}.")
    pad = ~key_mask[:, None, :, None]                                       # (batch, 1, k_len, 1)
    padding_grad_max = float(max(np.abs(np.where(pad, g, 0.0)).max() for g in grads[1:3]))  # dK, dV
    print(f"The causal mask alone lets queries see padding keys in {padding_pairs_causal_allows} (query, key) "
          f"pairs, so the key padding mask did the hiding: the kernel's dK and dV at the padding keys are at most "
          f"{padding_grad_max:g} (a padding key that leaked into the softmax would get a gradient).")
    if plt is not None:
        # A row's probabilities spread over up to k_len keys, so most are far below the row's maximum
        # and a linear colour scale shows a nearly blank square: plot them on a log scale, with the
        # masked (exactly zero) entries left white.
        from matplotlib.colors import LogNorm  # noqa: PLC0415

        shown = probs[0, 0][probs[0, 0] > 0]
        norm = LogNorm(vmin=max(float(shown.min()), 1e-6), vmax=float(shown.max()))
        fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
        for ax, image, title in ((axes[0], probs[0, 0], "P, materialized (float64)"),
                                 (axes[1], recomputed[0, 0], "P = exp(S - lse), from the kernel's lse")):
            picture = ax.imshow(np.ma.masked_less_equal(image, 0.0), cmap="viridis", norm=norm)
            ax.set_title(title, fontsize=9)
            ax.set_xlabel("key")
            ax.set_ylabel("query")
        fig.colorbar(picture, ax=axes, label="probability (log scale; white: masked)")
        save_figure(fig, "attention_probabilities.png")
        print(f"The figure's colour scale spans {norm.vmin:.1e} to {norm.vmax:.2f}: "
              f"{norm.vmax / norm.vmin:.0e} between the smallest and the largest visible probability.")

# %% [markdown]
# ## 4. On a GPU
#
# The same sources are compiled by NVRTC through `cupy.RawModule` (once, then cached) when a CUDA
# device is present. The timings below come from `benchmarks/kernels.py`'s timer (CUDA events). The
# full tables, and the targets, are in `kernels/README.md`.

# %%
gpu = minillm.cuda_available()
gpu_rows, gpu_matmul_ok = [], None
if not gpu:
    print("No GPU was found (minillm.cuda_available() is False), so no timings are shown. "
          "On a machine with one, this cell times each matmul version against cuBLAS and the fused "
          "attention against a materialized softmax.")
else:
    import cupy as cp

    spec = importlib.util.spec_from_file_location("minillm_benchmarks_kernels", REPO / "benchmarks" / "kernels.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    n = 512 if SMOKE else 2048
    a, b = (cp.random.standard_normal((n, n), dtype=cp.float32) for _ in range(2))
    gpu_matmul_ok = bool(cp.allclose(kernels.matmul(a, b), cp.matmul(a, b), rtol=1e-3, atol=1e-2 * n ** 0.5))
    print(f"blocked matmul agrees with cuBLAS at n={n}: {gpu_matmul_ok}")
    cublas_ms = bench.gpu_time_ms(lambda: cp.matmul(a, b))
    gpu_rows.append([f"matmul {n}^3", "cuBLAS", cublas_ms, 2 * n ** 3 / cublas_ms / 1e9])
    for version in kernels._MATMUL_BLOCKS:
        ms = bench.gpu_time_ms(lambda: kernels.matmul(a, b, version=version))
        gpu_rows.append([f"matmul {n}^3", version, ms, 2 * n ** 3 / ms / 1e9])
    L = 256 if SMOKE else 1024
    q, k, v = (cp.random.standard_normal((4, 8, L, 64), dtype=cp.float32) * 0.5 for _ in range(3))
    flops = 4.0 * 4 * 8 * L * L * 64
    for name, fn in (("fused", lambda: cuda_attention.attention_forward(q, k, v, scale=0.125)),
                     ("materialized", lambda: bench.materialized_forward(q, k, v, 0.125))):
        ms = bench.gpu_time_ms(fn)
        gpu_rows.append([f"attention forward L={L}", name, ms, flops / ms / 1e9])
    print_table(["problem", "implementation", "ms", "TFLOP/s"], gpu_rows)
    by_name = {row[1]: row for row in gpu_rows}
    best = max(kernels._MATMUL_BLOCKS, key=lambda v: by_name[v][3])
    print(f"In this run, on {cp.cuda.runtime.getDeviceProperties(0)['name'].decode()}, the fastest matmul "
          f"({best}) reached {by_name[best][3] / by_name['cuBLAS'][3]:.0%} of cuBLAS and the fused attention "
          f"forward was {by_name['materialized'][2] / by_name['fused'][2]:.1f}x as fast as the materialized one.")

# %% [markdown]
# ## Summary
#
# The line below is what the tests read (`tests/test_tutorials.py`); `summary.json` holds the same.
# Exercises: in `tiled_matmul`, count the loads for a 16x64 tile and compare with the formula of
# section 1; run `online_softmax_attention` with `block=1` and `block=k_len`; read `matmul_tiled` in
# `kernels/matmul.cu` and find the two `__syncthreads()` of the loop nest (and why each is needed).

# %%
summary = {
    "emulated": emulator is not None,
    "matmul_emulated_match": matmul_all_match,
    "matmul_emulated_max_abs_err": matmul_max_err,
    "matmul_cases": len(matmul_rows),
    "attention_emulated_match": attention_all_match,
    "attention_emulated_max_abs_err": attention_max_err,
    "online_softmax_max_abs_err": online_err,
    "p_from_lse_max_abs_err": recompute_err,
    "attention_padding_pairs_causal_allows": padding_pairs_causal_allows,
    "attention_padding_grad_max": padding_grad_max,
    "tiled_numpy_max_abs_err": max(row[3] for row in tile_rows),
    "tile16_read_reduction": tile_rows[-1][2],
    "block_tiles": {row[0]: row[2] for row in intensity_rows},  # as the launcher launches them
    "staged_tiles": {row[0]: row[3] for row in intensity_rows},
    "gpu": gpu,
    "gpu_matmul_matches_cublas": gpu_matmul_ok,
    "gpu_timings_ms": {f"{row[0]} {row[1]}": row[2] for row in gpu_rows},
    "figures": FIGURES,
}
(OUT / "summary.json").write_text(json.dumps(summary, indent=2))
print("SUMMARY " + json.dumps(summary))
