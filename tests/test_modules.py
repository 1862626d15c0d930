"""Specification of the Module system (nn/module.py) and the basic layers (nn/layers.py, nn/init.py)."""
import numpy as np
import pytest

import minillm
from minillm import Tensor
from minillm.models import T5Config, T5ForConditionalGeneration
from minillm.nn import Dropout, Embedding, LayerNorm, Linear, Module, ModuleList, Parameter, RMSNorm


class TwoLayer(Module):
    """A small model: two Linears, a free-standing Parameter and a plain attribute."""

    def __init__(self):
        super().__init__()
        self.scale = Parameter(np.ones(3, dtype=np.float32))
        self.first = Linear(4, 3)
        self.second = Linear(3, 2, bias=False)
        self.drop = Dropout(0.5)
        self.not_a_parameter = np.zeros(5)  # a raw array is not registered

    def forward(self, x):
        return self.second(self.drop(self.first(x) * self.scale))


class Tied(Module):
    """Two Linears that share one weight Parameter."""

    def __init__(self):
        super().__init__()
        self.a = Linear(3, 3, bias=False)
        self.b = Linear(3, 3, bias=False)
        self.b.weight = self.a.weight


def tiny_t5(**overrides):
    settings = dict(vocab_size=40, d_model=16, d_kv=4, d_ff=32, num_layers=2, num_heads=4, dropout_rate=0.0)
    settings.update(overrides)
    return T5ForConditionalGeneration(T5Config(**settings))


# ---------------------------------------------------------------------------------- registration
def test_assigning_parameters_and_modules_registers_them_under_dotted_names():
    model = TwoLayer()
    names = [name for name, _ in model.named_parameters()]
    assert names == ["scale", "first.weight", "first.bias", "second.weight"]
    assert [name for name, _ in model.named_modules()] == ["", "first", "second", "drop"]
    assert list(model.children()) == [model.first, model.second, model.drop]
    assert model.get_submodule("first") is model.first


def test_reassigning_an_attribute_to_a_non_parameter_unregisters_it():
    model = TwoLayer()
    model.scale = None
    assert "scale" not in dict(model.named_parameters())
    del model.second
    assert [name for name, _ in model.named_parameters()] == ["first.weight", "first.bias"]


def test_assigning_before_super_init_is_a_clear_error():
    class Broken(Module):
        def __init__(self):
            self.w = Parameter(np.ones(2))

    with pytest.raises(RuntimeError, match="super"):
        Broken()


def test_tied_parameter_is_listed_once_but_state_dict_has_every_name():
    model = Tied()
    assert [name for name, _ in model.named_parameters()] == ["a.weight"]
    assert list(model.state_dict()) == ["a.weight", "b.weight"]
    assert model.state_dict()["a.weight"] is model.state_dict()["b.weight"]
    assert model.num_parameters() == 9


def test_t5_tied_embedding_is_one_parameter_with_hugging_face_alias_names():
    model = tiny_t5()
    names = [name for name, _ in model.named_parameters()]
    assert names.count("shared.weight") == 1
    assert not {"encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "lm_head.weight"} & set(names)
    state = model.state_dict()
    for alias in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "lm_head.weight"):
        assert state[alias] is state["shared.weight"]


# ---------------------------------------------------------------------------------- state dicts
def test_load_state_dict_copies_values_into_the_parameters():
    source, target = TwoLayer(), TwoLayer()
    for p in source.parameters():
        p.data = p.data + 1.0
    target.load_state_dict(source.state_dict())
    for (name, p), (_, q) in zip(source.named_parameters(), target.named_parameters()):
        np.testing.assert_array_equal(p.data, q.data, err_msg=name)
    source.first.weight.data[0, 0] = 123.0  # a copy, not a view
    assert target.first.weight.data[0, 0] != 123.0


def test_load_state_dict_is_strict_and_names_missing_and_unexpected_keys():
    model = TwoLayer()
    state = dict(model.state_dict())
    del state["first.bias"]
    state["third.weight"] = np.zeros((2, 2), dtype=np.float32)
    with pytest.raises(KeyError) as info:
        model.load_state_dict(state)
    assert "first.bias" in str(info.value) and "third.weight" in str(info.value)


