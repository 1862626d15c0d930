"""benchmarks/forgetting.py's LoRA arm that can learn the held-out task: all linear layers plus a
trainable copy of lm_head. Its training loop must update the adapters and the lm_head copy, leave
every base weight as it was, and print the arm's loss curve."""
import importlib.util
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def load_benchmark():
    spec = importlib.util.spec_from_file_location("forgetting", REPO / "benchmarks" / "forgetting.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_setup(fg):
    import minillm  # noqa: PLC0415
    from minillm.data import Tokenizer  # noqa: PLC0415
    from minillm.models import T5Config, T5ForConditionalGeneration  # noqa: PLC0415

    minillm.manual_seed(0)
    pairs = fg.records("antonym", 16, 0)
    tokenizer = Tokenizer.train([t for p in pairs for t in p], vocab_size=200, num_sentinels=2)
    config = T5Config(vocab_size=tokenizer.vocab_size, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=4,
                      dropout_rate=0.0)
    return pairs, tokenizer, T5ForConditionalGeneration(config)


def test_lora_all_linear_arm_trains_its_lm_head_copy_and_leaves_the_base_alone(capsys):
    fg = load_benchmark()
    from minillm.peft import LoraConfig, get_peft_model  # noqa: PLC0415

    pairs, tokenizer, model = tiny_setup(fg)
    base_before = {k: v.copy() for k, v in model.state_dict().items()}
    lora = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, modules_to_save=["lm_head"],
                                            target_modules=["q", "k", "v", "o", "wi", "wo"]))
    head = dict(lora.named_parameters())["base_model.lm_head.modules_to_save.default.weight"]
    head_before = head.data.copy()
    fg.train(lora, pairs, tokenizer, steps=8, lr=fg.SETTINGS["lora_lr"], batch_size=4, seed=0, label="LoRA arm")

    assert np.abs(head.data - head_before).max() > 0, "the lm_head copy did not train"
    base_after = model.state_dict()
    frozen = [k for k in base_after if "lora_" not in k and "modules_to_save" not in k]
    assert len(frozen) == len(base_before)
    for key in frozen:
        original = key.replace(".base_layer", "")
        assert np.array_equal(base_after[key], base_before[original]), f"base weight {original} changed"
    printed = capsys.readouterr().out
    assert "LoRA arm: lr 0.003, 8 steps, mean loss per 2 steps" in printed
    assert len(printed.split("mean loss per 2 steps")[1].split()) == 4  # one mean per 2 of the 8 steps


def test_training_loop_lowers_the_loss_of_the_held_out_task():
    fg = load_benchmark()
    pairs, tokenizer, model = tiny_setup(fg)
    first = fg.train(model, pairs, tokenizer, steps=1, lr=1e-3, batch_size=16, seed=0)
    last = fg.train(model, pairs, tokenizer, steps=60, lr=1e-2, batch_size=16, seed=0)
    assert last < 0.7 * first
