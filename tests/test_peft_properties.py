"""Properties of LoRA and the other PEFT methods, checked over random shapes, ranks, alphas and seeds.

s is LoRA's scaling (alpha / r, or alpha / sqrt(r) with rsLoRA). The math is compared in float64,
where minillm keeps float64 arrays as float64. s is computed by the tests themselves, so each test
fails when the code's formula is broken: using alpha / (r + 1) in ``lora_scaling`` fails a, b, d, e
and f; a B initialised to 1e-6 fails c; an unfrozen base fails g; a 1e-4 error when loading fails i;
an adapter without its up bias fails h.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minillm
from minillm.models import T5Config, T5ForConditionalGeneration
from minillm.nn import Linear, Parameter
from minillm.optim import SGD, AdamW
from minillm.peft import (AdapterConfig, LoraConfig, LoraLinear, PeftModel, PromptTuningConfig,
                          SelectiveConfig, get_peft_model)

SETTINGS = settings(max_examples=25, deadline=None)
dims = st.integers(1, 10)


def lora_layer(d_in, d_out, r, alpha, rslora, seed, dtype=np.float64):
    """A LoraLinear around a random (d_out, d_in) Linear, with a random nonzero B."""
    rng = np.random.default_rng(seed)
    base = Linear(d_in, d_out, bias=False)
    base.weight = Parameter(rng.standard_normal((d_out, d_in)).astype(dtype), requires_grad=False)
    layer = LoraLinear(base)
    config = LoraConfig(r=r, lora_alpha=alpha, use_rslora=rslora)
    layer.update_layer("default", config)
    layer.active_adapter = "default"
    layer.lora_A["default"].weight.data = rng.standard_normal((r, d_in)).astype(dtype)
    layer.lora_B["default"].weight.data = rng.standard_normal((d_out, r)).astype(dtype)
    s = alpha / (np.sqrt(r) if rslora else r)  # the scaling, computed here, not by the code under test
    return layer, s, rng


def parts(layer):
    return (layer.base_layer.weight.data.copy(), layer.lora_A["default"].weight.data.copy(),
            layer.lora_B["default"].weight.data.copy())


def tiny_t5(seed=0, dtype=np.float32):
    minillm.manual_seed(seed)
    config = T5Config(vocab_size=40, d_model=16, d_kv=4, d_ff=24, num_layers=2, num_heads=4, dropout_rate=0.0)
    return T5ForConditionalGeneration(config).to(dtype=dtype).eval()


def batch(seed=0, n=2):
    rng = np.random.default_rng(seed)
    ids = rng.integers(3, 40, size=(n, 6))
    ids[:, -1] = 1
    labels = rng.integers(3, 40, size=(n, 4))
    return {"input_ids": ids, "attention_mask": np.ones_like(ids), "labels": labels}


@SETTINGS
@given(d_in=dims, d_out=dims, r=st.integers(1, 6), alpha=st.floats(0.5, 64), rslora=st.booleans(),
       n=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_a_lora_forward_equals_the_dense_layer_with_weight_W_plus_sBA(d_in, d_out, r, alpha, rslora, n, seed):
    layer, s, rng = lora_layer(d_in, d_out, r, alpha, rslora, seed)
    W, A, B = parts(layer)
    x = rng.standard_normal((n, 3, d_in))
    y = layer(minillm.Tensor(x)).data
    np.testing.assert_allclose(y, x @ (W + s * B @ A).T, rtol=1e-10, atol=1e-10)


@SETTINGS
@given(d_in=dims, d_out=dims, r=st.integers(1, 6), alpha=st.floats(0.5, 64), rslora=st.booleans(),
       seed=st.integers(0, 2**16))
def test_b_merge_then_unmerge_restores_W_and_merged_outputs_agree(d_in, d_out, r, alpha, rslora, seed):
    layer, s, rng = lora_layer(d_in, d_out, r, alpha, rslora, seed, dtype=np.float32)
    W, A, B = parts(layer)
    x = minillm.Tensor(rng.standard_normal((2, d_in)).astype(np.float32))
    unmerged = layer(x).data
    layer.merge()
    np.testing.assert_allclose(layer.base_layer.weight.data, W + s * B @ A, rtol=1e-5, atol=1e-5 * s)
    merged = layer(x).data
    layer.unmerge()
    # W + D - D, each op rounded once in float32: off by at most a few ulps of |W| + |D|
    ulp = np.finfo(np.float32).eps * (np.abs(W) + np.abs(s * B @ A))
    assert np.all(np.abs(layer.base_layer.weight.data - W) <= 2 * ulp)
    scale = np.abs(unmerged).max() + 1
    np.testing.assert_allclose(merged, unmerged, atol=1e-5 * scale * max(s, 1) * r)


@settings(max_examples=8, deadline=None)
@given(targets=st.lists(st.sampled_from(["q", "k", "v", "o", "wi", "wo"]), min_size=1, unique=True),
       r=st.integers(1, 8), alpha=st.floats(1, 64), seed=st.integers(0, 100))
def test_c_at_initialization_a_lora_model_equals_the_base_bit_for_bit(targets, r, alpha, seed):
    model = tiny_t5(seed)
    b = batch(seed)
    before = model(**b).logits.data.copy()
    peft = get_peft_model(model, LoraConfig(r=r, lora_alpha=alpha, target_modules=targets))
    assert np.array_equal(peft(**b).logits.data, before)  # B = 0: W x + s (x A^T) 0 is W x exactly


@SETTINGS
@given(d_in=dims, d_out=dims, r=st.integers(1, 6), alpha=st.floats(0.5, 64), rslora=st.booleans(),
       seed=st.integers(0, 2**16))
def test_d_lora_gradients_are_the_full_gradient_projected(d_in, d_out, r, alpha, rslora, seed):
    layer, s, rng = lora_layer(d_in, d_out, r, alpha, rslora, seed)
    W, A, B = parts(layer)
    x, R = rng.standard_normal((4, d_in)), rng.standard_normal((4, d_out))
    (layer(minillm.Tensor(x)) * minillm.Tensor(R)).sum().backward()  # L = sum(y * R)
    # G = dL/dW of the same loss for a dense layer at the merged weight W + s B A
    dense = Parameter(W + s * B @ A)
    (minillm.ops.linear(minillm.Tensor(x), dense) * minillm.Tensor(R)).sum().backward()
    G = dense.grad
    np.testing.assert_allclose(layer.lora_B["default"].weight.grad, s * G @ A.T, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(layer.lora_A["default"].weight.grad, s * B.T @ G, rtol=1e-9, atol=1e-9)
    assert layer.base_layer.weight.grad is None  # W is frozen


@SETTINGS
@given(d_in=dims, d_out=dims, r=st.integers(1, 6), alpha=st.floats(0.5, 64), rslora=st.booleans(),
       lr=st.floats(1e-3, 1.0), seed=st.integers(0, 2**16))
def test_e_one_sgd_step_from_B0_moves_W_by_minus_lr_s2_G_AtA_of_rank_at_most_r(d_in, d_out, r, alpha,
                                                                             rslora, lr, seed):
    layer, s, rng = lora_layer(d_in, d_out, r, alpha, rslora, seed)
    layer.lora_B["default"].weight.data[...] = 0.0
    W, A, _ = parts(layer)
    x, R = rng.standard_normal((4, d_in)), rng.standard_normal((4, d_out))
    G = R.T @ x  # dL/dW for L = sum((x W^T) * R) at W (= the merged weight, since B = 0)
    (layer(minillm.Tensor(x)) * minillm.Tensor(R)).sum().backward()
    SGD(layer.parameters(), lr=lr).step()
    W2, A2, B2 = parts(layer)
    delta = (W2 + s * B2 @ A2) - W
    np.testing.assert_allclose(delta, -lr * s**2 * G @ A.T @ A, rtol=1e-9, atol=1e-9)
    assert np.linalg.matrix_rank(delta, tol=1e-8) <= r


@SETTINGS
@given(d_in=dims, d_out=dims, alpha=st.floats(0.5, 64), seed=st.integers(0, 2**16))
def test_f_full_rank_lora_can_represent_any_update(d_in, d_out, alpha, seed):
    r = min(d_in, d_out)
    layer, s, rng = lora_layer(d_in, d_out, r, alpha, False, seed)
    W = layer.base_layer.weight.data.copy()
    delta = rng.standard_normal((d_out, d_in))  # any full update
    U, S, Vt = np.linalg.svd(delta, full_matrices=False)  # delta = U diag(S) Vt, inner size r
    layer.lora_B["default"].weight.data = U * S / s  # B = U S / s, A = Vt: s B A = delta
    layer.lora_A["default"].weight.data = Vt
    layer.merge()
    np.testing.assert_allclose(layer.base_layer.weight.data, W + delta, rtol=1e-10, atol=1e-10)


METHODS = {
    "lora": lambda: LoraConfig(r=2, lora_alpha=4, target_modules=["q", "v", "wi"]),
    "adapter": lambda: AdapterConfig(adapter_size=3, positions=["attention", "cross_attention", "ffn"]),
    "prompt": lambda: PromptTuningConfig(num_virtual_tokens=3),
    "selective": lambda: SelectiveConfig(patterns=["layer_norm"], last_n_decoder_blocks=1),
}


@pytest.mark.parametrize("method", METHODS)
def test_g_training_with_any_method_leaves_every_frozen_base_parameter_bitwise_unchanged(method):
    model = tiny_t5()
    before = {n: p.data.copy() for n, p in model.named_parameters()}
    peft = get_peft_model(model, METHODS[method]())
    trainable = [p for p in peft.parameters() if p.requires_grad]
    start = [p.data.copy() for p in trainable]
    opt = AdamW(trainable, lr=1e-2, weight_decay=0.1)
    for step in range(3):
        loss = peft(**batch(step)).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    ids = {id(p) for p in trainable}
    checked = 0
    for name, p in model.named_parameters():
        original = name.replace(".base_layer", "")  # LoRA/adapter wrappers rename base weights
        if id(p) not in ids and original in before:
            assert np.array_equal(p.data, before[original]), name
            checked += 1
    assert checked > 0
    assert all(not np.array_equal(p.data, s) for p, s in zip(trainable, start))  # they did train


@settings(max_examples=10, deadline=None)
@given(r=st.integers(1, 8), m=st.integers(1, 8), n=st.integers(1, 10),
       targets=st.lists(st.sampled_from(["q", "k", "v", "o", "wi", "wo"]), min_size=1, unique=True))
def test_h_trainable_counts_follow_the_formulas(r, m, n, targets):
    d = 16
    d_in_plus_out = {"q": 32, "k": 32, "v": 32, "o": 32, "wi": 16 + 24, "wo": 24 + 16}
    # 2 encoder blocks x 1 attention + 2 decoder blocks x 2 (self, cross); 4 feed-forwards
    copies = {"q": 6, "k": 6, "v": 6, "o": 6, "wi": 4, "wo": 4}
    lora = get_peft_model(tiny_t5(), LoraConfig(r=r, target_modules=targets))
    expected = sum(copies[t] * r * d_in_plus_out[t] for t in targets)  # r (d_in + d_out) per matrix
    assert lora.get_nb_trainable_parameters()[0] == expected
    adapter = get_peft_model(tiny_t5(), AdapterConfig(adapter_size=m))
    sites = 2 * 2 + 2 * 2  # (attention, ffn) x 2 blocks x (encoder, decoder)
    assert adapter.get_nb_trainable_parameters()[0] == sites * (2 * d * m + d + m)
    prompt = get_peft_model(tiny_t5(), PromptTuningConfig(num_virtual_tokens=n))
    assert prompt.get_nb_trainable_parameters()[0] == n * d


@pytest.mark.parametrize("method", METHODS)
def test_i_save_and_load_round_trip_reproduces_outputs_exactly(tmp_path, method):
    peft = get_peft_model(tiny_t5(), METHODS[method]())
    rng = np.random.default_rng(0)
    for p in peft.parameters():  # move every trainable value away from its initialisation
        if p.requires_grad:
            p.data = p.data + rng.standard_normal(p.shape).astype(p.dtype) * 0.1
    b = batch(1)
    expected = peft(**b).logits.data
    peft.save_pretrained(tmp_path)
    loaded = PeftModel.from_pretrained(tiny_t5(), tmp_path)
    assert np.array_equal(loaded(**b).logits.data, expected)
