"""Hand-written CUDA kernels for CuPy arrays: the launcher, and the tiled matmul's host side.

The CUDA C++ lives in ``kernels/*.cu`` (read those, and ``kernels/README.md``, for how the kernels
work). This module is the host side every kernel shares:

* it compiles each ``.cu`` file once with ``cupy.RawModule`` (NVRTC) and caches the module and its
  functions, so no kernel object is ever built per call;
* it checks shapes, dtypes and contiguity, computes grids and shared-memory sizes, and launches.

It also holds the host side of ``kernels/matmul.cu`` (``matmul``); that of ``kernels/attention.cu``
is in ``cuda_attention.py``. Every public function takes and returns CuPy ``float32`` arrays.
Importing this module never imports CuPy; ``enabled()`` says whether the kernels can be used at all.

The launch arithmetic is written once, in backend-neutral helpers (``_matmul`` here,
``_attention_forward`` and ``_attention_backward`` in ``cuda_attention.py``) that take a
``Backend``. The public functions pass the CuPy backend; ``tests/kernels`` passes NumPy plus the
CPU emulator (``kernels/emu``), so the same grids and arguments are tested without a GPU.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np

# The repository's kernels/ folder: minillm/fast/cuda.py -> parents[2] is the repository root.
KERNEL_DIR = Path(os.environ.get("MINILLM_KERNEL_DIR", Path(__file__).resolve().parents[2] / "kernels"))
# What cupy.RawModule receives. CuPy appends "-ftz=true", the device's "-arch=sm_XX" (or
# "-arch=compute_XX" when its NVRTC predates the GPU) and include paths our header-free files do not
# use; tests/kernels/test_nvrtc.py compiles with exactly that list (nvrtc_options).
_NVRTC_OPTIONS = ("-std=c++17",)
_STATIC_SHARED_LIMIT = 48 * 1024  # bytes of dynamic shared memory a kernel gets without opting in
_ATTR_MAX_SHARED_OPTIN = 97  # cudaDevAttrMaxSharedMemoryPerBlockOptin (driver_types.h)

# Must match kernels/matmul.cu: threads per block and the tile of C one block computes.
_MATMUL_BLOCKS = {  # version: (block dims, (rows of C per block, columns of C per block))
    "naive": ((32, 8, 1), (8, 32)),
    "tiled": ((16, 16, 1), (16, 16)),
    "blocked": ((256, 1, 1), (128, 128)),
    "warptiled": ((256, 1, 1), (128, 128)),
    "double_buffered": ((256, 1, 1), (128, 128)),
}


class Launch(NamedTuple):
    """One kernel launch. ``args`` holds arrays, NumPy scalars (their dtype is the C type) and
    ``None`` for a null pointer."""

    source: str  # file in KERNEL_DIR
    kernel: str  # extern "C" name
    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    shared_mem: int  # bytes of dynamic shared memory
    args: tuple


class Backend(NamedTuple):
    """Where arrays live and how a Launch runs: CuPy + the GPU, or NumPy + the CPU emulator."""

    xp: Any
    empty: Callable  # (shape, dtype) -> array the kernels overwrite completely
    zeros: Callable
    launch: Callable[[Launch], None]
    shared_limit: int  # bytes of dynamic shared memory one block may have (after opting in)


# ---- loading and launching on the GPU ----------------------------------------------------------

_modules: dict[str, Any] = {}
_functions: dict[tuple[str, str], Any] = {}


def enabled() -> bool:
    """True when the kernels can run: CuPy with a CUDA device, and ``MINILLM_KERNELS`` is not ``0``."""
    if os.environ.get("MINILLM_KERNELS", "1") == "0":
        return False
    from minillm.backend import cuda_available

    return cuda_available()


def _cupy():
    try:
        import cupy
    except ImportError as error:  # pragma: no cover - depends on the machine
        raise RuntimeError("minillm.fast.cuda needs CuPy (pip install cupy-cuda12x) and a CUDA GPU") from error
    return cupy


def _function(source: str, name: str, shared_mem: int):
    """The compiled kernel ``name`` from ``source``: compiled on first use, cached afterwards."""
    key = (source, name)
    function = _functions.get(key)
    if function is None:
        module = _modules.get(source)
        if module is None:
            code = (KERNEL_DIR / source).read_text(encoding="utf-8")
            module = _cupy().RawModule(code=code, options=_NVRTC_OPTIONS)
            _modules[source] = module
        function = module.get_function(name)
        _functions[key] = function
    # Past 48 KB a kernel must opt in to more dynamic shared memory (once per size increase).
    if shared_mem > _STATIC_SHARED_LIMIT and function.max_dynamic_shared_size_bytes < shared_mem:
        function.max_dynamic_shared_size_bytes = shared_mem
    return function


def _launch_on_gpu(launch: Launch) -> None:
    function = _function(launch.source, launch.kernel, launch.shared_mem)
    # CuPy turns None into 0xffffffff, not NULL (cupy issue #9046): pass a 64-bit zero instead.
    args = tuple(np.uint64(0) if arg is None else arg for arg in launch.args)
    function(launch.grid, launch.block, args, shared_mem=launch.shared_mem)


_shared_limits: dict[int, int] = {}


def shared_memory_limit() -> int:
    """Bytes of shared memory one block may use on the current device, after opting in.

    48 KB needs no opt-in; past that each kernel opts in (``_function``) up to this limit:
    227 KB on an H100 (sm_90), 163 KB on an A100 (sm_80), 99 KB on sm_86/sm_89 (A10, L4, RTX 30/40),
    64 KB on sm_75 (T4).
    """
    cupy = _cupy()
    device = cupy.cuda.Device().id
    if device not in _shared_limits:
        _shared_limits[device] = int(cupy.cuda.runtime.deviceGetAttribute(_ATTR_MAX_SHARED_OPTIN, device))
    return _shared_limits[device]


def nvrtc_options(arch: str) -> tuple[str, ...]:
    """The options NVRTC gets when CuPy compiles our files for ``arch`` ("sm_90" or "compute_90")."""
    return _NVRTC_OPTIONS + ("-ftz=true", f"-arch={arch}")


def gpu_backend() -> Backend:
    """The Backend of the GPU: CuPy arrays, launches through NVRTC-compiled kernels."""
    cupy = _cupy()
    return Backend(cupy, cupy.empty, cupy.zeros, _launch_on_gpu, shared_memory_limit())


def run(backend: Backend, launch: Launch) -> None:
    """Launch on ``backend``, refusing (with the numbers) a block that wants too much shared memory."""
    if launch.shared_mem > backend.shared_limit:  # the GPU would refuse the launch; say why here
        raise RuntimeError(f"{launch.kernel} needs {launch.shared_mem} bytes of shared memory per block; "
                           f"this device allows {backend.shared_limit}")
    if min(launch.grid) > 0:  # an empty grid means there is nothing to compute
        backend.launch(launch)


# ---- argument checks ----------------------------------------------------------------------------

def check_float32(name: str, array) -> None:
    """Refuse an argument the kernels cannot take: not float32, or not C-contiguous."""
    if array.dtype != np.float32:
        raise TypeError(f"{name} must be float32, got {array.dtype} with shape {tuple(array.shape)}")
    if not array.flags.c_contiguous:
        raise ValueError(
            f"{name} with shape {tuple(array.shape)} and strides {tuple(array.strides)} is not "
            "C-contiguous; pass xp.ascontiguousarray(...) (or use transpose_a/transpose_b for matmul)"
        )


def ceil_div(a: int, b: int) -> int:
    """ceil(a / b) for positive integers: the number of blocks that cover ``a`` items, ``b`` a block."""
    return -(-a // b)


# ---- matmul -------------------------------------------------------------------------------------

def matmul(a, b, transpose_a: bool = False, transpose_b: bool = False, *, version: str = "blocked"):
    """C = op(a) @ op(b) in float32 on the GPU, where op(x) is x or its transpose.

    Args:
        a: (M, K), or (K, M) with ``transpose_a``; optionally with a leading batch dim.
        b: (K, N), or (N, K) with ``transpose_b``; optionally with a leading batch dim. A 2-D
            operand is shared by every matrix of a batched one.
        transpose_a, transpose_b: use the transpose of the stored matrix, without copying it.
            A linear layer y = x W^T needs: y = matmul(x, W, transpose_b=True),
            dx = matmul(dy, W), dW = matmul(dy, x, transpose_a=True).
        version: ``"naive"``, ``"tiled"``, ``"blocked"`` (the default), ``"warptiled"`` or
            ``"double_buffered"``, see kernels/matmul.cu. The default stays ``"blocked"`` until a
            GPU run measures the later versions faster (kernels/README.md has the table).

    Returns:
        C with shape (M, N), or (batch, M, N).
    """
    return _matmul(gpu_backend(), a, b, transpose_a, transpose_b, version)


def _matmul(backend: Backend, a, b, transpose_a: bool, transpose_b: bool, version: str):
    if version not in _MATMUL_BLOCKS:
        raise ValueError(f"unknown matmul version {version!r}; choose from {sorted(_MATMUL_BLOCKS)}")
    check_float32("a", a)
    check_float32("b", b)
    if a.ndim not in (2, 3) or b.ndim not in (2, 3):
        raise ValueError(f"matmul takes 2-D or 3-D (batched) arrays, got a {a.shape} and b {b.shape}")
    M, K = a.shape[-2:][::-1] if transpose_a else a.shape[-2:]
    K_b, N = b.shape[-2:][::-1] if transpose_b else b.shape[-2:]
    if K != K_b:
        raise ValueError(
            f"matmul shapes do not match: op(a) is {M}x{K} (a {a.shape}, transpose_a={transpose_a}) "
            f"but op(b) is {K_b}x{N} (b {b.shape}, transpose_b={transpose_b})"
        )
    batch_a = a.shape[0] if a.ndim == 3 else 1
    batch_b = b.shape[0] if b.ndim == 3 else 1
    if batch_a != batch_b and 1 not in (batch_a, batch_b):
        raise ValueError(f"matmul batch sizes differ: a {a.shape} and b {b.shape}")
    batch = max(batch_a, batch_b)
    batched = a.ndim == 3 or b.ndim == 3
    c = backend.empty((batch, M, N) if batched else (M, N), np.float32)
    if K == 0:
        c[...] = 0
        return c
    block, (rows, cols) = _MATMUL_BLOCKS[version]
    if ceil_div(M, rows) > 65535 or batch > 65535:
        raise ValueError(f"matmul grid too large for M={M}, batch={batch}")
    suffix = ("t" if transpose_a else "n") + ("t" if transpose_b else "n")
    launch = Launch(
        "matmul.cu", f"matmul_{version}_{suffix}",
        grid=(ceil_div(N, cols), ceil_div(M, rows), batch), block=block, shared_mem=0,
        args=(a, b, c, np.int32(M), np.int32(N), np.int32(K),
              np.int64(M * K if batch_a > 1 else 0), np.int64(K * N if batch_b > 1 else 0),
              np.int64(M * N)),
    )
    run(backend, launch)
    return c
