"""The host side of minillm.fast.cuda and cuda_attention without a GPU: lazy import, enabled(), and clear
argument errors."""
import subprocess
import sys

import numpy as np
import pytest

from minillm.fast import cuda as kernels
from minillm.fast import cuda_attention


def never_launch(launch):
    raise AssertionError(f"{launch.kernel} should not have been launched")


NUMPY_BACKEND = kernels.Backend(np, np.empty, np.zeros, never_launch, shared_limit=227 * 1024)


def f32(*shape):
    return np.zeros(shape, np.float32)


def test_importing_the_module_does_not_import_cupy():
    code = "import sys, minillm.fast.cuda, minillm.fast.cuda_attention; assert 'cupy' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_kernels_are_disabled_by_the_environment_variable(monkeypatch):
    monkeypatch.setenv("MINILLM_KERNELS", "0")
    assert kernels.enabled() is False


def test_kernels_are_disabled_without_cupy():
    try:
        import cupy  # noqa: F401
    except ImportError:
        assert kernels.enabled() is False
    else:
        pytest.skip("cupy is installed")


def test_matmul_names_both_shapes_when_inner_dims_differ():
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(5, 6\)"):
        kernels._matmul(NUMPY_BACKEND, f32(3, 4), f32(5, 6), False, False, "blocked")


def test_matmul_rejects_float64_and_non_contiguous_inputs():
    with pytest.raises(TypeError, match="float32"):
        kernels._matmul(NUMPY_BACKEND, np.zeros((2, 2)), f32(2, 2), False, False, "blocked")
    with pytest.raises(ValueError, match="C-contiguous"):
        kernels._matmul(NUMPY_BACKEND, f32(4, 3).T, f32(4, 2), False, False, "blocked")


def test_matmul_with_empty_inner_dimension_is_zeros_without_a_launch():
    c = kernels._matmul(NUMPY_BACKEND, f32(3, 0), f32(0, 5), False, False, "blocked")
    assert c.shape == (3, 5) and (c == 0).all()
    assert kernels._matmul(NUMPY_BACKEND, f32(0, 4), f32(4, 5), False, False, "naive").shape == (0, 5)


def test_attention_rejects_unsupported_head_dims_and_mismatched_shapes():
    with pytest.raises(ValueError, match="head_dim 48"):
        cuda_attention._attention_forward(NUMPY_BACKEND, f32(1, 1, 4, 48), f32(1, 1, 4, 48), f32(1, 1, 4, 48),
                                          None, None, False, 1.0)
    with pytest.raises(ValueError, match=r"k \(1, 2, 4, 32\)"):
        cuda_attention._attention_forward(NUMPY_BACKEND, f32(1, 1, 4, 32), f32(1, 2, 4, 32), f32(1, 2, 4, 32),
                                          None, None, False, 1.0)


def test_attention_names_the_expected_bias_and_mask_shapes():
    q = f32(2, 3, 4, 32)
    k = f32(2, 3, 5, 32)
    with pytest.raises(ValueError, match=r"\(3, 4, 5\)"):
        cuda_attention._attention_forward(NUMPY_BACKEND, q, k, k, f32(3, 5, 4), None, False, 1.0)
    with pytest.raises(ValueError, match=r"\(2, 5\)"):
        cuda_attention._attention_forward(NUMPY_BACKEND, q, k, k, None, np.ones((2, 4), bool), False, 1.0)
    with pytest.raises(ValueError, match="grad_out"):
        cuda_attention._attention_backward(NUMPY_BACKEND, q, k, k, f32(2, 3, 4, 32), f32(2, 3, 4),
                                           f32(2, 3, 4, 16), None, None, False, 1.0)


def test_the_launcher_finds_the_kernel_sources():
    """KERNEL_DIR must point at the repository's kernels/ folder (the GPU reads the .cu from there)."""
    for source in ("matmul.cu", "attention.cu"):
        assert (kernels.KERNEL_DIR / source).is_file(), f"{kernels.KERNEL_DIR / source} is missing"
