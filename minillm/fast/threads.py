"""Intra-op parallelism for NumPy: one large array job split across the CPU's threads.

NumPy's elementwise functions run on one core, while PyTorch spreads a large ``tanh`` or ``exp``
over all of its threads. NumPy releases Python's global lock inside those loops, so plain Python
threads can do the same thing. Cut the arrays into blocks of rows, give each thread a run of
blocks, and wait for all of them. Compute-bound work (tanh, exp, log, sqrt, division) then runs
about N times faster on N cores. Memory-bound work, such as one multiply, barely gains from more
threads, but a chain of in-place steps gains from small blocks: the block stays in the cache
from one step to the next instead of streaming from memory every time. The fused ops whose
gain was measured call this module. See benchmarks/train_step.py.

Results do not depend on the thread count. A block always holds whole rows, and the functions
given here work element by element or along the last axis only, so every element is computed
exactly as in a single call.

Matrix products are split the same way (``matmul``: blocks of output rows, or of columns when
there are few rows, or of the batch), each block one single-threaded BLAS call. That is what
PyTorch does too: one pool of threads for everything. With BLAS's own threads instead, the two
pools fight. After each product OpenBLAS's threads keep spinning for a while, and they take
the cores that the elementwise work needs. Measured on 2 cores, the T5 training step of
benchmarks/train_step.py then gained nothing from the second thread.

Nothing is split until you ask: ``minillm.set_num_threads(n)`` gives minillm ``n`` threads and
limits BLAS to one thread per call. Until then everything runs in the calling thread, and BLAS
keeps whatever threads it had. CuPy arrays are never split; the GPU is parallel already.
"""
from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .dispatch import register

BLOCK_ELEMENTS = 1 << 16
"""Work is cut into blocks of whole rows of about this many elements (256 KB of float32 per
array), so that the few arrays a kernel touches stay in a core's L2 cache from one step of
the kernel to the next; between blocks, a thread pays one Python loop turn."""

MIN_ELEMENTS = 1 << 17
"""Less work than this runs in one call in this thread: a hand-off costs tens of microseconds."""

_threads = 1  # set by set_threads (from set_num_threads)
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_in_worker = threading.local()  # work submitted from a worker runs inline, never waits on the pool


def set_threads(n: int | None) -> None:
    """Split work over ``n`` threads (None: do not split); BLAS is left alone (see set_num_threads)."""
    global _threads
    if n is not None and n < 1:
        raise ValueError(f"set_threads: need at least 1 thread, got {n}")
    _threads = 1 if n is None else int(n)


def num_threads() -> int:
    """How many threads split work uses now (1: none is split)."""
    return _threads


def _get_pool(workers: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    if _pool is None or _pool_size != workers:
        if _pool is not None:
            _pool.shutdown(wait=False)
        _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="minillm",
                                   initializer=lambda: setattr(_in_worker, "active", True))
        _pool_size = workers
    return _pool


def _forget_pool_after_fork() -> None:
    # A forked child (a DataLoader worker, say) inherits the pool object but not its threads.
    global _pool, _pool_size
    _pool, _pool_size = None, 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)


