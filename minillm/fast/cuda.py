"""Hand-written CUDA kernels for CuPy arrays: tiled matmul and FlashAttention-style attention.

The CUDA C++ lives in ``kernels/matmul.cu`` and ``kernels/attention.cu`` (read those, and
``kernels/README.md``, for how the kernels work). This module is the host side:

* it compiles each ``.cu`` file once with ``cupy.RawModule`` (NVRTC) and caches the module and its
  functions, so no kernel object is ever built per call;
* it checks shapes, dtypes and contiguity, computes grids and shared-memory sizes, and launches.

Every public function takes and returns CuPy ``float32`` arrays. Importing this module never
imports CuPy; ``enabled()`` says whether the kernels can be used at all.

The launch arithmetic is written once, in backend-neutral helpers (``_matmul``,
``_attention_forward``, ``_attention_backward``) that take a ``_Backend``. The public functions
pass the CuPy backend; ``tests/kernels`` passes NumPy plus the CPU emulator (``kernels/emu``), so the
same grids and arguments are tested without a GPU.
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
# Must match the MINILLM_ATTENTION_KERNELS lines of kernels/attention.cu: head dim -> the
# (BR query rows, BC key rows) tiles compiled, in order of preference (the first that fits runs).
_ATTENTION_TILES = {32: ((64, 64), (32, 32)), 64: ((64, 64), (32, 32)), 128: ((64, 32), (32, 32))}
_ATTENTION_KINDS = ("forward", "backward_dq", "backward_dkdv", "backward_fa2")
_ATTENTION_BACKWARDS = ("two_pass", "fa2")  # see attention_backward
_ATTENTION_THREADS = 128


class Launch(NamedTuple):
    """One kernel launch. ``args`` holds arrays, NumPy scalars (their dtype is the C type) and
    ``None`` for a null pointer."""

    source: str  # file in KERNEL_DIR
    kernel: str  # extern "C" name
    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    shared_mem: int  # bytes of dynamic shared memory
    args: tuple


class _Backend(NamedTuple):
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


def _gpu_backend() -> _Backend:
    cupy = _cupy()
    return _Backend(cupy, cupy.empty, cupy.zeros, _launch_on_gpu, shared_memory_limit())


def _run(backend: _Backend, launch: Launch) -> None:
    if launch.shared_mem > backend.shared_limit:  # the GPU would refuse the launch; say why here
        raise RuntimeError(f"{launch.kernel} needs {launch.shared_mem} bytes of shared memory per block; "
                           f"this device allows {backend.shared_limit}")
    if min(launch.grid) > 0:  # an empty grid means there is nothing to compute
        backend.launch(launch)


# ---- argument checks ----------------------------------------------------------------------------

def _check_float32(name: str, array) -> None:
    if array.dtype != np.float32:
        raise TypeError(f"{name} must be float32, got {array.dtype} with shape {tuple(array.shape)}")
    if not array.flags.c_contiguous:
        raise ValueError(
            f"{name} with shape {tuple(array.shape)} and strides {tuple(array.strides)} is not "
            "C-contiguous; pass xp.ascontiguousarray(...) (or use transpose_a/transpose_b for matmul)"
        )


def _ceil_div(a: int, b: int) -> int:
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
    return _matmul(_gpu_backend(), a, b, transpose_a, transpose_b, version)


def _matmul(backend: _Backend, a, b, transpose_a: bool, transpose_b: bool, version: str):
    if version not in _MATMUL_BLOCKS:
        raise ValueError(f"unknown matmul version {version!r}; choose from {sorted(_MATMUL_BLOCKS)}")
    _check_float32("a", a)
    _check_float32("b", b)
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
    if _ceil_div(M, rows) > 65535 or batch > 65535:
        raise ValueError(f"matmul grid too large for M={M}, batch={batch}")
    suffix = ("t" if transpose_a else "n") + ("t" if transpose_b else "n")
    launch = Launch(
        "matmul.cu", f"matmul_{version}_{suffix}",
        grid=(_ceil_div(N, cols), _ceil_div(M, rows), batch), block=block, shared_mem=0,
        args=(a, b, c, np.int32(M), np.int32(N), np.int32(K),
              np.int64(M * K if batch_a > 1 else 0), np.int64(K * N if batch_b > 1 else 0),
              np.int64(M * N)),
    )
    _run(backend, launch)
    return c


# ---- attention ----------------------------------------------------------------------------------

def _attention_shared_bytes(kind: str, head_dim: int, br: int, bc: int) -> int:
    """Dynamic shared memory of an attention kernel; mirrors attention_smem_floats in attention.cu."""
    ld = head_dim + 4  # rows padded by four floats: aligned float4 reads without bank conflicts
    floats = {
        "forward": br * ld + 2 * bc * ld + br * (bc + 4),              # Q, K, V, P
        "backward_dq": 2 * br * ld + 2 * bc * ld + br * (bc + 4),      # Q, dO, K, V, dS
        "backward_dkdv": 2 * bc * ld + 2 * br * ld + bc * (br + 4) + 2 * br,  # K, V, Q, dO, P^T/dS^T, lse, D
        "backward_fa2": 2 * bc * ld + 2 * br * ld + bc * (br + 4) + 2 * br,   # the same kernel, plus atomic dQ
    }[kind]
    return 4 * floats


def _attention_tile(kind: str, head_dim: int, shared_limit: int):
    """The first (BR, BC) of ``_ATTENTION_TILES[head_dim]`` whose ``kind`` kernel fits, or None."""
    for br, bc in _ATTENTION_TILES[head_dim]:
        if _attention_shared_bytes(kind, head_dim, br, bc) <= shared_limit:
            return br, bc
    return None


def attention_fits(head_dim: int, shared_limit: int | None = None) -> bool:
    """Whether forward and backward kernels exist for ``head_dim`` and fit the device's shared memory.

    When False, callers use the composed (materialized) attention instead; ``fast/cuda_ops.py`` does.
    """
    if head_dim not in _ATTENTION_TILES:
        return False
    limit = shared_memory_limit() if shared_limit is None else shared_limit
    return all(_attention_tile(kind, head_dim, limit) is not None for kind in _ATTENTION_KINDS)


def _attention_launch(backend: _Backend, kind: str, head_dim: int, grid_rows: int, info, args) -> Launch:
    """The launch of one attention kernel, with the largest tile whose shared memory fits."""
    tile = _attention_tile(kind, head_dim, backend.shared_limit)
    if tile is None:
        smallest = min(_attention_shared_bytes(kind, head_dim, *t) for t in _ATTENTION_TILES[head_dim])
        raise RuntimeError(f"attention_{kind} for head_dim {head_dim} needs at least {smallest} bytes of shared "
                           f"memory per block; this device allows {backend.shared_limit} "
                           "(check attention_fits() first, and use the composed attention)")
    br, bc = tile
    rows = bc if kind in ("backward_dkdv", "backward_fa2") else br  # a block covers BC key rows, or BR query rows
    return Launch("attention.cu", f"attention_{kind}_d{head_dim}_{br}x{bc}",
                  grid=(_ceil_div(grid_rows, rows), info.heads, info.batch), block=(_ATTENTION_THREADS, 1, 1),
                  shared_mem=_attention_shared_bytes(kind, head_dim, br, bc), args=args)


class _AttentionArgs(NamedTuple):
    batch: int
    heads: int
    q_len: int
    k_len: int
    head_dim: int
    bias: Any
    bias_batch_stride: np.int64
    key_mask: Any  # uint8 view, or None


def _check_attention(q, k, v, bias, key_mask) -> _AttentionArgs:
    for name, array in (("q", q), ("k", k), ("v", v)):
        _check_float32(name, array)
        if array.ndim != 4:
            raise ValueError(f"{name} must be (batch, heads, length, head_dim), got shape {tuple(array.shape)}")
    batch, heads, q_len, head_dim = q.shape
    k_len = k.shape[2]
    if k.shape != (batch, heads, k_len, head_dim) or v.shape != k.shape:
        raise ValueError(f"q {q.shape}, k {k.shape} and v {v.shape} must agree on batch, heads and head_dim, "
                         "and k and v must have the same shape")
    if head_dim not in _ATTENTION_TILES:
        raise ValueError(f"head_dim {head_dim} is not supported; the kernels exist for {sorted(_ATTENTION_TILES)}")
    stride = np.int64(0)
    if bias is not None:
        _check_float32("bias", bias)
        if tuple(bias.shape) in ((heads, q_len, k_len), (1, heads, q_len, k_len)):
            stride = np.int64(0)  # one bias shared by the whole batch
        elif tuple(bias.shape) == (batch, heads, q_len, k_len):
            stride = np.int64(heads * q_len * k_len)
        else:
            raise ValueError(f"bias has shape {tuple(bias.shape)}; expected (heads, q_len, k_len) = "
                             f"{(heads, q_len, k_len)} or (batch, heads, q_len, k_len) = {(batch, heads, q_len, k_len)}")
    if key_mask is not None:
        if tuple(key_mask.shape) != (batch, k_len):
            raise ValueError(f"key_mask has shape {tuple(key_mask.shape)}; expected (batch, k_len) = {(batch, k_len)}")
        if key_mask.dtype not in (np.bool_, np.uint8, np.int8) or not key_mask.flags.c_contiguous:
            raise TypeError(f"key_mask must be a C-contiguous bool or uint8 array, got {key_mask.dtype}")
        key_mask = key_mask.view(np.uint8)
    return _AttentionArgs(batch, heads, q_len, k_len, head_dim, bias, stride, key_mask)


def attention_forward(q, k, v, bias=None, key_mask=None, causal: bool = False, scale: float = 1.0):
    """Fused attention forward: softmax(scale * q k^T + bias, masked) v, without materializing it.

    Args:
        q: (batch, heads, q_len, head_dim) float32; head_dim is 32, 64 or 128.
        k, v: (batch, heads, k_len, head_dim) float32.
        bias: additive score bias, (heads, q_len, k_len) shared by the batch (T5's relative
            position bias), or (batch, heads, q_len, k_len).
        key_mask: bool (batch, k_len), True = attend (False = padding).
        causal: query i sees keys j <= i (top-left aligned, like torch's ``is_causal``).
        scale: multiplies q k^T. T5 uses 1.0; the usual choice elsewhere is 1/sqrt(head_dim).

    Returns:
        (out, lse): out (batch, heads, q_len, head_dim) and the row logsumexp of the masked scores,
        lse (batch, heads, q_len), which the backward needs. A row that sees no key at all gets
        out = 0 and lse = +inf (so that the backward's exp(s - lse) is 0 there).
    """
    return _attention_forward(_gpu_backend(), q, k, v, bias, key_mask, causal, scale)


def _attention_forward(backend: _Backend, q, k, v, bias, key_mask, causal, scale):
    info = _check_attention(q, k, v, bias, key_mask)
    out = backend.empty(q.shape, np.float32)
    lse = backend.empty(q.shape[:3], np.float32)
    _run(backend, _attention_launch(
        backend, "forward", info.head_dim, info.q_len, info,
        args=(q, k, v, info.bias, info.bias_batch_stride, info.key_mask, out, lse,
              np.int32(info.heads), np.int32(info.q_len), np.int32(info.k_len), np.int32(bool(causal)),
              np.float32(scale)),
    ))
    return out, lse


def attention_backward(q, k, v, out, lse, grad_out, bias=None, key_mask=None, causal: bool = False,
                       scale: float = 1.0, version: str = "two_pass"):
    """Gradients of ``attention_forward``, recomputing the probabilities from ``lse``.

    Args:
        q, k, v, bias, key_mask, causal, scale: exactly as given to ``attention_forward``.
        out, lse: what ``attention_forward`` returned.
        grad_out: dL/d(out), same shape as ``out``.
        version: ``"two_pass"`` (a dQ kernel and a dK/dV kernel, each recomputing S and dP;
            deterministic) or ``"fa2"`` (FlashAttention-2's split: one kernel per key tile, dQ
            through atomics, five tile products instead of seven). The default stays
            ``"two_pass"`` until a GPU run measures ``"fa2"`` faster (kernels/README.md).

    Returns:
        (dq, dk, dv, dbias): dbias is dL/d(bias) summed to the bias's own shape (over the batch
        when the bias is shared by it), or None when there is no bias.
    """
    return _attention_backward(_gpu_backend(), q, k, v, out, lse, grad_out, bias, key_mask, causal, scale,
                               version)


def _attention_backward(backend: _Backend, q, k, v, out, lse, grad_out, bias, key_mask, causal, scale,
                        version: str = "two_pass"):
    if version not in _ATTENTION_BACKWARDS:
        raise ValueError(f"unknown attention backward {version!r}; choose from {_ATTENTION_BACKWARDS}")
    info = _check_attention(q, k, v, bias, key_mask)
    for name, array, shape in (("out", out, q.shape), ("grad_out", grad_out, q.shape), ("lse", lse, q.shape[:3])):
        _check_float32(name, array)
        if tuple(array.shape) != tuple(shape):
            raise ValueError(f"{name} has shape {tuple(array.shape)}; expected {tuple(shape)} (from q {q.shape})")
    dk = backend.empty(k.shape, np.float32)
    dv = backend.empty(v.shape, np.float32)
    dbias = backend.zeros(bias.shape, np.float32) if bias is not None else None  # only visible entries are written
    common = (np.int32(info.heads), np.int32(info.q_len), np.int32(info.k_len), np.int32(bool(causal)),
              np.float32(scale))
    if version == "fa2":
        # D_i = dO_i · O_i up front (FlashAttention-2's preprocessing step, here one array op), then
        # one kernel per key tile writes dK, dV and dbias and adds into the zeroed dQ.
        delta = backend.xp.ascontiguousarray((grad_out * out).sum(axis=-1, dtype=np.float32))
        dq = backend.zeros(q.shape, np.float32)
        _run(backend, _attention_launch(
            backend, "backward_fa2", info.head_dim, info.k_len, info,
            args=(q, k, v, info.bias, info.bias_batch_stride, info.key_mask, grad_out, lse, delta, dk, dv, dq,
                  dbias) + common,
        ))
        return dq, dk, dv, dbias
    # dq first: it also writes delta (D_i = rowsum(dO * O)), which dkdv reads.
    delta = backend.empty(q.shape[:3], np.float32)
    dq = backend.empty(q.shape, np.float32)
    _run(backend, _attention_launch(
        backend, "backward_dq", info.head_dim, info.q_len, info,
        args=(q, k, v, info.bias, info.bias_batch_stride, info.key_mask, out, grad_out, lse, delta, dq, dbias)
        + common,
    ))
    _run(backend, _attention_launch(
        backend, "backward_dkdv", info.head_dim, info.k_len, info,
        args=(q, k, v, info.bias, info.bias_batch_stride, info.key_mask, grad_out, lse, delta, dk, dv) + common,
    ))
    return dq, dk, dv, dbias
