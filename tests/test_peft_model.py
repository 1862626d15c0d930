"""PeftModel: PEFT's API, several adapters on one frozen base, PEFT's file layout, and the CLI hooks."""
import argparse
import json

import numpy as np
import pytest
from safetensors.numpy import load_file

import minillm
from minillm.models import T5Config, T5ForConditionalGeneration
from minillm.peft import (AdapterConfig, LoraConfig, LoraLinear, PeftModel, PromptTuningConfig,
                          SelectiveConfig, get_peft_model)
from minillm.cli.peft_options import add_peft_arguments, apply_peft


def tiny_t5(seed=0):
    minillm.manual_seed(seed)
    config = T5Config(vocab_size=40, d_model=16, d_kv=4, d_ff=24, num_layers=2, num_heads=4, dropout_rate=0.0)
    return T5ForConditionalGeneration(config).eval()


BATCH = {"input_ids": np.array([[5, 6, 7, 1], [8, 9, 1, 0]]), "attention_mask": np.array([[1, 1, 1, 1], [1, 1, 1, 0]]),
         "labels": np.array([[3, 4, 1], [5, 1, -100]])}


def randomize(peft, name=None, seed=0):
    """Give the (active) adapter's parameters random values, as training would."""
    rng = np.random.default_rng(seed)
    for p in peft.adapter_state(name).values():
        p.data = (p.data + rng.standard_normal(p.shape) * 0.3).astype(p.dtype)


def logits(model):
    return model(**BATCH).logits.data.copy()


def test_print_trainable_parameters_uses_peft_format(capsys):
    peft = get_peft_model(tiny_t5(), LoraConfig(r=4, target_modules=["q", "v"]))
    peft.print_trainable_parameters()
    trainable = 12 * 4 * (16 + 16)
    total = sum(p.size for p in peft.parameters())
    assert capsys.readouterr().out == (f"trainable params: {trainable:,} || all params: {total:,} || "
                                       f"trainable%: {100 * trainable / total:.4f}\n")
    assert "," in f"{total:,}"


def test_base_is_frozen_and_only_the_active_adapter_trains():
    peft = get_peft_model(tiny_t5(), LoraConfig(r=2))
    peft.add_adapter("second", AdapterConfig(adapter_size=2))
    active = {n for n, p in peft.named_parameters() if p.requires_grad}
    assert active and all(".lora_" in n and ".default." in n for n in active)
    peft.set_adapter("second")
    active = {n for n, p in peft.named_parameters() if p.requires_grad}
    assert active and all(".adapter.second." in n for n in active)


def test_several_adapters_share_one_frozen_base_and_switch_by_name():
    model = tiny_t5()
    snapshot = {n: p.data.copy() for n, p in model.named_parameters()}
    base = logits(model)
    peft = get_peft_model(model, LoraConfig(r=2, lora_alpha=4), adapter_name="summary")
    randomize(peft, "summary", 1)
    peft.add_adapter("translate", LoraConfig(r=3, target_modules=["q", "k", "wo"]))
    peft.add_adapter("sentiment", AdapterConfig(adapter_size=4))
    peft.add_adapter("arith", PromptTuningConfig(num_virtual_tokens=2))
    outs = {}
    for i, name in enumerate(["translate", "sentiment", "arith"]):
        peft.set_adapter(name)
        randomize(peft, name, i + 2)
    for name in ["summary", "translate", "sentiment", "arith"]:
        peft.set_adapter(name)
        outs[name] = logits(peft)
    for name in outs:  # every task computes its own function, and switching back reproduces it
        peft.set_adapter(name)
        assert np.array_equal(logits(peft), outs[name])
        assert not np.array_equal(outs[name], base)
    with peft.disable_adapter():
        assert np.array_equal(logits(peft), base)
    for name, p in model.named_parameters():  # the base itself never changed
        if name.replace(".base_layer", "") in snapshot:
            assert np.array_equal(p.data, snapshot[name.replace(".base_layer", "")]), name


def test_disable_adapter_gives_the_base_model_even_when_merged():
    model = tiny_t5()
    base = logits(model)
    peft = get_peft_model(model, LoraConfig(r=2, init_lora_weights=False))
    adapted = logits(peft)
    peft.merge_adapter()
    with peft.disable_adapter():
        np.testing.assert_allclose(logits(peft), base, atol=1e-6)
    np.testing.assert_allclose(logits(peft), adapted, atol=1e-5)


def test_delete_adapter_removes_its_parameters_and_unwraps_layers_left_empty():
    model = tiny_t5()
    peft = get_peft_model(model, LoraConfig(r=2))
    peft.add_adapter("other", LoraConfig(r=2, target_modules=["o"]))
    with pytest.raises(ValueError, match="active"):
        peft.delete_adapter("default")
    peft.delete_adapter("other")
    assert not any(".other." in n for n, _ in peft.named_parameters())
    assert type(model.encoder.block[0].layer[0].SelfAttention.o).__name__ == "Linear"
    with pytest.raises(KeyError, match="no adapter"):
        peft.set_adapter("other")


