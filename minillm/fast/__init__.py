"""The fast layer: the speed chapter, read after the reference math in ``ops/`` and ``optim/``.

    dispatch.py  the registry and the switch (MINILLM_FAST=0, ``fast_paths(False)``)
    threads.py   minillm's own CPU threads: row blocks, split products, per-parameter maps
    cuda.py      launchers for the hand-written kernels in kernels/*.cu (CuPy)
    cuda_ops.py  ops on those kernels, registered as fast versions of their reference ops

``register_all()`` imports the modules that register implementations; ``minillm`` calls it once.
"""
from .dispatch import fast_paths, fast_paths_enabled, lookup, register


def register_all() -> None:
    """Import every module that registers a fast implementation (each registers on import)."""
    from . import cuda_ops  # noqa: F401, PLC0415


__all__ = ["fast_paths", "fast_paths_enabled", "lookup", "register", "register_all"]
