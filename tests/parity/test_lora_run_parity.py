"""A LoRA run of ``minillm finetune`` on a transformers-made folder loads in Hugging Face PEFT, offline.

The base is a random T5 built by transformers (the flan-t5-small structure, shrunk: untied lm_head,
gated-gelu) with a minillm tokenizer. ``finetune --method lora`` writes the adapter, the tokenizer
and ``base_model.json``; ``AutoPeftModelForSeq2SeqLM.from_pretrained(RUN)`` must then find the base
through ``adapter_config.json`` with no network, and give minillm's logits.
"""
import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="parity tests need PyTorch")
transformers = pytest.importorskip("transformers", reason="parity tests need Hugging Face transformers")
peft = pytest.importorskip("peft", reason="this test needs Hugging Face PEFT")

from minillm.cli.folders import load_model  # noqa: E402
from minillm.cli.main import main  # noqa: E402
from minillm.data import Tokenizer  # noqa: E402

SHAPE = dict(d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4,
             feed_forward_proj="gated-gelu", tie_word_embeddings=False, dropout_rate=0.0)
RECORDS = [{"prompt": f"Add one to {a}.", "completion": str(a + 1)} for a in range(24)]


def hub_like_folder(directory):
    """A transformers-initialised T5 folder with a tokenizer, as a Hub download would be."""
    texts = [r["prompt"] + " " + r["completion"] for r in RECORDS] * 4
    tokenizer = Tokenizer.train(texts, vocab_size=120, model="unigram", num_sentinels=8)  # a Hub T5's kind
    torch.manual_seed(0)
    config = transformers.T5Config(vocab_size=tokenizer.vocab_size, decoder_start_token_id=0, pad_token_id=0,
                                   eos_token_id=1, **SHAPE)
    transformers.T5ForConditionalGeneration(config).save_pretrained(directory)
    tokenizer.save(str(directory))
    return directory


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub")
    base = hub_like_folder(root / "base")
    data = root / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINILLM_SMOKE", "1")
        assert main(["finetune", "--model", str(base), "--data", str(data), "--method", "lora", "--lora-r", "4",
                     "--lora-targets", "q,v", "--learning-rate", "1e-2", "--out", str(root / "run")]) == 0
    return root


def test_the_run_holds_the_adapter_tokenizer_and_base_reference_not_the_base(run):
    files = set(os.listdir(run / "run"))
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "base_model.json"} <= files
    assert not files & {"model.safetensors", "config.json"}
    adapter_config = json.loads((run / "run" / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == str(run / "base")


def test_peft_loads_the_run_offline_and_gives_minillms_logits(run, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    theirs = peft.AutoPeftModelForSeq2SeqLM.from_pretrained(str(run / "run")).eval()
    ours, tokenizer = load_model(str(run / "run"))
    enc = tokenizer.batch_encode(["Add one to 3.", "Add one to 17."])
    labels = tokenizer.batch_encode(["4", "18"])["input_ids"]
    with torch.no_grad():
        expected = theirs(input_ids=torch.tensor(enc["input_ids"]), attention_mask=torch.tensor(enc["attention_mask"]),
                          labels=torch.tensor(labels)).logits.numpy()
    got = ours(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], labels=labels).logits.data
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()
    # the adapter moved the model: the base alone gives other logits
    with torch.no_grad(), theirs.disable_adapter():
        base_only = theirs(input_ids=torch.tensor(enc["input_ids"]), labels=torch.tensor(labels)).logits.numpy()
    assert np.abs(base_only - expected).max() > 1e-3
