"""A full T5 training step on CuPy (hand-written kernels on) agrees with the same step on NumPy.

GPU-only: skipped without CuPy and a CUDA device.
"""
import numpy as np
import pytest

import minillm
from minillm.models import T5Config, T5ForConditionalGeneration

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("ff", ["relu", "gated-gelu"])
def test_t5_training_step_on_cupy_matches_numpy(ff):
    minillm.manual_seed(0)
    config = T5Config(vocab_size=64, d_model=64, d_kv=32, d_ff=96, num_layers=2, num_heads=2,
                      dropout_rate=0.0, feed_forward_proj=ff)
    cpu = T5ForConditionalGeneration(config)
    gpu = T5ForConditionalGeneration(config)
    gpu.load_state_dict(cpu.state_dict())
    gpu.to("cuda")
    rng = np.random.default_rng(0)
    ids = rng.integers(2, 64, (3, 21))
    mask = np.ones_like(ids)
    mask[1, 15:] = 0
    labels = rng.integers(2, 64, (3, 9))
    labels[2, 6:] = -100
    out_cpu = cpu(input_ids=ids, attention_mask=mask, labels=labels)
    out_gpu = gpu(input_ids=ids, attention_mask=mask, labels=labels)
    out_cpu.loss.backward()
    out_gpu.loss.backward()
    assert abs(out_cpu.loss.item() - out_gpu.loss.item()) < 1e-4 * max(1.0, abs(out_cpu.loss.item()))
    scale = np.abs(out_cpu.logits.numpy()).max()
    assert np.abs(out_cpu.logits.numpy() - out_gpu.logits.numpy()).max() < 1e-4 * scale
    gpu_params = dict(gpu.named_parameters())
    for name, p in cpu.named_parameters():
        g_cpu, g_gpu = p.grad, minillm.to_device(gpu_params[name].grad, "cpu")
        err = np.abs(g_cpu - g_gpu).max() / (np.abs(g_cpu).max() + 1e-12)
        assert err < 1e-3, f"{name}: relative gradient error {err:.2e}"
