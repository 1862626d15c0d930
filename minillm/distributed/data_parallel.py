"""Distributed data parallelism (DDP): the same model on every rank, each rank on its own data.

One optimizer step on N ranks with a global batch of B examples:

    1. every rank holds the same weights θ           (``broadcast_parameters`` once, at the start)
    2. rank r runs forward and backward on its B/N examples and gets g_r
    3. all ranks average:  g = (1/N) Σ_r g_r          (``average_gradients``: one all_reduce)
    4. every rank takes the same optimizer step θ ← step(θ, g), so the weights stay equal

Why this equals one process on the whole batch: the loss of a batch is a mean over its target
tokens, L = (1/T) Σ_t ℓ_t, and the gradient is linear in the ℓ_t. If rank r holds T_r of the
T tokens and weights its loss by T_r / (T/N) (``global_token_weight``), then

    (1/N) Σ_r (T_r N / T) ∇L_r = (1/T) Σ_r Σ_{t in r} ∇ℓ_t = ∇L.

Only the order of the floating-point additions differs (each rank sums its own tokens first),
so the two agree to float32 summation rounding, not bit for bit.

Buckets. Averaging every gradient with its own all_reduce would pay the per-call latency
hundreds of times; one all_reduce of everything would need a copy of the whole model. PyTorch
DDP packs gradients into buckets of about 25 MB (``bucket_cap_mb``) and reduces bucket by bucket;
so does ``average_gradients``. It walks the parameters in reverse, the order backward produces
their gradients, which is what lets PyTorch start reducing a bucket while backward still runs
(here backward has finished, so the order only keeps the buckets the same as PyTorch's).
"""
from __future__ import annotations

import numpy as np

from .. import backend
from .communicator import Communicator, get_world

BUCKET_CAP_MB = 25.0


def communicator_for(array, world: Communicator | None = None) -> Communicator:
    """The communicator for arrays like ``array``: MPI for NumPy, NCCL for CuPy (GPU) arrays."""
    world = world or get_world()
    if world.size > 1 and backend.is_cupy_array(array):
        from .nccl import nccl_communicator  # noqa: PLC0415  (needs CuPy)

        return nccl_communicator(world)
    return world


def broadcast_parameters(model, world: Communicator | None = None) -> None:
    """Copy rank 0's parameters to every rank, in place (tied parameters once).

    Ranks that built the model with different random draws start from rank 0's weights.
    """
    world = world or get_world()
    if world.size == 1:
        return
    for _, p in model.named_parameters():  # the same order on every rank: the same model code
        communicator_for(p.data, world).broadcast(p.data, root=0)


def _buckets(params, cap_bytes: float) -> list[list]:
    """Split ``params`` (in the given order) into runs of at most ``cap_bytes`` each (>= 1 param)."""
    buckets, current, size = [], [], 0
    for p in params:
        nbytes = p.data.size * p.data.dtype.itemsize
        if current and (size + nbytes > cap_bytes or p.data.dtype != current[0].data.dtype):
            buckets.append(current)
            current, size = [], 0
        current.append(p)
        size += nbytes
    return buckets + [current] if current else buckets


def average_gradients(params, world: Communicator | None = None, bucket_cap_mb: float = BUCKET_CAP_MB) -> int:
    """Replace every ``p.grad`` by its mean over the ranks, one all_reduce per bucket.

    A parameter without a gradient on some rank (it took no part in that rank's forward)
    counts as a zero gradient there; one that has no gradient on any rank keeps ``grad=None``,
    so the optimizer skips it, as one process on the whole batch would.

    Args:
        params: the trainable parameters, in the same order on every rank.
        world: the communicator (default: the world).
        bucket_cap_mb: the bucket size in megabytes (2**20 bytes), as in PyTorch DDP.

    Returns:
        The number of all_reduce calls made for the gradients (the bucket count).
    """
    world = world or get_world()
    params = list(params)
    if world.size == 1 or not params:
        return 0
    # Which parameters have a gradient on at least one rank: one small all_reduce of flags.
    has_grad = world.all_reduce(np.array([p.grad is not None for p in params], dtype=np.int32), op="max")
    with_grad = [p for p, flag in zip(params, has_grad) if flag]
    buckets = _buckets(reversed(with_grad), bucket_cap_mb * 2**20)
    for bucket in buckets:
        xp = backend.get_array_module(bucket[0].data)
        # (total,) one flat buffer: the bucket's gradients end to end (zeros where a rank has none)
        flat = xp.concatenate([(p.grad if p.grad is not None else xp.zeros_like(p.data)).reshape(-1)
                               for p in bucket])
        communicator_for(flat, world).all_reduce(flat, op="sum")
        flat /= world.size
        offset = 0
        for p in bucket:
            n = p.data.size
            p.grad = flat[offset:offset + n].reshape(p.data.shape)
            offset += n
    return len(buckets)


def mean_over_ranks(value: float, world: Communicator | None = None) -> float:
    """The mean of a Python number over the ranks (in float64), on every rank."""
    world = world or get_world()
    total = world.all_reduce(np.array([value], dtype=np.float64), op="sum")
    return float(total[0]) / world.size


def sum_over_ranks(value: float, world: Communicator | None = None) -> float:
    """The sum of a Python number over the ranks (in float64), on every rank."""
    world = world or get_world()
    return float(world.all_reduce(np.array([value], dtype=np.float64), op="sum")[0])


def any_rank(flag: bool, world: Communicator | None = None) -> bool:
    """True on every rank when ``flag`` is true on at least one (e.g. "Ctrl-C was pressed here")."""
    world = world or get_world()
    return bool(world.all_reduce(np.array([int(bool(flag))], dtype=np.int32), op="max")[0])


def global_token_weight(local_tokens: int, world: Communicator | None = None) -> float:
    """T / N: the mean number of target tokens per rank, the divisor that makes averaging exact.

    A rank weights each micro-batch loss by ``n_i / global_token_weight(...)`` (n_i its tokens);
    see the module docstring for why the average over ranks is then the one-big-batch gradient.
    """
    return mean_over_ranks(float(local_tokens), world)


def assert_same_on_every_rank(model, world: Communicator | None = None) -> None:
    """Raise if any parameter differs (bitwise) between this rank and rank 0: a drift check."""
    world = world or get_world()
    for name, p in model.named_parameters():
        mine = np.ascontiguousarray(backend.to_device(p.data, "cpu"))
        theirs = world.broadcast(mine.copy(), root=0)
        if not np.array_equal(mine.view(np.uint8), theirs.view(np.uint8)):
            raise AssertionError(f"parameter {name} on rank {world.rank} differs from rank 0's")
