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
# # Tutorial 01: autograd, from one expression to the chain rule
#
# **Learning goals.** After this tutorial you can
# 1. say what a `Tensor` records and what a `Function` computes (`forward` on arrays, `backward`
#    for gradients), and walk the graph of a small expression;
# 2. derive a gradient by hand with the chain rule and see that `backward()` gets the same numbers;
# 3. write your own differentiable op;
# 4. check any gradient numerically with central differences, and pick the step size;
# 5. explain how the gradient of a broadcast input is "undone" by `sum_to`.
#
# Run it as a script (`python tutorials/01_autograd.py`) or open it as a notebook
# (`jupytext --to notebook tutorials/01_autograd.py`). `MINILLM_SMOKE=1` makes it faster still.
# Read alongside: `minillm/autograd.py`, `minillm/ops/elementwise.py`, `docs/gradients.md`.

# %% Setup: output folder, figures, tables (the same cell opens every tutorial)
import json
import sys
from pathlib import Path

import numpy as np

TUTORIAL = "01_autograd"
HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
sys.path[:0] = [str(HERE.parent), str(HERE)]  # minillm from this checkout; tutorials/_setup.py
from _setup import SMOKE, plt, print_table, tutorial_output  # noqa: E402

OUT, FIGURES, save_figure = tutorial_output(TUTORIAL)


import minillm  # noqa: E402
from minillm import Function, Tensor, ops  # noqa: E402

print(f"smoke mode: {SMOKE}; figures and summary.json go to {OUT}")

# %% [markdown]
# ## 1. A Tensor remembers how it was made
#
# Take one "neuron" with a squared error:
#
# $$z = \textstyle\sum_i w_i x_i + b,\qquad y = \tanh z,\qquad L = (y - t)^2 .$$
#
# Each operator below calls a `Function` (`Mul`, `Sum`, `Add`, `Tanh`, ...). The output Tensor keeps
# that Function in `._ctx`, and the Function keeps its inputs in `.parents`. That chain of links
# *is* the computation graph: nothing else is stored.

# %%
x = Tensor([0.5, -1.0, 2.0])                        # an input: no gradient needed
w = Tensor([0.1, 0.4, -0.3], requires_grad=True)    # parameters: we want dL/dw and dL/db
b = Tensor(0.2, requires_grad=True)
t = 0.25                                            # the target

z = (w * x).sum() + b
y = z.tanh()
L = (y - t) ** 2
print(f"z = {z.item():.6f}, y = {y.item():.6f}, L = {L.item():.6f}")


def graph_rows(root):
    """(node, op, shape, parents) for every tensor reachable from root, consumers first."""
    rows, seen, stack = [], set(), [root]
    while stack:  # an explicit stack, like autograd.py: deep graphs cannot overflow Python
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        parents = [p for p in (node._ctx.parents if node._ctx else ()) if p is not None]
        op = type(node._ctx).__name__ if node._ctx else ("leaf (parameter)" if node.requires_grad else "leaf")
        rows.append([len(rows), op, node.shape, len(parents)])
        stack.extend(parents)
    return rows


rows = graph_rows(L)
print_table(["node", "made by", "shape", "inputs"], rows)

# %% [markdown]
# ## 2. The chain rule by hand, then by `backward()`
#
# Going backwards, every step multiplies by one local derivative:
#
# $$\frac{\partial L}{\partial y} = 2(y - t),\quad \frac{\partial y}{\partial z} = 1 - y^2,\quad
# \frac{\partial z}{\partial w_i} = x_i,\quad \frac{\partial z}{\partial b} = 1 .$$
#
# `L.backward()` does exactly this: it visits the nodes in reverse topological order and calls each
# Function's `backward(grad)`, which returns `grad × local derivative` for each input.

# %%
L.backward()
dL_dz = 2 * (y.item() - t) * (1 - y.item() ** 2)
by_hand = {"w": dL_dz * x.numpy(), "b": np.array(dL_dz)}
by_autograd = {"w": w.grad, "b": b.grad}
hand_diff = max(float(np.abs(by_hand[k] - by_autograd[k]).max()) for k in by_hand)
print_table(["parameter", "chain rule by hand", "backward()"],
            [[k, np.array2string(np.asarray(by_hand[k]), precision=6),
              np.array2string(np.asarray(by_autograd[k]), precision=6)] for k in by_hand])
