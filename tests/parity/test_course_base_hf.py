"""The course base folder loads in Hugging Face transformers and computes what minillm computes."""
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="parity tests need PyTorch as the oracle's backend")
transformers = pytest.importorskip("transformers", reason="parity tests need Hugging Face transformers")

from minillm.course import ensure_base  # noqa: E402
from minillm.data import Tokenizer  # noqa: E402
from minillm.models import T5ForConditionalGeneration  # noqa: E402


def test_smoke_base_loads_in_transformers(tmp_path, monkeypatch):
    monkeypatch.setenv("MINILLM_CACHE", str(tmp_path))
    folder = ensure_base(smoke=True, echo=lambda text: None, progress=False)
    hf_model = transformers.T5ForConditionalGeneration.from_pretrained(folder).eval()
    # T5TokenizerFast expects a Unigram vocabulary (transformers 5); ours is BPE, read as a tokenizer.json.
    hf_tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"))
    ours = T5ForConditionalGeneration.from_pretrained(folder)
    tokenizer = Tokenizer.from_pretrained(str(folder))

    prompt = "Translate to Zorbish:\n\nthe big dog saw the cats"
    ids = tokenizer.encode(prompt)
    assert hf_tokenizer(prompt)["input_ids"] == ids  # the same ids, </s> included
    labels = np.array([ids[:5] + [1]])
    with torch.no_grad():
        expected = hf_model(input_ids=torch.tensor([ids]), labels=torch.tensor(labels)).logits.numpy()
    got = ours(input_ids=np.array([ids]), labels=labels).logits.data
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