def test_non_strict_load_reports_missing_and_unexpected_keys_and_loads_the_rest():
    model = TwoLayer()
    state = {"first.weight": np.full((3, 4), 2.0, dtype=np.float32), "extra": np.zeros(1)}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert sorted(missing) == ["first.bias", "scale", "second.weight"]
    assert unexpected == ["extra"]
    np.testing.assert_array_equal(model.first.weight.data, 2.0)


def test_shape_mismatch_is_a_value_error_naming_the_key_and_both_shapes():
    model = TwoLayer()
    state = dict(model.state_dict())
    state["second.weight"] = np.zeros((5, 3), dtype=np.float32)
    with pytest.raises(ValueError, match=r"second\.weight.*\(5, 3\).*\(2, 3\)"):
        model.load_state_dict(state)


# ---------------------------------------------------------------------------------- modes and freezing
def test_train_and_eval_reach_every_submodule():
    model = tiny_t5()
    model.eval()
    assert not any(m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())
    assert model.train(False) is model and not model.decoder.block[1].layer[2].dropout.training


def test_requires_grad_and_trainable_parameter_count():
    model = TwoLayer()
    # scale 3 + first 4*3+3 + second 3*2
    assert model.num_parameters() == 3 + 15 + 6
    model.requires_grad_(False)
    assert not any(p.requires_grad for p in model.parameters())
    assert model.num_parameters(trainable_only=True) == 0
    model.first.requires_grad_(True)
    assert model.num_parameters(trainable_only=True) == 15
    assert model.num_parameters() == 24


def test_frozen_parameters_get_no_gradient():
    model = TwoLayer().eval()
    model.first.requires_grad_(False)
    model(Tensor(np.ones((2, 4), dtype=np.float32))).sum().backward()
    assert model.first.weight.grad is None
    assert model.second.weight.grad is not None


def test_module_list_registers_items_as_numbered_children():
    layers = ModuleList([Linear(2, 2), Linear(2, 3)])
    layers.append(Linear(3, 1, bias=False))
    assert len(layers) == 3
    assert [m.out_features for m in layers] == [2, 3, 1]
    assert layers[-1].out_features == 1
    assert [name for name, _ in layers.named_parameters()] == [
        "0.weight", "0.bias", "1.weight", "1.bias", "2.weight"]
    layers[1] = Linear(2, 5)
    assert layers[1].out_features == 5 and len(layers) == 3


# ---------------------------------------------------------------------------------- layers
def test_linear_computes_x_w_transpose_plus_b(rng):
    layer = Linear(4, 3)
    assert layer.weight.shape == (3, 4) and layer.bias.shape == (3,)
    x = rng.standard_normal((2, 5, 4)).astype(np.float32)
    expected = x @ layer.weight.data.T + layer.bias.data
    np.testing.assert_allclose(layer(Tensor(x)).data, expected, rtol=1e-5, atol=1e-6)


def test_linear_without_bias_has_only_a_weight(rng):
    layer = Linear(4, 3, bias=False)
    assert layer.bias is None and [n for n, _ in layer.named_parameters()] == ["weight"]
    x = rng.standard_normal((2, 4)).astype(np.float32)
    np.testing.assert_allclose(layer(Tensor(x)).data, x @ layer.weight.data.T, rtol=1e-5, atol=1e-6)


def test_linear_default_init_is_uniform_within_one_over_sqrt_fan_in():
    layer = Linear(100, 200)
    bound = 100 ** -0.5
    assert np.abs(layer.weight.data).max() <= bound and np.abs(layer.bias.data).max() <= bound
    # U(-b, b) has std b / sqrt(3)
    assert layer.weight.data.std() == pytest.approx(bound / np.sqrt(3), rel=0.05)


def test_embedding_returns_rows_and_scatter_adds_gradients():
    emb = Embedding(5, 3)
    ids = np.array([[1, 4], [1, 0]])
    out = emb(ids)
    np.testing.assert_array_equal(out.data, emb.weight.data[ids])
    out.sum().backward()
    # row 1 was looked up twice, rows 0 and 4 once, rows 2 and 3 never
    np.testing.assert_array_equal(emb.weight.grad[:, 0], [1, 2, 0, 0, 1])


