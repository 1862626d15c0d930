"""fast/cuda_ops.py's CudaAttention and CudaLinear on the CPU emulator, against the reference ops.

The op layer decides what the kernels may run (dtypes, masks, shared memory) and gives fully
masked rows the reference's answer; these tests run it with the emulator standing in for the GPU
(``cuda.gpu_backend``, which ``cuda_attention`` calls too, is swapped for the emulator's backend), so
every decision and fix-up is checked without a GPU. The oracle is ``ops.Attention``/``ops.Linear``
themselves, the reference math.
"""
import numpy as np
import pytest

from minillm.fast import cuda, cuda_attention, cuda_ops
from minillm.ops.attention import Attention
from minillm.ops.linalg import Linear
from tests.kernels.reference import assert_close

SM86_LIMIT = 99 * 1024  # cudaDevAttrMaxSharedMemoryPerBlockOptin of an A10 / L4 / RTX 30-40
H100_LIMIT = 227 * 1024


@pytest.fixture
def launches(emulator, monkeypatch):
    """Route the GPU launches of cuda.py and cuda_attention.py to the emulator; returns (set_limit, list
    of kernel names run)."""
    names, limit = [], {"bytes": H100_LIMIT}

    def record(launch):
        names.append(launch.kernel)
        emulator.launch(launch)

    def backend():
        return emulator.backend(limit["bytes"])._replace(launch=record)

    monkeypatch.setattr(cuda, "gpu_backend", backend)  # cuda_attention calls both through cuda
    monkeypatch.setattr(cuda, "shared_memory_limit", lambda: limit["bytes"])

    def set_limit(bytes_):
        limit["bytes"] = bytes_

    return set_limit, names


def run(op_class, arrays, options, grad):
    """forward + backward of one op instance, as Function.apply would run it."""
    op = op_class()
    op.needs_input_grad = (True, True, True, arrays[3] is not None, False)
    out = op.forward(*arrays, **options)
    return op, out, op.backward(grad)


def problem(rng, batch=2, heads=2, q_len=37, k_len=37, head_dim=32, bias=True):
    normal = lambda *shape: rng.standard_normal(shape).astype(np.float32)  # noqa: E731
    q, k, v = normal(batch, heads, q_len, head_dim) * 0.3, normal(batch, heads, k_len, head_dim) * 0.3, \
        normal(batch, heads, k_len, head_dim)
    return q, k, v, (normal(heads, q_len, k_len) if bias else None), normal(batch, heads, q_len, head_dim)


def assert_same_as_reference(arrays, options, grad, expect_kernel=True):
    fused_op, fused_out, fused_grads = run(cuda_ops.CudaAttention, arrays, options, grad)
    _, ref_out, ref_grads = run(Attention, arrays, options, grad)
    assert (fused_op.fused is not None) == expect_kernel
    assert_close(fused_out, ref_out, atol=2e-5, rtol=1e-4, name="out")
    for name, actual, wanted in zip(["dq", "dk", "dv", "dbias"], fused_grads, ref_grads):
        if wanted is None:
            assert actual is None, name
        else:
            assert_close(actual, wanted, atol=1e-4, rtol=1e-3, name=name)


@pytest.mark.parametrize("causal", [False, True], ids=["keys", "causal"])
def test_fully_masked_rows_match_the_reference_mean_of_v(launches, causal):
    """Batch 0 masks every key (non-causal), or its first 5 keys (causal: rows 0-4 see nothing)."""
    rng = np.random.default_rng(0)
    q, k, v, bias, grad = problem(rng)
    keys = rng.random((2, 37)) < 0.7
    keys[1, 0] = True
    keys[0] = False if not causal else np.arange(37) >= 5
    mask = keys[:, None, None, :]
    assert_same_as_reference((q, k, v, bias, mask), dict(causal=causal, scale=1.0), grad)
    # and the definition itself, independently of both implementations: a dead row is mean(V)
    _, out, _ = run(cuda_ops.CudaAttention, (q, k, v, bias, mask), dict(causal=causal, scale=1.0), grad)
    dead_rows = slice(None) if not causal else slice(0, 5)
    assert_close(out[0, :, dead_rows], np.broadcast_to(v[0].mean(axis=1, dtype=np.float64)[:, None],
                                                       out[0, :, dead_rows].shape), atol=1e-6, rtol=1e-5)


def test_an_sm86_gpu_runs_d128_attention_on_the_smaller_tiles(launches):
    set_limit, names = launches
    set_limit(SM86_LIMIT)
    rng = np.random.default_rng(1)
    q, k, v, bias, grad = problem(rng, batch=1, heads=1, q_len=70, k_len=45, head_dim=128)
    assert_same_as_reference((q, k, v, bias, None), dict(causal=False, scale=1.0), grad)
    assert set(names) == {"attention_forward_d128_64x32", "attention_backward_dq_d128_32x32",
                          "attention_backward_dkdv_d128_32x32"}  # the forward's 75 KB fits in 99 KB


def test_when_no_tile_fits_the_op_takes_the_composed_path_without_launching(launches):
    set_limit, names = launches
    set_limit(16 * 1024)
    rng = np.random.default_rng(2)
    q, k, v, bias, grad = problem(rng, head_dim=64)
    assert_same_as_reference((q, k, v, bias, None), dict(causal=False, scale=1.0), grad, expect_kernel=False)
    assert names == []


def test_the_launcher_refuses_a_kernel_larger_than_the_device_allows(emulator):
    q = np.zeros((1, 1, 8, 128), np.float32)
    with pytest.raises(RuntimeError, match="needs at least .* bytes of shared memory"):
        cuda_attention._attention_forward(emulator.backend(16 * 1024), q, q, q, None, None, False, 1.0)


class FakeCupyArray(np.ndarray):
    """A NumPy array that ``is_cupy_array`` takes for a CuPy one (its type's module is cupy.*)."""


FakeCupyArray.__module__ = "cupy._fake"


@pytest.mark.parametrize("dtypes, accepted", [
    (("float32", "float32", None), True),
    (("float64", "float64", None), False),    # a float64 gradient check
    (("float16", "float16", None), False),
    (("float32", "float32", "float64"), False),  # one float64 operand is enough to decline
])
def test_only_float32_cupy_arrays_reach_the_kernels(monkeypatch, dtypes, accepted):
    monkeypatch.setattr(cuda, "enabled", lambda: True)
    x, w, b = (None if d is None else np.zeros((4, 4), d).view(FakeCupyArray) for d in dtypes)
    assert cuda_ops._cuda_float32(x, w, b) is accepted
    numpy_x, numpy_w = np.zeros((4, 4), np.float32), np.zeros((4, 4), np.float32)
    assert cuda_ops._cuda_float32(numpy_x, numpy_w) is False  # NumPy arrays never do


def test_cuda_linear_matches_the_reference_linear(launches):
    rng = np.random.default_rng(3)
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in ((2, 5, 24), (20, 24), (20,)))
    grad = rng.standard_normal((2, 5, 20)).astype(np.float32)
    results = []
    for op_class in (cuda_ops.CudaLinear, Linear):
        op = op_class()
        op.needs_input_grad = (True, True, True)
        results.append((op.forward(x, w, b), *op.backward(grad)))
    for name, actual, wanted in zip(["y", "dx", "dw", "db"], *results):
        assert_close(actual, wanted, atol=1e-5, rtol=1e-4, name=name)
    assert {name[:-3] for name in launches[1]} == {"matmul_blocked"}