print(f"In this run the largest difference between hand and autograd gradients was {hand_diff:.2e}.")

# %% [markdown]
# ## 3. Your own op: a `Function` is two short methods
#
# `forward` receives raw NumPy (or CuPy) arrays and saves what the gradient needs; `backward`
# receives dL/d(output) and returns dL/d(input). Here is $\sin$, which minillm does not ship.
# Try changing it to $\cos$ (and its derivative) and rerun the check below.

# %%
class Sin(Function):
    """y = sin(a); dy/da = cos(a)."""

    def forward(self, a):
        self.a = a  # saved for backward
        xp = minillm.get_array_module(a)  # numpy here, cupy on a GPU
        return xp.sin(a)

    def backward(self, grad):
        xp = minillm.get_array_module(grad)
        return grad * xp.cos(self.a)


def sin(a):
    return Sin.apply(a)


# %% [markdown]
# ## 4. Checking a gradient numerically
#
# A gradient rule is easy to get subtly wrong (a missing transpose, a forgotten sum). The test that
# catches it compares `backward()` with **central differences**, one input element at a time:
#
# $$\frac{\partial L}{\partial \theta_j} \approx \frac{L(\theta + h e_j) - L(\theta - h e_j)}{2h}.$$
#
# The error of this formula is $O(h^2)$ from truncation plus $O(\varepsilon_{\text{mach}}/h)$ from
# rounding. The two balance near $h \approx \varepsilon_{\text{mach}}^{1/3}$, about $6\cdot10^{-6}$ in
# float64, so we compute in float64 and use $h = 10^{-5}$ (the sweep below tests that choice). We report the relative error
# $|a - n| / \max(|a| + |n|, 10^{-12})$ of the analytic gradient $a$ against the numerical $n$.
#
# The function to check is a small two-layer network with a broadcast bias, our `Sin`, and a
# cross-entropy loss, so that many rules take part at once.

# %%
rng = np.random.default_rng(0)
n, d_in, d_hidden, n_classes = (4, 3, 5, 3) if SMOKE else (8, 6, 16, 4)
X = rng.standard_normal((n, d_in))
labels = rng.integers(0, n_classes, size=n)
params = {"W1": rng.standard_normal((d_in, d_hidden)) * 0.5, "b1": rng.standard_normal(d_hidden) * 0.1,
          "W2": rng.standard_normal((d_hidden, n_classes)) * 0.5}


def network_loss(p):
    """L(W1, b1, W2) = cross_entropy(sin(tanh(X W1 + b1)) W2, labels)."""
    hidden = sin(ops.tanh(ops.matmul(X, p["W1"]) + p["b1"]))  # b1 (d_hidden,) broadcasts over rows
    return ops.cross_entropy(ops.matmul(hidden, p["W2"]), labels)


def numerical_gradient(loss_fn, values, name, h):
    """Central differences of loss_fn with respect to values[name], one element at a time."""
    grad = np.zeros_like(values[name])
    for j in np.ndindex(grad.shape):
        plus, minus = dict(values), dict(values)
        plus[name], minus[name] = values[name].copy(), values[name].copy()
        plus[name][j] += h
        minus[name][j] -= h
        with minillm.no_grad():
            grad[j] = (loss_fn(plus).item() - loss_fn(minus).item()) / (2 * h)
    return grad


def relative_error(a, n):
    return np.abs(a - n) / np.maximum(np.abs(a) + np.abs(n), 1e-12)


leaves = {k: Tensor(v, requires_grad=True) for k, v in params.items()}  # float64 arrays stay float64
network_loss(leaves).backward()
check_rows, errors = [], []
for name in params:
    numeric = numerical_gradient(network_loss, params, name, h=1e-5)
    err = float(relative_error(leaves[name].grad, numeric).max())
    errors.append(err)
    check_rows.append([name, leaves[name].shape, err])
print_table(["parameter", "shape", "max relative error"], check_rows)
gradcheck_max_rel_err = max(errors)
print(f"In this run the worst relative error over all {sum(v.size for v in params.values())} "
      f"parameters was {gradcheck_max_rel_err:.2e}; "
      f"{'the gradients agree' if gradcheck_max_rel_err < 1e-6 else 'SOMETHING IS WRONG'} (threshold 1e-6).")

