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
# # Tutorial 11: Data parallelism and sharding
#
# **Learning goals.** After this tutorial you can
# 1. say what a *rank* is and what the collectives `all_reduce`, `broadcast` and `all_gather` do;
# 2. explain why every rank must start from the same weights, and make them so;
# 3. average gradients over ranks so that N ranks on B/N examples each take *exactly* the step one
#    process takes on B examples, and say why the per-rank losses must be weighted by their tokens;
# 4. compute the memory per rank of plain data parallelism and of ZeRO stages 1, 2 and 3 (FSDP),
#    and measure ZeRO-1's optimizer memory;
# 5. say what FSDP adds on top of ZeRO-1.
#
# Run it on two processes: `mpiexec -n 2 python tutorials/11_data_parallelism.py` (needs
# `pip install 'minillm[distributed]'`; `MINILLM_SMOKE=1` takes seconds). Every rank runs every
# cell (that is what "single program, multiple data" means); rank 0 prints and saves. On one
# process (a notebook) it runs with a world of 1 and says so. Read alongside:
# `minillm/distributed/` and `docs/distributed.md`.

# %% Setup: output folder, figures, tables (the same cell opens every tutorial)
import json
import sys
import time
from pathlib import Path

import numpy as np

TUTORIAL = "11_data_parallelism"
HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
sys.path[:0] = [str(HERE.parent), str(HERE)]  # minillm from this checkout; tutorials/_setup.py
from _setup import SMOKE, plt, print_table, tutorial_output  # noqa: E402

OUT, FIGURES, save_figure = tutorial_output(TUTORIAL)

import minillm  # noqa: E402
from minillm import distributed  # noqa: E402
from minillm.data.collate import collate  # noqa: E402
from minillm.models import T5Config, T5ForConditionalGeneration  # noqa: E402
from minillm.optim import AdamW  # noqa: E402

world = distributed.init()
RANK, N = world.rank, world.size
say = print if RANK == 0 else (lambda *args, **kwargs: None)  # only rank 0 talks
started_cpu, started_wall = time.process_time(), time.perf_counter()
say(f"smoke mode: {SMOKE}; {N} process(es); figures and summary.json go to {OUT}")
if N == 1:
    say("one process: the collectives below return their input. Run with mpiexec -n 2 to see them work.")

# %% [markdown]
# ## 1. Ranks and collectives
#
# `mpiexec -n 2 python script.py` starts the same script twice. Each copy asks `distributed.init()`
# who it is: its *rank* (0 or 1) in a *world* of 2. The copies share no memory; they talk only through
# *collectives*, calls that every rank makes at the same point of the program:
#
# | collective | every rank gives | every rank gets |
# |---|---|---|
# | `all_reduce(x)` | an array x_r | Σ_r x_r |
# | `broadcast(x, root)` | (root only) its x | root's x |
# | `all_gather(x, out, counts)` | a piece x_r | all pieces, in rank order |
#
# A rank that skips a collective makes the others wait forever; minillm's collectives give up after a
# timeout and end the job with a message, and an exception on any rank ends every rank.

# %%
x = np.array([RANK + 1.0, 10.0 * (RANK + 1)])
summed = world.all_reduce(x.copy())
pieces = world.all_gather_json({"rank": RANK, "gave": x.tolist(), "got": summed.tolist()})
print_table(["rank", "gave", "after all_reduce"], [[p["rank"], p["gave"], p["got"]] for p in pieces]) if RANK == 0 else None
all_reduce_ok = all(p["got"] == [sum(r + 1.0 for r in range(N)), sum(10.0 * (r + 1) for r in range(N))]
                    for p in pieces)

# %% [markdown]
# ## 2. The same weights on every rank
#
# Data parallelism keeps one model *replicated*: every rank must hold the same weights, or the ranks
# would train N different models. Here each rank builds its model with its own seed, so the weights
# differ; `broadcast_parameters` then copies rank 0's weights to everyone. A checksum per rank shows it.

# %%
VOCAB, D = (64, 16) if SMOKE else (256, 64)
config = T5Config(vocab_size=VOCAB, d_model=D, d_kv=D // 2, d_ff=4 * D, num_layers=1 if SMOKE else 2,
                  num_heads=2, dropout_rate=0.0)
minillm.manual_seed(100 + RANK)
model = T5ForConditionalGeneration(config)


