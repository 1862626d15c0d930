"""Properties of LoRA and the other PEFT methods, checked over random shapes, ranks, alphas and seeds.

s is LoRA's scaling (alpha / r, or alpha / sqrt(r) with rsLoRA). The math is compared in float64,
where minillm keeps float64 arrays as float64. Every oracle is computed here, in NumPy, never by
the code under test: s, the gradient G = dL/dW of the loss (by hand: G = Rᵀx for L = ⟨R, y⟩), the
float32 rounding bounds, the exact set of parameters each method trains, and the Eckart–Young
residual a rank-r update cannot go below.

Planted bugs and the tests that catch them (see docs/testing.md): alpha / (r + 1) in
``lora_scaling`` fails a, b, d, e and f; a B initialised to 1e-6 fails c; a linear weight gradient
off by any factor fails d; a merge off by 1e-4 relative fails b; an unfrozen base parameter (or one
adapter parameter left frozen) fails g; a frozen A fails f; an adapter without its up bias fails h;
a 1e-4 error when loading fails i.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minillm
from minillm.models import T5Config, T5ForConditionalGeneration
from minillm.nn import Linear, Parameter
from minillm.optim import SGD, Adam, AdamW
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


def gamma(n):
    """γ_n = n u / (1 - n u): the relative error bound of n float32 roundings in a row (Higham, 3.1)."""
    u = np.finfo(np.float32).eps / 2
    return n * u / (1 - n * u)


@SETTINGS
@given(d_in=dims, d_out=dims, r=st.integers(1, 6), alpha=st.floats(0.5, 64), rslora=st.booleans(),
       seed=st.integers(0, 2**16))
def test_b_merge_then_unmerge_restores_W_and_merged_outputs_agree(d_in, d_out, r, alpha, rslora, seed):
    layer, s, rng = lora_layer(d_in, d_out, r, alpha, rslora, seed, dtype=np.float32)
    W, A, B = (a.astype(np.float64) for a in parts(layer))
    x32 = rng.standard_normal((2, d_in)).astype(np.float32)
    x = x32.astype(np.float64)
    exact_W = W + s * B @ A                           # float64: exact to ~1e-16, the "true" merged weight
    exact_y = x @ exact_W.T
    abs_BA = np.abs(B) @ np.abs(A)
    # Float32 rounding of each computation, from the forward error bound of a chain of n roundings:
    # |fl(f) - f| <= γ_n · (f evaluated on absolute values). Merge: B A (r products summed), × s
    # (s itself rounded to float32), + W: n = r + 3. The outputs: x Wᵀ and s (x Aᵀ) Bᵀ, summed,
    # or x W'ᵀ with the merged W': n = d_in + r + 4 covers either order.
    merge_bound = gamma(r + 3) * (np.abs(W) + s * abs_BA)
    output_bound = gamma(d_in + r + 4) * (np.abs(x) @ (np.abs(W) + s * abs_BA).T)
    unmerged = layer(minillm.Tensor(x32)).data
    assert np.all(np.abs(unmerged - exact_y) <= output_bound)
    layer.merge()
    assert np.all(np.abs(layer.base_layer.weight.data - exact_W) <= merge_bound)
    merged = layer(minillm.Tensor(x32)).data
    assert np.all(np.abs(merged - exact_y) <= output_bound)
    layer.unmerge()
    # W + D - D: the unmerge adds the two roundings of D's computation and one of the subtraction
    assert np.all(np.abs(layer.base_layer.weight.data - W) <= 2 * merge_bound + gamma(1) * np.abs(W))


@settings(max_examples=8, deadline=None)
@given(targets=st.lists(st.sampled_from(["q", "k", "v", "o", "wi", "wo"]), min_size=1, unique=True),
       r=st.integers(1, 8), alpha=st.floats(1, 64), seed=st.integers(0, 100))
def test_c_at_initialization_a_lora_model_equals_the_base_bit_for_bit(targets, r, alpha, seed):
    model = tiny_t5(seed)
    b = batch(seed)
    before = model(**b).logits.data.copy()
    peft = get_peft_model(model, LoraConfig(r=r, lora_alpha=alpha, target_modules=targets))
    assert np.array_equal(peft(**b).logits.data, before)  # B = 0: W x + s (x A^T) 0 is W x exactly


@pytest.mark.parametrize("fast", [False, True], ids=["reference", "fast"])
@SETTINGS
@given(d_in=dims, d_out=dims, r=st.integers(1, 6), alpha=st.floats(0.5, 64), rslora=st.booleans(),
       seed=st.integers(0, 2**16))
def test_d_lora_gradients_are_the_full_gradient_projected(fast, d_in, d_out, r, alpha, rslora, seed):
    layer, s, rng = lora_layer(d_in, d_out, r, alpha, rslora, seed)
    W, A, B = parts(layer)
    x, R = rng.standard_normal((4, d_in)), rng.standard_normal((4, d_out))
    with minillm.fast_paths(fast):  # the reference formulas, and whatever fast kernels are registered
        (layer(minillm.Tensor(x)) * minillm.Tensor(R)).sum().backward()  # L = ⟨R, y⟩ = sum(y * R)
    # G = dL/dW by hand: y = x Wᵀ, so L = Σ_nij R_ni W_ij x_nj and dL/dW_ij = Σ_n R_ni x_nj = (Rᵀ x)_ij.
    G = R.T @ x
    np.testing.assert_allclose(layer.lora_B["default"].weight.grad, s * G @ A.T, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(layer.lora_A["default"].weight.grad, s * B.T @ G, rtol=1e-9, atol=1e-9)
    assert layer.base_layer.weight.grad is None  # W is frozen


@settings(max_examples=4, deadline=None)
@given(r=st.integers(1, 4), alpha=st.floats(1, 16), seed=st.integers(0, 100))
def test_d_in_a_whole_model_lora_gradients_are_the_plain_models_gradient_at_the_merged_weight_projected(r, alpha,
                                                                                                   seed):
    # The same property through a whole T5: the gradient G of the plain model at W + s B A,
    # projected, is the LoRA gradient, for every target layer at once.
    targets = ["q", "v", "wo"]
    peft = get_peft_model(tiny_t5(seed, dtype=np.float64), LoraConfig(r=r, lora_alpha=alpha, target_modules=targets))
    rng = np.random.default_rng(seed)
    for name, p in peft.named_parameters():
        if "lora_B" in name:
            p.data = rng.standard_normal(p.shape) * 0.1
    b = batch(seed)
    peft(**b).loss.backward()
    s = alpha / r
    plain = tiny_t5(seed, dtype=np.float64)
    layers = {name: m for name, m in peft.base_model.named_modules() if isinstance(m, LoraLinear)}
    assert len(layers) == 6 + 6 + 4  # q and v in 6 attentions, wo in 4 feed-forwards
    plain_weights = dict(plain.named_parameters())
    for name, layer in layers.items():
        A, B = layer.lora_A["default"].weight.data, layer.lora_B["default"].weight.data
        plain_weights[name + ".weight"].data = layer.base_layer.weight.data + s * B @ A
    plain(**b).loss.backward()
    for name, layer in layers.items():
        G = plain_weights[name + ".weight"].grad
        A, B = layer.lora_A["default"].weight.data, layer.lora_B["default"].weight.data
        np.testing.assert_allclose(layer.lora_B["default"].weight.grad, s * G @ A.T, rtol=1e-8, atol=1e-12,
                                   err_msg=name)
        np.testing.assert_allclose(layer.lora_A["default"].weight.grad, s * B.T @ G, rtol=1e-8, atol=1e-12,
                                   err_msg=name)


@st.composite
def low_rank_shapes(draw):
    """(d_in, d_out, r) with r < min(d_in, d_out): only there does "rank at most r" say anything."""
    d_in, d_out = draw(st.integers(2, 10)), draw(st.integers(2, 10))
    return d_in, d_out, draw(st.integers(1, min(d_in, d_out) - 1))


@SETTINGS
@given(shape=low_rank_shapes(), alpha=st.floats(0.5, 64), rslora=st.booleans(), lr=st.floats(1e-3, 1.0),
       seed=st.integers(0, 2**16))
def test_e_one_sgd_step_from_B0_moves_W_by_minus_lr_s2_G_AtA_of_rank_at_most_r(shape, alpha, rslora, lr, seed):
    d_in, d_out, r = shape
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
    # rank(delta) <= r < min(d_in, d_out): a full-rank update is out of reach in one step
    assert np.linalg.matrix_rank(delta, tol=1e-8 * max(1.0, np.abs(delta).max())) <= r


@SETTINGS
@given(d_in=dims, d_out=dims, alpha=st.floats(0.5, 64), seed=st.integers(0, 2**16))
def test_f_full_rank_lora_can_represent_any_update_exactly(d_in, d_out, alpha, seed):
    r = min(d_in, d_out)
    layer, s, rng = lora_layer(d_in, d_out, r, alpha, False, seed)
    W = layer.base_layer.weight.data.copy()
    delta = rng.standard_normal((d_out, d_in))  # any full update
    U, S, Vt = np.linalg.svd(delta, full_matrices=False)  # delta = U diag(S) Vt, inner size r
    layer.lora_B["default"].weight.data = U * S / s  # B = U S / s, A = Vt: s B A = delta
    layer.lora_A["default"].weight.data = Vt
    layer.merge()
    np.testing.assert_allclose(layer.base_layer.weight.data, W + delta, rtol=1e-10, atol=1e-10)


def fit_lora(r, target, seed, steps=600, lr=0.05):
    """Train a rank-r LoRA (B = 0 at the start) by Adam on L = ||y(I) - (W + target)ᵀ||², the squared
    distance of the effective weight to W + target; return the residual ||W_eff - W - target||_F."""
    d_out, d_in = target.shape
    layer, _, rng = lora_layer(d_in, d_out, r, float(r), False, seed)
    layer.lora_B["default"].weight.data[...] = 0.0
    layer.lora_A["default"].weight.data /= np.sqrt(d_in)
    W = layer.base_layer.weight.data.copy()
    eye, goal = minillm.Tensor(np.eye(d_in)), minillm.Tensor((W + target).T)
    opt = Adam([p for p in layer.parameters() if p.requires_grad], lr=lr)
    for _ in range(steps):
        diff = layer(eye) - goal
        (diff * diff).sum().backward()
        opt.step()
        opt.zero_grad()
    effective = layer(eye).data.T  # (d_out, d_in): read from the outputs, whatever s the code uses
    return np.linalg.norm(effective - W - target)


@pytest.mark.parametrize("d_in, d_out, seed", [(6, 5, 0), (4, 7, 1)])
def test_f_gradient_descent_on_a_full_rank_lora_reaches_an_update_no_lower_rank_can(d_in, d_out, seed):
    # Eckart–Young: the closest rank-r matrix to the target leaves the residual
    # sqrt(σ_{r+1}² + ... + σ_full²), so no training of a rank-r < full LoRA gets below it.
    # Full-rank LoRA, trained from B = 0 like any LoRA, must reach the target itself.
    full = min(d_in, d_out)
    rng = np.random.default_rng(100 + seed)
    U = np.linalg.qr(rng.standard_normal((d_out, full)))[0]
    V = np.linalg.qr(rng.standard_normal((d_in, full)))[0]
    sigma = np.linspace(3.0, 1.0, full)  # well-separated singular values: every rank leaves a real gap
    target = U @ np.diag(sigma) @ V.T
    residuals = {r: fit_lora(r, target, seed) for r in range(1, full + 1)}
    report = ", ".join(f"r={r}: {res:.3g} (bound {np.sqrt((sigma[r:] ** 2).sum()):.4g})" for r, res in residuals.items())
    print(f"\n||target|| = {np.linalg.norm(target):.4f}; residual by rank: {report}")
    assert residuals[full] < 1e-6 * np.linalg.norm(target)
    for r in range(1, full):
        bound = np.sqrt((sigma[r:] ** 2).sum())
        assert residuals[r] >= bound * (1 - 1e-9)      # provably: no rank-r matrix does better
        assert residuals[r] <= bound * (1 + 1e-4)      # and the same training reaches the best rank r


METHODS = {
    "lora": lambda: LoraConfig(r=2, lora_alpha=4, target_modules=["q", "v", "wi"]),
    "adapter": lambda: AdapterConfig(adapter_size=3, positions=["attention", "cross_attention", "ffn"]),
    "prompt": lambda: PromptTuningConfig(num_virtual_tokens=3),
    "selective": lambda: SelectiveConfig(patterns=["layer_norm"], last_n_decoder_blocks=1),
}


# The parameters each method of METHODS trains, named independently of the code: (pattern, count).
# Base names are the plain model's; the base parameters that remain are all others.
OWN_PARAMETERS = {
    # q and v in 6 attentions (2 encoder self, 2 decoder self, 2 cross), wi in 4 feed-forwards; A and B each
    "lora": (r"\.(q|v|wi)\.lora_[AB]\.default\.weight$", 2 * (6 + 6 + 4)),
    # adapters after 4 self-attentions, 2 cross-attentions and 4 feed-forwards; down/up weight and bias
    "adapter": (r"\.adapter\.default\.(down|up)\.(weight|bias)$", 4 * (4 + 2 + 4)),
    "prompt": (r"^prompt_encoder\.default\.embedding\.weight$", 1),
    # every layer norm (4 + 1 in the encoder, 6 + 1 in the decoder) and all 13 weights of the
    # last decoder block (q k v o, norm, q k v o, norm, wi wo, norm), its 3 norms counted once
    "selective": (r"(layer_norm\.weight$)|(^base_model\.decoder\.block\.1\.)", 5 + 7 + 13 - 3),
}
BASE_PARAMETERS = 47  # tiny_t5: shared embedding (tied lm_head), 2 relative biases, 44 block/final weights


@pytest.mark.parametrize("method", METHODS)
def test_g_a_method_trains_exactly_its_own_parameters_and_leaves_every_other_bitwise_unchanged(method):
    import re
    pattern, count = OWN_PARAMETERS[method]
    model = tiny_t5()
    before = {n: p.data.copy() for n, p in model.named_parameters()}
    assert len(before) == BASE_PARAMETERS
    peft = get_peft_model(model, METHODS[method]())
    named = dict(peft.named_parameters())
    own = {n for n in named if re.search(pattern, n)}
    assert len(own) == count
    assert {n for n, p in named.items() if p.requires_grad} == own  # trainable: exactly the method's own
    start = {n: named[n].data.copy() for n in own}
    # Hand the optimizer every parameter: requires_grad alone must keep the base out of training.
    opt = AdamW(peft.parameters(), lr=1e-2, weight_decay=0.1)
    for step in range(3):
        peft(**batch(step)).loss.backward()
        opt.step()
        opt.zero_grad()
    checked = 0
    for name, p in named.items():
        if name in own:
            continue
        # Base names inside a PeftModel: "base_model." in front; LoRA and adapters wrap as ".base_layer".
        original = name.removeprefix("base_model.").replace(".base_layer", "")
        assert np.array_equal(p.data, before[original]), f"{name} changed"
        checked += 1
    # Every base parameter is checked except those the method itself trains (selective's own).
    assert checked == BASE_PARAMETERS - (count if method == "selective" else 0)
    assert all(not np.array_equal(named[n].data, start[n]) for n in own)  # and they did train


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