# %% [markdown]
# ### Which step size $h$?
#
# Too large a step and the finite difference sees the curvature; too small and it subtracts two
# nearly equal numbers and keeps only rounding noise. Sweep $h$ for one weight and look.

# %%
steps = np.logspace(-1, -12, 12 if SMOKE else 23)
sweep = []
for h in steps:
    numeric = numerical_gradient(network_loss, params, "W1", h=float(h))
    sweep.append(float(relative_error(leaves["W1"].grad, numeric).max()))
best = int(np.argmin(sweep))
print_table(["h", "max relative error (W1)"], [[float(h), e] for h, e in zip(steps, sweep)])
print(f"In this run the smallest error, {sweep[best]:.2e}, came at h = {steps[best]:.0e}; "
      f"h = 1e-1 gave {sweep[0]:.2e} and h = {steps[-1]:.0e} gave {sweep[-1]:.2e}.")
if plt is not None:
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.loglog(steps, sweep, "o-")
    ax.set_xlabel("step h")
    ax.set_ylabel("max relative error of dL/dW1")
    ax.set_title("Central differences: truncation vs rounding")
    ax.invert_xaxis()
    save_figure(fig, "gradcheck_step_size.png")

# %% [markdown]
# ## 5. Broadcasting, and how `sum_to` undoes it
#
# In `X W1 + b1` the bias has shape `(d_hidden,)` but is added to an `(n, d_hidden)` matrix: NumPy
# *broadcasts* it, i.e. uses the same bias for every row. Each copy receives a gradient, so the
# bias's gradient is the **sum over the copies**:
#
# $$\frac{\partial L}{\partial b_j} = \sum_i \frac{\partial L}{\partial (XW + b)_{ij}} .$$
#
# Every binary op in minillm ends its backward with one helper, `sum_to(grad, input_shape)`, which
# sums over the axes that broadcasting added (leading axes) or stretched (axes of size 1).

# %%
a = Tensor(np.arange(12.0).reshape(4, 3), requires_grad=True)
bias = Tensor(np.zeros(3), requires_grad=True)        # (3,)   broadcast over 4 rows
scale = Tensor(np.ones((4, 1)), requires_grad=True)   # (4, 1) broadcast over 3 columns
out = (a + bias) * scale
out.backward(np.ones((4, 3)))                         # dL/dout = 1 everywhere
print(f"bias.grad  = {bias.grad}   (each column summed over 4 rows)")
print(f"scale.grad = {scale.grad.ravel()}   (each row of a + bias summed over 3 columns)")
broadcast_ok = bool(np.allclose(bias.grad, 4.0) and np.allclose(scale.grad.ravel(), a.numpy().sum(axis=1)))

sum_to_rows, sum_to_ok = [], True
g = rng.standard_normal((2, 3, 4))
for target in [(3, 4), (4,), (3, 1), (1, 3, 1), (2, 1, 4), ()]:
    got = ops.sum_to(g, target)
    lead = g.ndim - len(target)  # leading axes were added; size-1 axes were stretched
    axes = tuple(range(lead)) + tuple(lead + i for i, s in enumerate(target) if s == 1)
    expected = g.sum(axis=axes, keepdims=True).reshape(target)
    sum_to_ok &= bool(got.shape == target and np.allclose(got, expected))
    sum_to_rows.append([g.shape, target, axes, got.shape])
print_table(["grad shape", "input shape", "axes summed", "result shape"], sum_to_rows)
print(f"In this run sum_to matched NumPy's explicit sums for all {len(sum_to_rows)} shapes: {sum_to_ok}.")

# %% [markdown]
# ## 6. Gradients accumulate
#
# A leaf's `.grad` is *added to*, not overwritten (so two losses can share a parameter). That is
# why a training loop calls `zero_grad()` before each `backward()`. And because backward frees the
# arrays each Function saved, a second backward through the same graph is an error unless the
# first one passed `retain_graph=True`.

# %%
p = Tensor(3.0, requires_grad=True)
(p * p).backward()            # d(p^2)/dp = 6
first = p.grad.item()
(p * p).backward()            # a new graph: 6 more
second = p.grad.item()
p.zero_grad()
graph = p * p
graph.backward()
try:
    graph.backward()
    second_backward_error = "no error"
except RuntimeError as error:
    second_backward_error = str(error).split(";")[0]
accumulation_ok = first == 6.0 and second == 12.0
print(f"after one backward p.grad = {first}, after two = {second}; a second backward through one graph says:"
      f"\n  {second_backward_error}")