def checksum(m) -> float:
    """Σ of every weight, in float64: equal on two ranks when their weights are equal."""
    return float(sum(np.sum(p.data, dtype=np.float64) for p in m.parameters()))


before = world.all_gather_json(checksum(model))
distributed.broadcast_parameters(model)
after = world.all_gather_json(checksum(model))
say(f"weight checksums per rank before broadcast: {before}\n                          after broadcast: {after}")
weights_differ_before = len(set(before)) == N  # N distinct seeds, N distinct models
weights_equal_after = len(set(after)) == 1

# %% [markdown]
# ## 3. Averaged gradients equal one big batch
#
# The loss of a batch is a mean over its T target tokens, $L = \frac{1}{T}\sum_t \ell_t$. Rank r holds
# $T_r$ of them. If every rank used its own mean $L_r = \frac{1}{T_r}\sum_{t \in r}\ell_t$ and we
# averaged, we would get $\frac{1}{N}\sum_r \frac{1}{T_r}\sum_{t\in r} \nabla\ell_t$: a token on a
# rank with few tokens would count more. Weighting rank r's loss by $T_r / (T/N)$ fixes it:
#
# $$\frac{1}{N}\sum_r \frac{T_r N}{T}\,\nabla L_r = \frac{1}{T}\sum_r\sum_{t\in r}\nabla\ell_t = \nabla L.$$
#
# `T/N` is the mean token count over ranks: one small `all_reduce`. Below, the global batch is dealt
# out by `DistributedSampler` (example k to rank k mod N); every rank computes its weighted gradient,
# `average_gradients` averages them (in 25 MB buckets, as PyTorch DDP does), and rank 0 also computes
# the gradient of the whole batch alone, the oracle. Only the order of float32 additions differs.

# %%
B = 8
rng = np.random.default_rng(0)
# Even-numbered examples get short targets, odd ones long: with k mod N dealing, ranks hold different
# numbers of target tokens, which is exactly when the weighting matters.
pairs = [(rng.integers(3, VOCAB, int(rng.integers(3, 12))).tolist() + [1],
          rng.integers(3, VOCAB, 2 + 6 * (k % 2)).tolist() + [1]) for k in range(B)]
share = distributed.DistributedSampler().shard(list(range(B)))
local = collate([pairs[i] for i in share])
local_tokens = int((local["labels"] != -100).sum())
params = list(model.parameters())


def gradients(m, batch, weight: float) -> list:
    """Backward of weight x the batch's mean loss; returns copies of the gradients, zeroed after."""
    (m(**batch).loss * weight).backward()
    grads = [p.grad.copy() for p in m.parameters()]
    for p in m.parameters():
        p.grad = None
    return grads


def all_ranks_gradients(weight: float) -> list:
    """Every rank's weighted gradient, averaged over the ranks."""
    for p, g in zip(params, gradients(model, local, weight)):
        p.grad = g
    distributed.average_gradients(params)
    averaged = [p.grad.copy() for p in params]
    for p in params:
        p.grad = None
    return averaged


tokens_per_rank = distributed.global_token_weight(local_tokens)          # T / N
dp_grads = all_ranks_gradients(local_tokens / tokens_per_rank)           # the correct weighting
naive_grads = all_ranks_gradients(1.0)                                   # each rank's own mean
big_batch = gradients(model, collate(pairs), 1.0)                         # the oracle: one process, all B


def max_rel_err(grads, reference) -> float:
    return max(float(np.abs(g - r).max() / (np.abs(r).max() + 1e-30)) for g, r in zip(grads, reference))


dp_err, naive_err = max_rel_err(dp_grads, big_batch), max_rel_err(naive_grads, big_batch)
token_counts = world.all_gather_json(local_tokens)
say(f"target tokens per rank: {token_counts}")
say(f"token-weighted average vs one big batch: max relative difference {dp_err:.2e} (float32 rounding)")
say(f"naive average of per-rank means:          max relative difference {naive_err:.2e}")

