"""Houlsby adapters, soft prompts and selective training on a tiny T5."""
import numpy as np
import pytest

import minillm
from minillm.models import T5Config, T5ForConditionalGeneration
from minillm.optim import AdamW
from minillm.peft import (NORMS, RELATIVE_ATTENTION_BIAS, AdapterConfig, HoulsbyAdapter, PromptTuningConfig,
                          SelectiveConfig, SublayerWithAdapter, get_peft_model)

BATCH = {"input_ids": np.array([[5, 6, 7, 1], [8, 9, 1, 0]]), "attention_mask": np.array([[1, 1, 1, 1], [1, 1, 1, 0]]),
         "labels": np.array([[3, 4, 1], [5, 1, -100]])}


def tiny_t5(seed=0):
    minillm.manual_seed(seed)
    config = T5Config(vocab_size=40, d_model=16, d_kv=4, d_ff=24, num_layers=2, num_heads=4, dropout_rate=0.0)
    return T5ForConditionalGeneration(config).eval()


class FakeTokenizer:
    def encode(self, text):
        return [ord(c) % 30 + 3 for c in text] + [1]


def train(peft, steps=30, lr=3e-2):
    opt = AdamW([p for p in peft.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    losses = []
    for _ in range(steps):
        loss = peft(**BATCH).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    return losses


# ----------------------------------------------------------------------------------- adapters
def test_houlsby_adapter_is_a_residual_bottleneck():
    adapter = HoulsbyAdapter(8, 3)
    h = minillm.Tensor(np.random.default_rng(0).standard_normal((2, 5, 8)).astype(np.float32))
    assert np.array_equal(adapter(h).data, h.data)  # up = 0: exactly the identity at the start
    adapter.up.weight.data[...] = 0.5
    adapter.up.bias.data[...] = 0.1
    z = np.maximum(h.data @ adapter.down.weight.data.T + adapter.down.bias.data, 0)
    np.testing.assert_allclose(adapter(h).data, h.data + z @ adapter.up.weight.data.T + 0.1, rtol=1e-6)
    assert adapter.num_parameters() == 2 * 8 * 3 + 8 + 3


@pytest.mark.parametrize("positions, stacks, expected", [
    (["attention", "ffn"], ["encoder", "decoder"], {"encoder": ["0.SelfAttention", "1.DenseReluDense"],
                                                   "decoder": ["0.SelfAttention", "2.DenseReluDense"]}),
    (["cross_attention"], ["encoder", "decoder"], {"decoder": ["1.EncDecAttention"]}),
    (["ffn"], ["decoder"], {"decoder": ["2.DenseReluDense"]}),
])
def test_adapters_go_after_the_configured_sub_layers(positions, stacks, expected):
    peft = get_peft_model(tiny_t5(), AdapterConfig(adapter_size=2, positions=positions, stacks=stacks))
    sites = sorted(n for n, m in peft.base_model.named_modules() if isinstance(m, SublayerWithAdapter))
    want = sorted(f"{stack}.block.{b}.layer.{site}" for stack, s in expected.items() for b in (0, 1) for site in s)
    assert sites == want


def test_adapter_applies_to_the_sub_layer_output_before_the_residual_add():
    peft = get_peft_model(tiny_t5(), AdapterConfig(adapter_size=2, positions=["ffn"], stacks=["encoder"]))
    layer_ff = peft.base_model.encoder.block[0].layer[1]
    wrapper = layer_ff.DenseReluDense
    wrapper.adapter["default"].up.bias.data[...] = 1.0  # adapter(x) = x + 1 (down branch is relu(...)@0)
    h = minillm.Tensor(np.random.default_rng(1).standard_normal((1, 3, 16)).astype(np.float32))
    ff = wrapper.base_layer(layer_ff.layer_norm(h)).data
    np.testing.assert_allclose(layer_ff(h).data, h.data + ff + 1.0, rtol=1e-6)  # h + (FF(norm h) + 1)


def test_adapter_model_starts_equal_to_the_base_and_learns():
    model = tiny_t5()
    base = model(**BATCH).logits.data.copy()
    peft = get_peft_model(model, AdapterConfig(adapter_size=4, positions=["attention", "cross_attention", "ffn"]))
    assert np.array_equal(peft(**BATCH).logits.data, base)
    losses = train(peft)
    assert losses[-1] < 0.5 * losses[0]


def test_adapter_config_rejects_unknown_positions():
    with pytest.raises(ValueError, match="positions"):
        AdapterConfig(positions=["embedding"])


# ----------------------------------------------------------------------------------- soft prompts
def test_prompt_is_prepended_to_the_encoder_input_and_the_mask_is_extended():
    model = tiny_t5()
    peft = get_peft_model(model, PromptTuningConfig(num_virtual_tokens=3))
    P = peft.prompt_encoder["default"].embedding.weight.data
    out = peft(**BATCH)
    embeds = np.concatenate([np.broadcast_to(P, (2, 3, 16)), model.shared.weight.data[BATCH["input_ids"]]], axis=1)
    mask = np.concatenate([np.ones((2, 3), np.int64), BATCH["attention_mask"]], axis=1)
    expected = model(inputs_embeds=minillm.Tensor(embeds), attention_mask=mask, labels=BATCH["labels"])
    assert out.encoder_last_hidden_state.shape == (2, 7, 16)
    assert np.array_equal(out.logits.data, expected.logits.data)


@pytest.mark.parametrize("init", ["sample_vocab", "text"])
def test_prompt_init_copies_rows_of_the_vocabulary(init):
    model = tiny_t5()
    config = PromptTuningConfig(num_virtual_tokens=7, prompt_tuning_init=init,
                                prompt_tuning_init_text="abc", tokenizer=FakeTokenizer())
    P = get_peft_model(model, config).prompt_encoder["default"].embedding.weight.data
    E = model.shared.weight.data
    assert all(any(np.array_equal(row, e) for e in E) for row in P)
    if init == "text":  # "abc</s>" repeated and cut to 7 tokens
        ids = (FakeTokenizer().encode("abc") * 2)[:7]
        assert np.array_equal(P, E[ids])


def test_text_init_without_a_tokenizer_is_a_clear_error():
    with pytest.raises(ValueError, match="tokenizer"):
        get_peft_model(tiny_t5(), PromptTuningConfig(prompt_tuning_init="text", prompt_tuning_init_text="hi"))


def test_prompt_tuning_trains_only_the_prompt_and_generation_uses_it():
    peft = get_peft_model(tiny_t5(), PromptTuningConfig(num_virtual_tokens=4, prompt_tuning_init="sample_vocab"))
    assert peft.get_nb_trainable_parameters()[0] == 4 * 16
    losses = train(peft, steps=40, lr=0.1)
    assert losses[-1] < 0.8 * losses[0]  # a frozen random model: the prompt alone still lowers the loss
    ids, mask = BATCH["input_ids"], BATCH["attention_mask"]
    with_prompt = peft.generate(ids, attention_mask=mask, max_new_tokens=3)
    P = peft.prompt_encoder["default"].embedding.weight
    embeds = np.concatenate([np.broadcast_to(P.data, (2, 4, 16)), peft.base_model.shared.weight.data[ids]], 1)
    mask2 = np.concatenate([np.ones((2, 4), np.int64), mask], 1)
    direct = peft.base_model.generate(None, attention_mask=mask2, inputs_embeds=minillm.Tensor(embeds),
                                      max_new_tokens=3)
    assert np.array_equal(with_prompt, direct)


# ----------------------------------------------------------------------------------- selective
def test_selective_patterns_choose_norms_relative_bias_or_last_blocks():
    def names(config):
        peft = get_peft_model(tiny_t5(), config)
        return sorted(n.removeprefix("base_model.") for n, p in peft.named_parameters() if p.requires_grad)

    norms = names(SelectiveConfig(patterns=[NORMS]))
    assert len(norms) == 2 * 2 + 2 * 3 + 2 and all("layer_norm" in n for n in norms)
    assert names(SelectiveConfig(patterns=[RELATIVE_ATTENTION_BIAS])) == [
        "decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
        "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]
    last = names(SelectiveConfig(last_n_decoder_blocks=1))
    assert last and all(n.startswith("decoder.block.1.") for n in last)


def test_selective_errors_when_a_pattern_matches_nothing_or_bitfit_finds_no_bias():
    with pytest.raises(ValueError, match="matches no parameter"):
        get_peft_model(tiny_t5(), SelectiveConfig(patterns=["attention_bias_typo$"]))
    with pytest.raises(ValueError, match="no bias"):
        get_peft_model(tiny_t5(), SelectiveConfig(bitfit=True))


def test_bitfit_trains_only_biases_of_a_model_that_has_them():
    from minillm.nn import Linear, Module

    class Net(Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = Linear(4, 4), Linear(4, 2)

    peft = get_peft_model(Net(), SelectiveConfig(bitfit=True))
    assert sorted(n for n, p in peft.named_parameters() if p.requires_grad) == ["base_model.a.bias",
                                                                                 "base_model.b.bias"]
