"""Random attention problems for the kernel tests (emulated and GPU alike).

Kept apart from the hypothesis-driven tests so that the GPU tests import nothing but NumPy and
pytest: the machine they run on may lack hypothesis.
"""
import numpy as np

HEAD_DIMS = [32, 64, 128]


def make_problem(rng, batch, heads, q_len, k_len, head_dim, bias_kind, mask_kind):
    """Random q, k, v, grad_out, bias and key mask as the kernels take them."""
    def normal(*shape, std=1.0):
        return (std * rng.standard_normal(shape)).astype(np.float32)

    q, k = normal(batch, heads, q_len, head_dim, std=0.3), normal(batch, heads, k_len, head_dim, std=0.3)
    v, grad_out = normal(batch, heads, k_len, head_dim), normal(batch, heads, q_len, head_dim)
    bias = {
        "none": None,
        "shared": normal(heads, q_len, k_len),             # T5's relative position bias
        "shared4d": normal(1, heads, q_len, k_len),
        "per_batch": normal(batch, heads, q_len, k_len),
    }[bias_kind]
    key_mask = None
    if mask_kind != "none":
        key_mask = rng.random((batch, k_len)) < 0.7
        if mask_kind == "one_row_fully_masked":
            key_mask[0] = False
    return q, k, v, grad_out, bias, key_mask
