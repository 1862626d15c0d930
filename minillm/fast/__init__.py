"""The fast layer: the speed chapter, read after the reference math in ``ops/`` and ``optim/``.

    dispatch.py       the registry and the per-thread switch (MINILLM_FAST=0, ``fast_paths(False)``),
                      ``context("decoding")`` for generation's thread hand-off
    threads.py        minillm's own CPU threads: row blocks, split products, per-parameter maps,
                      and ``set_num_threads`` / ``threads_to_blas`` (registered as "decoding")
    subnormals.py     flushing subnormal floats to zero (why: docs/speed.md)
    gemm_linear.py    the one Linear fast path: Linear's three GEMMs, written once for any GEMM
    cpu_linalg.py     matmul split over the threads; the few-rows x W^T case; ThreadedLinear
                      (gemm_linear with the threads' GEMM; cuda_ops.py gives it the CUDA kernel's)
    cpu_attention.py  attention in one scores buffer, on the threads, flushed of subnormals
    cpu_softmax.py    cross-entropy with a gradient flushed of subnormals
    cpu_norms.py      RMSNorm as row-block kernels
    cpu_gelu.py       GELU (tanh) and gated GELU as row-block kernels
    cpu_dropout.py    dropout's scaling as row-block kernels (the same mask as the reference)
    cpu_embedding.py  the embedding gradient as sort + segmented sum
    cpu_optim.py      SGD, Adam, AdamW, Adafactor in place (``out=``), one parameter per thread,
                      bitwise equal to the reference update rules
    cuda.py           launchers for the hand-written kernels in kernels/*.cu (CuPy); matmul's host side
    cuda_attention.py the host side of the fused attention kernels: tiles, grids, backward versions
    cuda_ops.py       ops on those kernels, registered as fast versions of their reference ops

``register_all()`` imports the modules that register implementations; ``minillm`` calls it once.
"""
from .dispatch import fast_paths, fast_paths_enabled, lookup, register


def register_all() -> None:
    """Import every module that registers a fast implementation (each registers on import)."""
    from . import (cpu_attention, cpu_dropout, cpu_embedding, cpu_gelu, cpu_linalg,  # noqa: F401, PLC0415
                   cpu_norms, cpu_optim, cpu_softmax, cuda_ops, threads)


__all__ = ["fast_paths", "fast_paths_enabled", "lookup", "register", "register_all"]