# %% [markdown]
# ## 4. Training: N ranks step like one process
#
# With the same weights and the same averaged gradient, every rank takes the same AdamW step, so the
# weights stay equal without ever being sent again. Below, a few steps on all ranks, against rank 0
# training a private copy on the whole batch. We count the weights that differ by more than 16 units
# in the last place (ulps) of the largest weight, i.e. by more than float32 rounding.
#
# A few may: AdamW divides each element's step by that element's own gradient size ($m/\sqrt{v}$).
# Where one element's gradient is as small as the rounding error of the large terms summed into it,
# the two summation orders give it visibly different values, and the normalised step inherits the
# difference (up to the learning rate per step). The gradients themselves agree to rounding
# (section 3); `tests/test_distributed.py` states its tolerance with this in mind.

# %%
STEPS, LR = 3, 1e-2


def dp_against_one_process() -> dict:
    """Train copies on all ranks (averaged gradients) and on rank 0 alone (whole batch); compare."""
    minillm.manual_seed(7)
    dp, alone = T5ForConditionalGeneration(config), T5ForConditionalGeneration(config)
    alone.load_state_dict({k: v.copy() for k, v in dp.state_dict().items()})
    dp_params = list(dp.parameters())
    opt_dp, opt_alone = AdamW(dp_params, lr=LR), AdamW(alone.parameters(), lr=LR)
    for _ in range(STEPS):
        for p, g in zip(dp_params, gradients(dp, local, local_tokens / tokens_per_rank)):
            p.grad = g
        distributed.average_gradients(dp_params)
        for p, g in zip(alone.parameters(), gradients(alone, collate(pairs), 1.0)):
            p.grad = g
        for opt in (opt_dp, opt_alone):
            opt.step()
            opt.zero_grad()
    diffs = np.concatenate([np.abs(a.data - b.data).ravel() for a, b in zip(dp_params, alone.parameters())])
    ulp = np.finfo(np.float32).eps * max(float(np.abs(p.data).max()) for p in dp_params)
    identical = len(set(world.all_gather_json(checksum(dp)))) == 1
    return {"max_abs_diff": float(diffs.max()), "beyond_16_ulps": int((diffs > 16 * ulp).sum()),
            "elements": int(diffs.size), "ulp": float(ulp), "max_diff_over_lr_steps": float(diffs.max()) / (LR * STEPS),
            "ranks_identical": identical}


training = dp_against_one_process()
say(f"after {STEPS} AdamW steps (lr {LR}): max |data-parallel - one-process| = {training['max_abs_diff']:.2e} "
    f"({training['max_diff_over_lr_steps']:.1e} of lr x steps); {training['beyond_16_ulps']} of "
    f"{training['elements']:,} weights beyond 16 ulps ({16 * training['ulp']:.1e}); "
    f"ranks identical: {training['ranks_identical']}")

# %% [markdown]
# ## 5. Memory per rank: plain data parallelism and ZeRO
#
# Each rank of plain DDP holds, for P float32 parameters: weights 4P bytes, gradients 4P, and AdamW's
# two moments 8P. After the all-reduce every rank would compute the *same* update: the moments are
# kept N times over. ZeRO (Rajbhandari et al., 2020) partitions them:
#
# | | weights | gradients | optimizer state | bytes per rank |
# |---|---|---|---|---|
# | DDP | replicated | replicated | replicated | 16P |
# | ZeRO-1 | replicated | replicated | 1/N each | 8P + 8P/N |
# | ZeRO-2 | replicated | 1/N each | 1/N each | 4P + 12P/N |
# | ZeRO-3 = FSDP | 1/N each | 1/N each | 1/N each | 16P/N |
#
# ZeRO-1 (`--shard-optimizer`): rank r keeps the moments of the parameters it owns, updates only
# those, and `all_gather`s the new weights. The update rule runs on the same numbers as in DDP, so
# the weights are bit for bit DDP's. Measured below after one step of each, on the same gradients:

# %%
def one_step(shard: bool):
    """A fresh copy of the model, one AdamW step on the averaged gradient; (model, optimizer)."""
    m = T5ForConditionalGeneration(config)
    m.load_state_dict({k: v.copy() for k, v in model.state_dict().items()})
    opt = AdamW(m.parameters(), lr=1e-2)
    opt = distributed.ZeroRedundancyOptimizer(opt) if shard else opt
    for p, g in zip(m.parameters(), dp_grads):
        p.grad = g.copy()
    opt.step()
    return m, opt