# %% [markdown]
# ## 7. Two layers: the formula you read, the kernel that runs
#
# Every op in `minillm/ops/` is its formula from `docs/gradients.md`, on whole arrays, like `Sin`
# above. Some ops also have a faster version in `minillm/fast/` (blocked, threaded, in place),
# a subclass of the reference op registered with a small dispatch; `Function.apply` asks the
# dispatch for one and runs the formula when there is none. One switch turns every fast path
# off: `MINILLM_FAST=0` in the environment, or the context below. The tests prove the two equal
# (`tests/test_fast_vs_reference.py`); here we time one feed-forward block both ways, with
# `minillm.set_num_threads(2)`: BLAS then runs one thread per call, and only the fast layer
# splits work over minillm's two threads. (The machine may be busy: the times are what this run
# measured, nothing more.)

# %%
import time  # noqa: E402

tokens, d_model, d_ff = (64, 32, 128) if SMOKE else (1024, 256, 1024)
block_rng = np.random.default_rng(0)
x_in = block_rng.standard_normal((tokens, d_model)).astype(np.float32)
block_weights = [Tensor((block_rng.standard_normal(shape) / np.sqrt(shape[-1])).astype(np.float32),
                        requires_grad=True)
                 for shape in [(d_model,), (d_ff, d_model), (d_ff, d_model), (d_model, d_ff)]]


def feed_forward_step():
    """T5's gated feed-forward on one batch of tokens, forward and backward; returns the output and dx."""
    norm_w, w_gate, w_up, w_out = block_weights
    x = Tensor(x_in, requires_grad=True)
    h = ops.rms_norm(x, norm_w)
    y = ops.linear(ops.gated_gelu(ops.linear(h, w_gate), ops.linear(h, w_up)), w_out)
    y.backward(np.ones_like(y.data))
    ran = type(y._ctx).__name__  # the class that computed the last op
    return y.data, x.grad, ran


def best_time(repeats):
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        result = feed_forward_step()
        best = min(best, time.perf_counter() - start)
    return best, result


repeats = 2 if SMOKE else 10
threads_before = minillm.get_num_threads()
minillm.set_num_threads(2)  # the fast layer splits work over minillm's threads; the reference runs on one
fast_s, (y_fast, dx_fast, fast_class) = best_time(repeats)
with minillm.fast_paths(False):  # the reference formulas only
    ref_s, (y_ref, dx_ref, ref_class) = best_time(repeats)
section_threads = minillm.get_num_threads()
minillm.set_num_threads(threads_before)
switch_max_diff = float(max(np.abs(y_fast - y_ref).max(), np.abs(dx_fast - dx_ref).max()))
print_table(["path", "last op ran as", "best of %d (ms)" % repeats],
            [["fast layer", fast_class, fast_s * 1e3], ["reference (fast_paths(False))", ref_class, ref_s * 1e3]])
print(f"{tokens} tokens, d_model {d_model}, d_ff {d_ff}, {section_threads} threads: the fast "
      f"layer took {fast_s / ref_s:.2f} of the reference's time; outputs and dx differ by at most "
      f"{switch_max_diff:.2g} (float32 rounding)")

# %% [markdown]
# ## Summary
#
# The line below is what the tests read (`tests/test_tutorials.py`); `summary.json` holds the same.
# Exercises: add a `Cos` Function and check it; break `Sin.backward` (drop the `cos`) and watch the
# relative error of section 4 jump by many orders of magnitude; make `Add.backward` return `grad`
# without `sum_to` and read the engine's error message.

# %%
summary = {
    "gradcheck_max_rel_err": gradcheck_max_rel_err,
    "hand_vs_autograd_max_abs_diff": hand_diff,
    "best_step_size": float(steps[best]),
    "best_step_rel_err": sweep[best],
    "broadcast_grads_ok": broadcast_ok,
    "sum_to_matches_numpy": sum_to_ok,
    "grad_accumulates": accumulation_ok,
    "graph_nodes": len(rows),
    "fast_ms": fast_s * 1e3,
    "reference_ms": ref_s * 1e3,
    "fast_vs_reference_max_abs_diff": switch_max_diff,
    "figures": FIGURES,
}
(OUT / "summary.json").write_text(json.dumps(summary, indent=2))
print("SUMMARY " + json.dumps(summary))