def _threads_for(size: int) -> int:
    if size < MIN_ELEMENTS or getattr(_in_worker, "active", False):
        return 1
    return min(num_threads(), max(1, size // BLOCK_ELEMENTS))


def _run_shares(run, shares: list) -> None:
    """``run(share)`` for every share: the first in this thread, the rest in the pool."""
    pool = _get_pool(num_threads() - 1) if len(shares) > 1 else None  # one pool, whatever the share count
    futures = [pool.submit(run, share) for share in shares[1:]]
    run(shares[0])
    for future in futures:
        future.result()  # re-raises a worker's exception here


def for_each_row_block(fn, *arrays) -> None:
    """Call ``fn(*blocks)`` on matching blocks of rows of ``arrays``, spread over the threads.

    All arrays must have the same leading dimensions (everything but the last axis). A row is
    the last axis, so ``fn`` may reduce along ``axis=-1``. ``fn`` writes its results into
    arrays it was given (``out=`` arguments or in-place operators); its return value is
    ignored. If an array is not a C-contiguous NumPy array, or the work is small, ``fn`` runs
    once on the arrays as given.
    """
    first = arrays[0]
    if (first.size < MIN_ELEMENTS or first.ndim == 0
            or not all(isinstance(a, np.ndarray) and a.flags.c_contiguous for a in arrays)
            or any(a.shape[:-1] != first.shape[:-1] for a in arrays)):
        fn(*arrays)
        return
    rows = [a.reshape(-1, a.shape[-1]) for a in arrays]  # views: the arrays are contiguous
    n_rows = rows[0].shape[0]
    step = max(1, BLOCK_ELEMENTS // max(1, first.shape[-1]))
    blocks = [(lo, min(lo + step, n_rows)) for lo in range(0, n_rows, step)]
    threads = min(_threads_for(first.size), len(blocks))
    shares = [blocks[lo:hi] for lo, hi in _cuts(len(blocks), threads)]  # a contiguous run of blocks each

    def run(share):
        for lo, hi in share:
            fn(*[r[lo:hi] for r in rows])

    _run_shares(run, shares)


def map_in_threads(fn, items, sizes) -> None:
    """Call ``fn(item)`` for every item, spread over the threads; used for per-parameter updates.

    ``sizes`` (one number of elements per item) balance the load: items are dealt, largest
    first, to the thread with the least work so far. Small total work runs in this thread.
    """
    items, sizes = list(items), list(sizes)
    threads = min(_threads_for(sum(sizes)), len(items))
    if threads <= 1:
        for item in items:
            fn(item)
        return
    shares: list[list] = [[] for _ in range(threads)]
    load = [0] * threads
    for size, index in sorted(((s, i) for i, s in enumerate(sizes)), reverse=True):
        lightest = load.index(min(load))
        shares[lightest].append(items[index])
        load[lightest] += size

    def run(share):
        for item in share:
            fn(item)

    _run_shares(run, shares)


MIN_MATMUL_FLOPS = 1 << 21
"""Products with fewer multiply-adds than this run in one BLAS call."""


def matmul(a, b):
    """``a @ b`` for NumPy arrays of 2 or more dimensions, split over the threads.

    Each thread computes a block of the output with its own BLAS call: a block of the batch
    (leading) dimension when there is one, else a block of rows, or of columns when there are
    fewer rows than columns. Every output element is one dot product over the whole inner
    dimension, as in a single call. Anything else (CuPy, vectors, small products, one thread)
    is a plain ``a @ b``.
    """
    threads = num_threads()
    if (threads == 1 or getattr(_in_worker, "active", False) or not isinstance(a, np.ndarray)
            or not isinstance(b, np.ndarray) or a.ndim < 2 or b.ndim < 2):
        return a @ b
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
    if k != b.shape[-2] or int(np.prod(batch)) * m * n * k < MIN_MATMUL_FLOPS:
        return a @ b  # (a shape error is raised by NumPy, with its message)
    out = np.empty(batch + (m, n), dtype=np.result_type(a, b))
    if batch and batch[0] >= threads:  # split the first batch axis; broadcast operands stay whole
        a_split, b_split = a.ndim == out.ndim and a.shape[0] > 1, b.ndim == out.ndim and b.shape[0] > 1
        parts = [(a[lo:hi] if a_split else a, b[lo:hi] if b_split else b, out[lo:hi])
                 for lo, hi in _cuts(batch[0], threads)]
    elif m >= n or m >= threads * 64:  # split the rows of a
        parts = [(a[..., lo:hi, :], b, out[..., lo:hi, :]) for lo, hi in _cuts(m, threads)]
    else:  # few rows (a decoding step): split the columns of b
        parts = [(a, b[..., lo:hi], out[..., lo:hi]) for lo, hi in _cuts(n, threads)]

    def run(share):
        for a_part, b_part, out_part in share:
            np.matmul(a_part, b_part, out=out_part)

    _run_shares(run, [[part] for part in parts])
    return out


def _cuts(n: int, parts: int) -> list[tuple[int, int]]:
    """``range(n)`` cut into ``min(parts, n)`` contiguous pieces whose sizes differ by at most one."""
    parts = max(1, min(parts, n))
    bounds = [i * n // parts for i in range(parts + 1)]  # integers: np.linspace costs ~20 us a call
    return list(zip(bounds[:-1], bounds[1:]))


# ------------------------------------------------------------------------ the public thread switch
_thread_limiter = None


def set_num_threads(n: int | None) -> None:
    """Compute on ``n`` CPU threads; None goes back to NumPy's defaults (``minillm.set_num_threads``).

    minillm then splits its large matrix products and elementwise kernels over ``n`` threads of
    its own (above) and limits the BLAS library under NumPy (OpenBLAS/MKL) to one thread per
    call, so that the two never compete for the cores. Small models multiply small matrices,
    where BLAS's own threads spend more time waking up and spinning than computing; on a busy
    machine they made a step ten times slower. minillm's commands therefore take a ``--threads``
    option. Uses the ``threadpoolctl`` package.
    """
    global _thread_limiter
    from threadpoolctl import threadpool_limits  # noqa: PLC0415

    if n is not None and n < 1:
        raise ValueError(f"set_num_threads: need at least 1 thread, got {n}")
    set_threads(n)
    if _thread_limiter is not None:
        _thread_limiter.restore_original_limits()
        _thread_limiter = None
    if n is not None:
        _thread_limiter = threadpool_limits(limits=1, user_api="blas")


def get_num_threads() -> int:
    """The threads minillm computes with: ``set_num_threads``'s n, else those of NumPy's BLAS."""
    from threadpoolctl import threadpool_info  # noqa: PLC0415

    if _thread_limiter is not None:
        return num_threads()
    return max((info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"), default=1)


@register("decoding")
@contextlib.contextmanager
def threads_to_blas():
    """Inside the block, BLAS gets minillm's threads and minillm splits no work of its own.

    For code that multiplies a few rows at a time (one decoding step of ``generate``): handing a
    small product to minillm's thread pool costs more than it saves, while BLAS's own threads,
    which spin between calls, answer within microseconds. Does nothing unless
    ``set_num_threads`` gave minillm more than one thread.
    """
    from threadpoolctl import threadpool_limits  # noqa: PLC0415

    n = num_threads()
    if _thread_limiter is None or n == 1:
        yield
        return
    set_threads(None)
    try:
        with threadpool_limits(limits=n, user_api="blas"):
            yield
    finally:
        set_threads(n)