def test_rms_norm_scales_by_root_mean_square_without_centering(rng):
    norm = RMSNorm(6, eps=1e-6)
    norm.weight.data = rng.standard_normal(6).astype(np.float32)
    x = rng.standard_normal((3, 6)).astype(np.float32) + 2.0
    expected = norm.weight.data * x / np.sqrt((x * x).mean(-1, keepdims=True) + 1e-6)
    np.testing.assert_allclose(norm(Tensor(x)).data, expected, rtol=1e-5)


def test_layer_norm_centers_and_scales_then_applies_weight_and_bias(rng):
    norm = LayerNorm(6, eps=1e-5)
    norm.weight.data = rng.standard_normal(6).astype(np.float32)
    norm.bias.data = rng.standard_normal(6).astype(np.float32)
    x = rng.standard_normal((3, 6)).astype(np.float32) * 3 + 1
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    expected = (x - mean) / np.sqrt(var + 1e-5) * norm.weight.data + norm.bias.data
    np.testing.assert_allclose(norm(Tensor(x)).data, expected, rtol=1e-4, atol=1e-5)
    assert LayerNorm(6, bias=False).bias is None


def test_dropout_is_identity_in_eval_mode():
    drop = Dropout(0.5).eval()
    x = Tensor(np.ones((10, 10), dtype=np.float32))
    assert drop(x) is x


def test_dropout_in_training_zeroes_about_p_and_rescales_the_rest():
    drop = Dropout(0.25)
    out = drop(Tensor(np.ones((200, 200), dtype=np.float32))).data
    assert set(np.unique(out)) == {0.0, np.float32(1 / 0.75)}
    assert (out == 0).mean() == pytest.approx(0.25, abs=0.01)


def test_dropout_masks_repeat_under_the_same_seed_and_differ_otherwise():
    x = Tensor(np.ones((20, 20), dtype=np.float32))
    minillm.manual_seed(7)
    first = Dropout(0.5)(x).data
    second = Dropout(0.5)(x).data
    minillm.manual_seed(7)
    again = Dropout(0.5)(x).data
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, second)


# ---------------------------------------------------------------------------------- T5 initialisation
def test_t5_weights_follow_the_scaled_normal_init():
    """Empirical std of each T5 weight matches nn/init.py's formulas (Mesh TensorFlow's fan-in rule)."""
    d_model, d_kv, heads, d_ff = 128, 32, 4, 256
    model = T5ForConditionalGeneration(T5Config(
        vocab_size=256, d_model=d_model, d_kv=d_kv, d_ff=d_ff, num_layers=1, num_heads=heads,
        tie_word_embeddings=False))
    attention = model.encoder.block[0].layer[0].SelfAttention
    ff = model.encoder.block[0].layer[1].DenseReluDense
    expected = {
        attention.q.weight: (d_model * d_kv) ** -0.5,
        attention.k.weight: d_model ** -0.5,
        attention.v.weight: d_model ** -0.5,
        attention.o.weight: (heads * d_kv) ** -0.5,
        ff.wi.weight: d_model ** -0.5,
        ff.wo.weight: d_ff ** -0.5,
        model.shared.weight: 1.0,
        model.lm_head.weight: d_model ** -0.5,
    }
    for weight, std in expected.items():
        assert abs(weight.data.mean()) < 0.05 * std
        assert weight.data.std() == pytest.approx(std, rel=0.05)
    for norm in (model.encoder.final_layer_norm, model.decoder.block[0].layer[1].layer_norm):
        np.testing.assert_array_equal(norm.weight.data, 1.0)


def test_t5_gated_feed_forward_init():
    d_model, d_ff = 128, 256
    model = T5ForConditionalGeneration(T5Config(vocab_size=32, d_model=d_model, d_kv=16, d_ff=d_ff,
                                                num_layers=1, num_heads=2, feed_forward_proj="gated-gelu"))
    ff = model.decoder.block[0].layer[2].DenseReluDense
    for weight, std in ((ff.wi_0.weight, d_model ** -0.5), (ff.wi_1.weight, d_model ** -0.5),
                        (ff.wo.weight, d_ff ** -0.5)):
        assert weight.data.std() == pytest.approx(std, rel=0.05)


def test_initialisation_is_reproducible_by_seed():
    minillm.manual_seed(3)
    a = tiny_t5().state_dict()
    minillm.manual_seed(3)
    b = tiny_t5().state_dict()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
