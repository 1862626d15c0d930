"""Adapter files exchanged with Hugging Face PEFT (the oracle) give the same logits on both sides.

The same tiny T5 lives in transformers and in minillm (``hf.save_pretrained`` then minillm's
``from_pretrained``). A LoRA (r=4 on q and v, with B != 0) or a soft prompt saved by one library
is loaded by the other, and the logits of a padded batch are compared.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="parity tests need PyTorch")
transformers = pytest.importorskip("transformers", reason="parity tests need Hugging Face transformers")
peft = pytest.importorskip("peft", reason="parity tests need Hugging Face PEFT")

from minillm.models import T5ForConditionalGeneration  # noqa: E402
from minillm.peft import LoraConfig, PeftModel, PromptTuningConfig, get_peft_model  # noqa: E402

IDS = np.array([[5, 6, 7, 8, 9, 1], [10, 11, 12, 1, 0, 0]])
MASK = (IDS != 0).astype(np.int64)
DECODER_IDS = np.array([[0, 3, 4, 5], [0, 6, 7, 1]])


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    """A tiny random Hugging Face T5 saved as a folder both libraries load."""
    torch.manual_seed(0)
    config = transformers.T5Config(vocab_size=64, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                                   dropout_rate=0.0, decoder_start_token_id=0)
    directory = tmp_path_factory.mktemp("base")
    transformers.T5ForConditionalGeneration(config).eval().save_pretrained(directory)
    return directory


def hf_base(base_dir):
    return transformers.T5ForConditionalGeneration.from_pretrained(base_dir).eval()


def hf_logits(model):
    with torch.no_grad():
        out = model(input_ids=torch.tensor(IDS), attention_mask=torch.tensor(MASK),
                    decoder_input_ids=torch.tensor(DECODER_IDS))
    return out.logits.numpy()


def our_logits(model):
    return model(input_ids=IDS, attention_mask=MASK, decoder_input_ids=DECODER_IDS).logits.data


def assert_close(ours, theirs):
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-4 * max(1.0, np.abs(theirs).max()))


def test_bases_agree(base_dir):
    assert_close(our_logits(T5ForConditionalGeneration.from_pretrained(base_dir)), hf_logits(hf_base(base_dir)))


def test_lora_saved_by_peft_loads_into_minillm(base_dir, tmp_path):
    torch.manual_seed(1)
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q", "v"], init_lora_weights=False,
                             task_type="SEQ_2_SEQ_LM")
    theirs = peft.get_peft_model(hf_base(base_dir), config).eval()
    theirs.save_pretrained(tmp_path)
    ours = PeftModel.from_pretrained(T5ForConditionalGeneration.from_pretrained(base_dir), tmp_path)
    expected = hf_logits(theirs)
    assert np.abs(expected - hf_logits(hf_base(base_dir))).max() > 1e-3  # B != 0: the adapter matters
    assert_close(our_logits(ours), expected)


def test_lora_saved_by_minillm_loads_into_peft(base_dir, tmp_path):
    ours = get_peft_model(T5ForConditionalGeneration.from_pretrained(base_dir),
                          LoraConfig(r=4, lora_alpha=8, target_modules=["q", "v"], init_lora_weights=False))
    ours.save_pretrained(tmp_path)
    theirs = peft.PeftModel.from_pretrained(hf_base(base_dir), tmp_path).eval()
    expected = our_logits(ours)
    assert np.abs(expected - hf_logits(hf_base(base_dir))).max() > 1e-3
    assert_close(hf_logits(theirs), expected)
    # and PEFT's own merge agrees with the unmerged adapter, as ours does
    assert_close(hf_logits(theirs.merge_and_unload()), expected)


def test_soft_prompt_saved_by_peft_loads_into_minillm(base_dir, tmp_path):
    torch.manual_seed(2)
    config = peft.PromptTuningConfig(task_type="SEQ_2_SEQ_LM", num_virtual_tokens=5)
    theirs = peft.get_peft_model(hf_base(base_dir), config).eval()
    theirs.save_pretrained(tmp_path)  # prompt_embeddings (2 * 5, d): seq2seq keeps decoder rows too
    ours = PeftModel.from_pretrained(T5ForConditionalGeneration.from_pretrained(base_dir), tmp_path)
    assert_close(our_logits(ours), hf_logits(theirs))


def test_soft_prompt_saved_by_minillm_loads_into_peft(base_dir, tmp_path):
    ours = get_peft_model(T5ForConditionalGeneration.from_pretrained(base_dir),
                          PromptTuningConfig(num_virtual_tokens=4, prompt_tuning_init="sample_vocab"))
    ours.save_pretrained(tmp_path)
    theirs = peft.PeftModel.from_pretrained(hf_base(base_dir), tmp_path).eval()
    expected = our_logits(ours)
    assert np.abs(expected - hf_logits(hf_base(base_dir))).max() > 1e-3
    assert_close(hf_logits(theirs), expected)


@pytest.mark.parametrize("targets", [["q", "v"], ["q", "k", "v", "o", "wi", "wo"]])
def test_trainable_percent_is_peft_s(base_dir, targets):
    """Same base, same LoRA: the (trainable, all) counts and trainable% equal PEFT's own."""
    from minillm.peft.model import trainable_percent  # noqa: PLC0415

    theirs = peft.get_peft_model(hf_base(base_dir), peft.LoraConfig(r=4, target_modules=targets,
                                                                     task_type="SEQ_2_SEQ_LM"))
    ours = get_peft_model(T5ForConditionalGeneration.from_pretrained(base_dir),
                          LoraConfig(r=4, target_modules=targets))
    trainable, total = theirs.get_nb_trainable_parameters()
    assert ours.get_nb_trainable_parameters() == (trainable, total)
    assert trainable_percent(ours) == pytest.approx(100 * trainable / total, rel=1e-12)
