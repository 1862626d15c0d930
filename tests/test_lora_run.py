"""A LoRA run stores what it trained: checkpoints without the frozen base, tied weights once, and a
run folder that names its base (path + fingerprint) instead of copying it."""
import json
import os

import numpy as np
import pytest

import minillm
from minillm.files import read_safetensors_header, save_safetensors
from minillm.models import T5Config, T5ForConditionalGeneration
from minillm.optim import AdamW
from minillm.peft import LoraConfig, get_peft_model
from minillm.training.checkpoint import load_checkpoint, save_checkpoint


def tiny_t5(tie=True):
    return T5ForConditionalGeneration(T5Config(vocab_size=40, d_model=16, d_kv=4, d_ff=32, num_layers=1,
                                               num_heads=4, dropout_rate=0.0, tie_word_embeddings=tie))


def lora(model):
    return get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules=["q", "v"]))


def names_in(path):
    return set(read_safetensors_header(path))


# ---------------------------------------------------------------------------------- checkpoints
def test_a_full_checkpoint_stores_each_tied_weight_once(tmp_path):
    model = tiny_t5(tie=True)
    save_checkpoint(tmp_path / "ck", model)
    saved = names_in(tmp_path / "ck" / "model.safetensors")
    assert "shared.weight" in saved
    assert not saved & {"encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "lm_head.weight"}
    assert len(saved) == len(list(model.parameters()))
    fresh = tiny_t5(tie=True)
    load_checkpoint(tmp_path / "ck", fresh)
    for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=name)  # the aliases follow the one stored tensor


def test_a_lora_checkpoint_holds_the_adapter_and_its_optimizer_state_only(tmp_path):
    peft = lora(tiny_t5(tie=False))
    optimizer = AdamW([p for p in peft.parameters() if p.requires_grad], lr=1e-2)
    for p in peft.parameters():
        if p.requires_grad:
            p.grad = np.ones_like(p.data)
    optimizer.step()
    save_checkpoint(tmp_path / "ck", peft, optimizer, step=1)
    saved = names_in(tmp_path / "ck" / "model.safetensors")
    trainable = {n for n, p in peft.named_parameters() if p.requires_grad}
    assert saved == trainable and all(".lora_" in n for n in saved)
    assert len(names_in(tmp_path / "ck" / "optimizer.safetensors")) == 2 * len(trainable)  # Adam's two moments
    minillm.manual_seed(0)
    again = lora(tiny_t5(tie=False))  # the same base, a fresh adapter
    for (name, p), (_, q) in zip(peft.named_parameters(), again.named_parameters()):
        if not p.requires_grad:
            q.data = p.data.copy()
    load_checkpoint(tmp_path / "ck", again)
    for (name, a), b in zip(peft.state_dict().items(), again.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=name)


def test_an_older_checkpoint_with_the_whole_model_still_loads(tmp_path):
    peft = lora(tiny_t5())
    save_checkpoint(tmp_path / "ck", peft)
    everything = {k: np.ascontiguousarray(v) for k, v in peft.state_dict().items()}
    save_safetensors(tmp_path / "ck" / "model.safetensors", everything)  # as checkpoints were written before
    again = lora(tiny_t5())
    load_checkpoint(tmp_path / "ck", again)
    for name, p in again.named_parameters():
        if p.requires_grad:
            np.testing.assert_array_equal(p.data, everything[name])


# ---------------------------------------------------------------------------------- the run folder
@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    """A smoke base, and a LoRA run on it that names the base instead of copying it."""
    from minillm.cli.main import main

    root = tmp_path_factory.mktemp("lora_run")
    data = root / "data.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"What is {a} plus 1?", "completion": str(a + 1)}) + "\n"
                            for a in range(12)))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINILLM_SMOKE", "1")
        assert main(["pretrain", "--out", str(root / "base")]) == 0
        assert main(["finetune", "--model", str(root / "base"), "--data", str(data), "--method", "lora",
                     "--out", str(root / "run")]) == 0
        assert main(["finetune", "--model", str(root / "base"), "--data", str(data), "--method", "lora",
                     "--copy-base", "--out", str(root / "copied")]) == 0
    return root


def test_the_run_names_its_base_and_its_checkpoint_holds_no_base_weight(lora_run):
    run = lora_run / "run"
    assert not (run / "model.safetensors").exists() and not (run / "config.json").exists()
    reference = json.loads((run / "base_model.json").read_text())
    assert reference["path"] == str(lora_run / "base") and len(reference["weights_sha256"]) == 64
    assert json.loads((run / "adapter_config.json").read_text())["base_model_name_or_path"] == reference["path"]
    assert all(".lora_" in name for name in names_in(run / "checkpoint" / "model.safetensors"))
    copied = lora_run / "copied"  # --copy-base: today's self-contained folder, named as its own base
    assert (copied / "model.safetensors").is_file() and not (copied / "base_model.json").exists()
    assert json.loads((copied / "adapter_config.json").read_text())["base_model_name_or_path"] == str(copied)


def test_generate_reads_the_base_through_the_reference(lora_run, monkeypatch, capsys):
    from minillm.cli.main import main

    monkeypatch.setenv("MINILLM_SMOKE", "1")
    assert main(["generate", "--model", str(lora_run / "run"), "--prompt", "What is 2 plus 1?"]) == 0
    assert main(["generate", "--model", str(lora_run / "copied"), "--prompt", "What is 2 plus 1?"]) == 0


def test_a_changed_or_missing_base_is_refused_naming_both_folders(lora_run, tmp_path, capsys):
    import shutil

    from minillm.cli.main import main

    shutil.copytree(lora_run / "base", tmp_path / "base")
    shutil.copytree(lora_run / "run", tmp_path / "run")
    reference = json.loads((tmp_path / "run" / "base_model.json").read_text())
    (tmp_path / "run" / "base_model.json").write_text(json.dumps({**reference, "path": str(tmp_path / "base")}))
    assert main(["generate", "--model", str(tmp_path / "run"), "--prompt", "hi", "--max-new-tokens", "2"]) == 0
    capsys.readouterr()
    model = T5ForConditionalGeneration.from_pretrained(tmp_path / "base")
    model.shared.weight.data[5, 0] += 1e-3  # one weight of the base changed after training
    model.save_pretrained(tmp_path / "base")
    assert main(["generate", "--model", str(tmp_path / "run"), "--prompt", "hi"]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'run' / 'base_model.json'}: the weights in {tmp_path / 'base'} are not the ones" in err
    shutil.rmtree(tmp_path / "base")
    assert main(["generate", "--model", str(tmp_path / "run"), "--prompt", "hi"]) == 2
    assert f"the base model folder {tmp_path / 'base'} does not exist any more" in capsys.readouterr().err
