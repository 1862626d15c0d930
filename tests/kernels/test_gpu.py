"""The same checks on a real GPU, through CuPy and minillm.fast.cuda / cuda_attention (skipped without
CuPy + a GPU).

GPU-ONLY: these never run in CI. benchmarks/gpu_check.sh runs them whenever a GPU is available.
Tolerances are looser than the emulator's: the GPU's __expf is approximate and FMA order differs.
"""
import numpy as np
import pytest

from minillm.fast import cuda as kernels
from minillm.fast import cuda_attention
from tests.kernels import reference
from tests.kernels.reference import assert_close
from tests.kernels.problems import HEAD_DIMS, make_problem

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def cupy():
    return pytest.importorskip("cupy")


@pytest.mark.parametrize("version", sorted(kernels._MATMUL_BLOCKS))
@pytest.mark.parametrize("transpose_a, transpose_b", [(False, False), (False, True), (True, False), (True, True)])
@pytest.mark.parametrize("m, n, k", [(1, 1, 1), (129, 67, 300), (256, 512, 128), (1000, 999, 77)])
def test_gpu_matmul_matches_float64(cupy, version, transpose_a, transpose_b, m, n, k):
    rng = np.random.default_rng(m + n + k)
    a = rng.uniform(-1, 1, (k, m) if transpose_a else (m, k)).astype(np.float32)
    b = rng.uniform(-1, 1, (n, k) if transpose_b else (k, n)).astype(np.float32)
    c = kernels.matmul(cupy.asarray(a), cupy.asarray(b), transpose_a, transpose_b, version=version)
    expected = (a.T if transpose_a else a).astype(np.float64) @ (b.T if transpose_b else b)
    assert_close(cupy.asnumpy(c), expected, atol=2e-6 * k, rtol=1e-5)


def test_gpu_batched_matmul_broadcasts_a_shared_operand(cupy):
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((3, 50, 70)).astype(np.float32), rng.standard_normal((40, 70)).astype(np.float32)
    y = kernels.matmul(cupy.asarray(x), cupy.asarray(w), transpose_b=True)
    assert_close(cupy.asnumpy(y), x.astype(np.float64) @ w.T, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("head_dim", HEAD_DIMS)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("bias_kind, mask_kind", [("none", "none"), ("shared", "random"),
                                                  ("per_batch", "one_row_fully_masked")])
@pytest.mark.parametrize("q_len, k_len", [(1, 1), (97, 300), (256, 256)])
def test_gpu_attention_forward_and_backward_match_float64(cupy, head_dim, causal, bias_kind, mask_kind, q_len, k_len):
    options = dict(causal=causal, scale=1.0)
    arrays = make_problem(np.random.default_rng(head_dim + q_len), batch=2, heads=3, q_len=q_len, k_len=k_len,
                          head_dim=head_dim, bias_kind=bias_kind, mask_kind=mask_kind)
    q, k, v, grad_out, bias, key_mask = (None if x is None else cupy.asarray(x) for x in arrays)
    out, lse = cuda_attention.attention_forward(q, k, v, bias, key_mask, **options)
    expected_out, expected_lse = reference.attention_forward(arrays[0], arrays[1], arrays[2], arrays[4], arrays[5], **options)
    assert_close(cupy.asnumpy(out), expected_out, atol=1e-4, rtol=1e-3, name="out")
    assert_close(cupy.asnumpy(lse), expected_lse, atol=1e-4, rtol=1e-4, name="lse")
    expected = reference.attention_backward(arrays[0], arrays[1], arrays[2], arrays[3], arrays[4], arrays[5], **options)
    for version in ("two_pass", "fa2"):
        grads = cuda_attention.attention_backward(q, k, v, out, lse, grad_out, bias, key_mask, **options,
                                                  version=version)
        for name, actual, wanted in zip(["dq", "dk", "dv", "dbias"], grads, expected):
            if wanted is not None:
                assert_close(cupy.asnumpy(actual), wanted, atol=5e-4, rtol=5e-3, name=f"{version} {name}")


def test_gpu_modules_are_compiled_once_and_cached(cupy):
    a = cupy.ones((8, 8), cupy.float32)
    kernels.matmul(a, a)
    module = kernels._modules["matmul.cu"]
    kernels.matmul(a, a)
    assert kernels._modules["matmul.cu"] is module
    assert kernels.enabled()


def test_gpu_shared_memory_limit_is_the_devices_opt_in_limit(cupy):
    limit = kernels.shared_memory_limit()
    assert limit >= 48 * 1024
    attributes = cupy.cuda.Device().attributes  # CuPy's own query, by name
    if "MaxSharedMemoryPerBlockOptin" in attributes:
        assert limit == attributes["MaxSharedMemoryPerBlockOptin"]
    for head_dim in HEAD_DIMS:
        assert cuda_attention.attention_fits(head_dim), f"no d{head_dim} tile fits {limit} bytes"


def attention_through_the_op(xp, arrays, causal):
    """out and (dq, dk, dv, dbias) through minillm's public attention, on xp arrays."""
    import minillm

    q, k, v, bias, mask, grad = arrays
    tensors = [minillm.tensor(xp.asarray(x), requires_grad=True) for x in (q, k, v, bias)]
    out = minillm.ops.scaled_dot_product_attention(*tensors, mask=xp.asarray(mask), causal=causal, scale=1.0)
    (out * minillm.tensor(xp.asarray(grad))).sum().backward()
    to_numpy = (lambda a: cupy_module().asnumpy(a)) if xp is not np else (lambda a: a)
    return [to_numpy(out.data)] + [to_numpy(t.grad) for t in tensors]


def cupy_module():
    import cupy

    return cupy


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("causal", [False, True])
def test_gpu_attention_op_matches_numpy_with_fully_masked_rows_in_any_dtype(cupy, dtype, causal):
    """float32 runs the kernels, float64 the composed path on CuPy; both must equal NumPy's reference,
    fully masked rows included (batch 0 sees no key, or causally none before key 6)."""
    q, k, v, grad, bias, _ = make_problem(np.random.default_rng(5), batch=2, heads=2, q_len=40, k_len=40,
                                          head_dim=64, bias_kind="shared", mask_kind="none")
    keys = np.ones((2, 40), bool)
    keys[0] = False if not causal else np.arange(40) >= 6
    arrays = [x.astype(dtype) for x in (q, k, v, bias)] + [keys[:, None, None, :], grad.astype(dtype)]
    on_gpu = attention_through_the_op(cupy, arrays, causal)
    on_cpu = attention_through_the_op(np, arrays, causal)
    tolerance = dict(atol=2e-4, rtol=2e-3) if dtype == np.float32 else dict(atol=1e-9, rtol=1e-9)
    for name, actual, wanted in zip(["out", "dq", "dk", "dv", "dbias"], on_gpu, on_cpu):
        assert actual.dtype == dtype, name
        assert_close(actual, wanted, **tolerance, name=name)
