"""LoRA layer: initialisation, scaling, merging, target matching and its errors, bias options."""
import math

import numpy as np
import pytest

import minillm
from minillm.models import T5Config, T5ForConditionalGeneration
from minillm.nn import Linear, Module
from minillm.peft import LoraConfig, LoraLinear, get_peft_model, lora_scaling


def tiny_t5():
    config = T5Config(vocab_size=40, d_model=16, d_kv=4, d_ff=24, num_layers=2, num_heads=4, dropout_rate=0.0)
    return T5ForConditionalGeneration(config).eval()


class MLP(Module):
    """A model with biases (T5 has none), for the bias options."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = Linear(6, 8), Linear(8, 3)

    def forward(self, x):
        return self.fc2(minillm.ops.relu(self.fc1(x)))


def test_A_is_kaiming_uniform_and_B_is_zero():
    layer = LoraLinear(Linear(400, 300, bias=False))
    layer.update_layer("default", LoraConfig(r=16))
    A, B = layer.lora_A["default"].weight.data, layer.lora_B["default"].weight.data
    bound = 1 / math.sqrt(400)  # kaiming_uniform(a=sqrt(5)): U(-1/sqrt(d_in), 1/sqrt(d_in))
    assert A.shape == (16, 400) and B.shape == (300, 16)
    assert np.abs(A).max() <= bound and np.abs(A).max() > 0.95 * bound
    assert abs(A.std() - bound / math.sqrt(3)) < 0.05 * bound  # a uniform's std is bound/sqrt(3)
    assert not B.any()


def test_gaussian_init_draws_A_with_std_one_over_r():
    layer = LoraLinear(Linear(500, 10, bias=False))
    layer.update_layer("default", LoraConfig(r=4, init_lora_weights="gaussian"))
    assert layer.lora_A["default"].weight.data.std() == pytest.approx(1 / 4, rel=0.05)
    assert not layer.lora_B["default"].weight.data.any()


@pytest.mark.parametrize("r, alpha, rslora, expected", [(8, 16, False, 2.0), (4, 4, False, 1.0),
                                                        (16, 16, True, 4.0), (4, 8, True, 4.0)])
def test_scaling_is_alpha_over_r_or_alpha_over_sqrt_r_with_rslora(r, alpha, rslora, expected):
    assert lora_scaling(LoraConfig(r=r, lora_alpha=alpha, use_rslora=rslora)) == expected


def test_safe_merge_refuses_nan_or_inf_and_leaves_W_untouched():
    layer = LoraLinear(Linear(4, 3, bias=False))
    layer.update_layer("default", LoraConfig(r=2))
    layer.active_adapter = "default"
    W = layer.base_layer.weight.data.copy()
    layer.lora_B["default"].weight.data[0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN/inf"):
        layer.merge(safe_merge=True)
    assert np.array_equal(layer.base_layer.weight.data, W) and not layer.merged_adapters
    layer.lora_B["default"].weight.data[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN/inf"):
        layer.merge(safe_merge=True)


def test_merged_layer_is_not_applied_twice():
    layer = LoraLinear(Linear(4, 3, bias=False))
    layer.update_layer("default", LoraConfig(r=2, init_lora_weights=False))
    layer.active_adapter = "default"
    x = minillm.Tensor(np.ones((1, 4), np.float32))
    y = layer(x).data
    layer.merge()
    layer.merge()  # a second merge is a no-op
    np.testing.assert_allclose(layer(x).data, y, rtol=1e-5)


def test_dropout_applies_only_to_the_lora_branch_in_training():
    layer = LoraLinear(Linear(50, 5, bias=False))
    layer.update_layer("default", LoraConfig(r=2, lora_dropout=0.5))
    layer.active_adapter = "default"
    x = minillm.Tensor(np.ones((4, 50), np.float32))
    base = layer.base_layer(x).data
    assert np.array_equal(layer(x).data, base)  # B = 0
    layer.lora_B["default"].weight.data[...] = 1.0
    layer.eval()
    assert np.array_equal(layer(x).data, layer(x).data)
    layer.train()
    assert not np.array_equal(layer(x).data, layer(x).data)  # two dropout masks


def test_list_targets_match_the_last_name_segment_and_regex_targets_the_whole_name():
    model = get_peft_model(tiny_t5(), LoraConfig(r=2, target_modules=["q", "v"]))
    wrapped = [n for n, m in model.base_model.named_modules() if isinstance(m, LoraLinear)]
    assert len(wrapped) == 12 and all(n.endswith((".q", ".v")) for n in wrapped)
    model = get_peft_model(tiny_t5(), LoraConfig(r=2, target_modules=r"decoder\.block\.1\..*EncDecAttention\.(k|o)"))
    wrapped = [n for n, m in model.base_model.named_modules() if isinstance(m, LoraLinear)]
    assert wrapped == ["decoder.block.1.layer.1.EncDecAttention.k", "decoder.block.1.layer.1.EncDecAttention.o"]


def test_targets_that_match_nothing_raise_a_clear_error_naming_the_linear_layers():
    with pytest.raises(ValueError, match=r"matched no module.*\bq\b.*"):
        get_peft_model(tiny_t5(), LoraConfig(target_modules=["query", "value"]))


def test_targets_of_the_wrong_kind_raise_a_clear_error():
    with pytest.raises(TypeError, match="not Linear layers.*SelfAttention"):
        get_peft_model(tiny_t5(), LoraConfig(target_modules=["SelfAttention"]))
    with pytest.raises(TypeError, match="RMSNorm"):
        get_peft_model(tiny_t5(), LoraConfig(target_modules=["layer_norm"]))


@pytest.mark.parametrize("bias, trainable_biases", [("none", []), ("all", ["fc1", "fc2"]),
                                                    ("lora_only", ["fc1"])])
def test_bias_option_chooses_which_biases_train(bias, trainable_biases):
    model = get_peft_model(MLP(), LoraConfig(r=2, target_modules=["fc1"], bias=bias))
    names = [n for n, p in model.named_parameters() if p.requires_grad and n.endswith(".bias")]
    assert sorted(n.split(".")[1] for n in names) == trainable_biases  # base_model.fc1.base_layer.bias
    lora_keys = 2  # lora_A.weight and lora_B.weight of fc1
    assert len(model.adapter_state()) == lora_keys + len(trainable_biases)


def test_modules_to_save_trains_a_copy_and_keeps_the_original_frozen():
    model = tiny_t5()
    original = model.lm_head.weight.data.copy()
    peft = get_peft_model(model, LoraConfig(r=2, modules_to_save=["lm_head"]))
    copy = peft.base_model.lm_head.modules_to_save["default"].weight
    assert copy.requires_grad and not peft.base_model.lm_head.base_layer.weight.requires_grad
    copy.data = copy.data + 1.0
    assert np.array_equal(model.shared.weight.data, original)  # the tied embedding is untouched
    assert "base_model.model.lm_head.weight" in peft.adapter_state()
    with peft.disable_adapter():
        ids = np.array([[3, 4, 1]])
        base_logits = peft(input_ids=ids, labels=ids).logits.data
    assert not np.array_equal(peft(input_ids=ids, labels=ids).logits.data, base_logits)


def test_lora_on_a_float64_model_keeps_float64():
    model = tiny_t5().to(dtype=np.float64)
    peft = get_peft_model(model, LoraConfig(r=2))
    assert {p.dtype for p in peft.parameters()} == {np.dtype(np.float64)}


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="r must be"):
        LoraConfig(r=0)
    with pytest.raises(ValueError, match="bias"):
        LoraConfig(bias="some")
    with pytest.raises(ValueError, match="init_lora_weights"):
        LoraConfig(init_lora_weights="orthogonal")
    assert LoraConfig().target_modules == ["q", "v"]  # PEFT's default for T5