plain_model, plain_opt = one_step(shard=False)
zero_model, zero_opt = one_step(shard=True)
zero_equals_dp = all(np.array_equal(a.data, b.data) for a, b in zip(plain_model.parameters(), zero_model.parameters()))
P = sum(p.data.size for p in model.parameters())
plain_bytes = distributed.state_bytes(plain_opt)
zero_bytes = world.all_gather_json(zero_opt.local_state_bytes())
say(f"{P:,} parameters; AdamW state per rank: plain DP {plain_bytes:,} bytes (= 8P: {plain_bytes == 8 * P}); "
    f"ZeRO-1 per rank {zero_bytes} (sum {sum(zero_bytes):,}); ZeRO-1 weights == DP weights: {zero_equals_dp}")


def bytes_per_rank(p: int, n: int) -> dict:
    """Training memory per rank (weights + gradients + AdamW moments, float32) for each scheme."""
    return {"DDP": 16 * p, "ZeRO-1": 8 * p + 8 * p / n, "ZeRO-2": 4 * p + 12 * p / n, "ZeRO-3/FSDP": 16 * p / n}


T5_BASE = 222_903_552  # parameters of t5-base (tied embeddings)
rows = [[n, *(f"{v / 2**30:.2f}" for v in bytes_per_rank(T5_BASE, n).values())] for n in (1, 2, 8, 64)]
if RANK == 0:
    print("\nt5-base, GiB per rank (weights + gradients + AdamW; activations not counted):")
    print_table(["ranks", *bytes_per_rank(1, 1)], rows)
if plt is not None and RANK == 0:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ns = [1, 2, 4, 8, 16, 32, 64]
    for scheme in bytes_per_rank(1, 1):
        ax.plot(ns, [bytes_per_rank(T5_BASE, n)[scheme] / 2**30 for n in ns], "o-", label=scheme)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("ranks N")
    ax.set_ylabel("GiB per rank (t5-base, AdamW)")
    ax.legend()
    ax.grid(alpha=0.3)
    save_figure(fig, "memory_per_rank.png")

# %% [markdown]
# ## 6. What FSDP adds
#
# ZeRO-1 still keeps all weights and gradients on every rank (the 8P above), which is what stops a
# model from growing past one device. Stage 2 keeps each gradient only on the rank that owns its
# parameter: the all-reduce becomes a *reduce-scatter* (each rank receives only the sum of its own
# slice), at the same communication cost. Stage 3, **FSDP** (fully sharded data parallelism), shards
# the weights too: before each layer's forward and backward the ranks `all_gather` that layer's
# weights, compute, and free them again. Memory falls to 16P/N plus one layer, and the price is one
# more all-gather of the weights per pass: about 1.5x DDP's traffic. minillm implements stage 1;
# `docs/distributed.md` sketches 2 and 3 on top of the same three collectives.

# %% [markdown]
# ## Summary
#
# The line below is what the tests read (`tests/test_tutorials.py`); `summary.json` holds the same.
# Exercises: deal the batch in contiguous halves instead of `k mod N` and compare the token counts per
# rank; remove the token weighting from the Trainer's `optimizer_step` and watch
# `tests/test_distributed.py` fail; run `benchmarks/data_parallel.py`.

# %%
summary = {
    "world_size": N,
    "all_reduce_ok": all_reduce_ok,
    "weights_differ_before_broadcast": weights_differ_before,
    "weights_equal_after_broadcast": weights_equal_after,
    "token_counts_per_rank": token_counts,
    "dp_vs_big_batch_grad_max_rel_err": dp_err,
    "naive_vs_big_batch_grad_max_rel_err": naive_err,
    "train_steps": STEPS,
    "dp_vs_one_process": training,
    "parameters": P,
    "plain_dp_optimizer_bytes": plain_bytes,
    "zero1_optimizer_bytes_per_rank": zero_bytes,
    "zero1_equals_dp": zero_equals_dp,
    "t5_base_gib_per_rank": {str(row[0]): dict(zip(bytes_per_rank(1, 1), map(float, row[1:]))) for row in rows},
    "cpu_seconds": round(time.process_time() - started_cpu, 1),
    "wall_seconds": round(time.perf_counter() - started_wall, 1),
    "figures": FIGURES,
}
if RANK == 0:
    (OUT / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"This run took {summary['wall_seconds']:.0f} s of wall time.")
    print("SUMMARY " + json.dumps(summary))