def test_merge_and_unload_returns_a_plain_model_with_the_same_outputs():
    peft = get_peft_model(tiny_t5(), LoraConfig(r=4, lora_alpha=8, init_lora_weights=False))
    adapted = logits(peft)
    merged = peft.merge_and_unload()
    assert isinstance(merged, T5ForConditionalGeneration)
    assert not any(isinstance(m, LoraLinear) for m in merged.modules())
    assert set(merged.state_dict()) == set(tiny_t5().state_dict())  # HF names again
    np.testing.assert_allclose(logits(merged), adapted, atol=1e-5)


def test_merge_and_unload_refuses_nonlinear_adapters():
    peft = get_peft_model(tiny_t5(), AdapterConfig(adapter_size=2))
    with pytest.raises(ValueError, match="cannot be merged"):
        peft.merge_and_unload()


def test_save_pretrained_writes_peft_layout_and_key_names(tmp_path):
    peft = get_peft_model(tiny_t5(), LoraConfig(r=4, target_modules=["q", "v"]))
    peft.add_adapter("second", PromptTuningConfig(num_virtual_tokens=3))
    peft.save_pretrained(tmp_path)
    keys = set(load_file(str(tmp_path / "adapter_model.safetensors")))
    assert "base_model.model.encoder.block.0.layer.0.SelfAttention.q.lora_A.weight" in keys
    assert "base_model.model.decoder.block.1.layer.1.EncDecAttention.v.lora_B.weight" in keys
    assert len(keys) == 24 and not any("default" in k for k in keys)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 4 and config["target_modules"] == ["q", "v"]
    assert set(load_file(str(tmp_path / "second" / "adapter_model.safetensors"))) == {"prompt_embeddings"}
    assert json.loads((tmp_path / "second" / "adapter_config.json").read_text())["prompt_tuning_init"] == "RANDOM"


def test_from_pretrained_loads_frozen_unless_trainable(tmp_path):
    peft = get_peft_model(tiny_t5(), LoraConfig(r=2))
    randomize(peft)
    peft.save_pretrained(tmp_path)
    loaded = PeftModel.from_pretrained(tiny_t5(), tmp_path)
    assert np.array_equal(logits(loaded), logits(peft))
    assert not any(p.requires_grad for p in loaded.parameters())
    trainable = PeftModel.from_pretrained(tiny_t5(), tmp_path, is_trainable=True)
    assert trainable.get_nb_trainable_parameters()[0] == peft.get_nb_trainable_parameters()[0]


def test_loading_an_adapter_into_the_wrong_model_is_a_clear_error(tmp_path):
    get_peft_model(tiny_t5(), LoraConfig(r=2)).save_pretrained(tmp_path)
    other = T5ForConditionalGeneration(T5Config(vocab_size=40, d_model=16, d_kv=4, d_ff=24, num_layers=1,
                                                num_heads=4, dropout_rate=0.0))
    with pytest.raises(KeyError, match="does not fit"):
        PeftModel.from_pretrained(other, tmp_path)


def test_selective_cannot_share_a_base_with_other_adapters():
    peft = get_peft_model(tiny_t5(), LoraConfig(r=2))
    with pytest.raises(ValueError, match="selective"):
        peft.add_adapter("sel", SelectiveConfig(patterns=["layer_norm"]))


def parse(*argv):
    return add_peft_arguments(argparse.ArgumentParser()).parse_args(list(argv))


def test_cli_defaults_to_full_fine_tuning_and_returns_the_model_itself():
    model = tiny_t5()
    args = parse()
    assert args.method == "full" and args.lora_targets == ["q", "v"]
    assert apply_peft(model, args) is model


@pytest.mark.parametrize("argv, trainable", [
    (["--method", "lora", "--lora-r", "2", "--lora-targets", "q,k,v"], 18 * 2 * 32),
    (["--method", "adapter", "--adapter-size", "3", "--adapter-positions", "ffn"], 4 * (2 * 16 * 3 + 16 + 3)),
    (["--method", "prompt", "--num-virtual-tokens", "5", "--prompt-init", "random"], 5 * 16),
    (["--method", "selective", "--selective-patterns", "final_layer_norm"], 2 * 16),
])
def test_cli_flags_build_the_matching_peft_model(argv, trainable):
    peft = apply_peft(tiny_t5(), parse(*argv))
    assert isinstance(peft, PeftModel)
    assert peft.get_nb_trainable_parameters()[0] == trainable


def test_cli_rejects_unknown_methods_and_text_init_without_text():
    with pytest.raises(SystemExit):
        parse("--method", "dora")
    with pytest.raises(ValueError, match="prompt-init-text"):
        apply_peft(tiny_t5(), parse("--method", "prompt", "--prompt-init", "text"))
    with pytest.raises(ValueError, match="bias"):
        apply_peft(tiny_t5(), parse("--method", "selective", "--bitfit"))
