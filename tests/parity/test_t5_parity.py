"""T5 parity with Hugging Face transformers (the oracle): logits, loss, gradients and file exchange.

transformers 5 semantics: its T5 always ties ``lm_head`` to ``shared`` unless the file holds a
different ``lm_head.weight``, and ``tie_word_embeddings=False`` in a transformers config only turns
off the d_model**-0.5 rescale (``scale_decoder_outputs``). minillm keeps the two flags apart.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="parity tests need PyTorch as the oracle's backend")
transformers = pytest.importorskip("transformers", reason="parity tests need Hugging Face transformers")

from minillm.models import T5Config, T5ForConditionalGeneration  # noqa: E402
from minillm.nn.attention import relative_position_bucket  # noqa: E402

BASE = dict(vocab_size=48, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, dropout_rate=0.0)

# (name, minillm config overrides, encoder length, decoder length)
CASES = [
    ("relu-tied", dict(feed_forward_proj="relu"), 12, 7),
    ("gated-gelu-untied", dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False), 12, 7),
    ("relu-tied-no-rescale", dict(scale_decoder_outputs=False), 10, 6),
    ("gated-gelu-8-buckets-20", dict(feed_forward_proj="gated-gelu", relative_attention_num_buckets=8,
                                     relative_attention_max_distance=20), 30, 26),
    ("relu-32-buckets-20-untied", dict(relative_attention_max_distance=20, tie_word_embeddings=False,
                                       num_decoder_layers=3), 27, 24),
]


def make_batch(src_len, tgt_len, vocab, seed=0):
    """Encoder ids with padding (mask 0) in two rows; labels with -100 in two rows."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(2, vocab, size=(3, src_len))
    ids[:, -1] = 1
    ids[1, src_len // 2:] = 0
    ids[1, src_len // 2 - 1] = 1
    ids[2, src_len - 3:] = 0
    labels = rng.integers(2, vocab, size=(3, tgt_len))
    labels[:, -1] = 1
    labels[0, tgt_len // 2:] = -100
    labels[2, -2:] = -100
    return ids, (ids != 0).astype(np.int64), labels


def minillm_to_hf(model, directory):
    model.save_pretrained(directory)
    return transformers.T5ForConditionalGeneration.from_pretrained(directory).eval()


def hf_outputs(hf, ids, mask, labels):
    out = hf(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), labels=torch.tensor(labels))
    return out.logits.detach().numpy(), out.loss


def assert_logits_close(ours, theirs):
    scale = np.abs(theirs).max()
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-4 * scale)


@pytest.mark.parametrize("name, overrides, src_len, tgt_len", CASES, ids=[c[0] for c in CASES])
def test_logits_loss_and_every_gradient_match_transformers(tmp_path, name, overrides, src_len, tgt_len):
    model = T5ForConditionalGeneration(T5Config(**{**BASE, **overrides})).eval()
    hf = minillm_to_hf(model, tmp_path)
    ids, mask, labels = make_batch(src_len, tgt_len, BASE["vocab_size"])

    out = model(input_ids=ids, attention_mask=mask, labels=labels)
    out.loss.backward()
    hf_logits, hf_loss = hf_outputs(hf, ids, mask, labels)
    hf_loss.backward()

    assert_logits_close(out.logits.data, hf_logits)
    assert out.loss.item() == pytest.approx(hf_loss.item(), rel=1e-5)
    hf_params = dict(hf.named_parameters())
    ours = dict(model.named_parameters())
    assert set(ours) == set(hf_params)
    for param_name, p in ours.items():
        expected = hf_params[param_name].grad.numpy()
        scale = np.abs(expected).max()
        assert scale > 0, param_name
        assert np.abs(p.grad - expected).max() / scale < 1e-3, param_name


@pytest.mark.parametrize("feed_forward_proj, tie", [("relu", True), ("gated-gelu", False)])
def test_a_transformers_checkpoint_loads_into_minillm(tmp_path, feed_forward_proj, tie):
    """HF -> minillm: a model initialised and saved by transformers gives the same logits here."""
    torch.manual_seed(0)
    config = transformers.T5Config(**{**BASE, "feed_forward_proj": feed_forward_proj,
                                      "relative_attention_max_distance": 20},
                                   decoder_start_token_id=0, tie_word_embeddings=tie)
    hf = transformers.T5ForConditionalGeneration(config).eval()
    if not tie:  # a separately trained lm_head, as in T5 v1.1 / FLAN-T5 checkpoints
        hf.lm_head.weight = torch.nn.Parameter(torch.randn_like(hf.shared.weight) * 0.2)
    hf.save_pretrained(tmp_path)
    model = T5ForConditionalGeneration.from_pretrained(tmp_path)
    assert model.config.scale_decoder_outputs == tie
    ids, mask, labels = make_batch(25, 9, BASE["vocab_size"], seed=1)
    hf_logits, hf_loss = hf_outputs(hf, ids, mask, labels)
    out = model(input_ids=ids, attention_mask=mask, labels=labels)
    assert_logits_close(out.logits.data, hf_logits)
    assert out.loss.item() == pytest.approx(hf_loss.item(), rel=1e-5)


def test_minillm_checkpoint_loads_into_transformers_and_back(tmp_path):
    """minillm -> HF -> minillm: logits agree at every hop."""
    model = T5ForConditionalGeneration(T5Config(**{**BASE, "feed_forward_proj": "gated-gelu",
                                                   "tie_word_embeddings": False})).eval()
    hf = minillm_to_hf(model, tmp_path / "ours")
    hf.save_pretrained(tmp_path / "theirs")
    back = T5ForConditionalGeneration.from_pretrained(tmp_path / "theirs")
    ids, mask, labels = make_batch(11, 5, BASE["vocab_size"], seed=2)
    ours = model(input_ids=ids, attention_mask=mask, labels=labels).logits.data
    assert_logits_close(ours, hf_outputs(hf, ids, mask, labels)[0])
    np.testing.assert_allclose(back(input_ids=ids, attention_mask=mask, labels=labels).logits.data, ours,
                               rtol=0, atol=1e-6 * np.abs(ours).max())


def test_parameter_count_matches_transformers(tmp_path):
    model = T5ForConditionalGeneration(T5Config(**BASE))
    hf = minillm_to_hf(model, tmp_path)
    assert model.num_parameters() == sum(p.numel() for p in hf.parameters())


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("num_buckets, max_distance", [(32, 128), (8, 20), (32, 20), (16, 64)])
def test_relative_position_bucket_matches_transformers(bidirectional, num_buckets, max_distance):
    from transformers.models.t5.modeling_t5 import T5Attention  # noqa: PLC0415

    rel = np.arange(-300, 301)
    expected = T5Attention._relative_position_bucket(torch.tensor(rel), bidirectional=bidirectional,
                                                     num_buckets=num_buckets, max_distance=max_distance)
    ours = relative_position_bucket(rel, bidirectional=bidirectional, num_buckets=num_buckets,
                                    max_distance=max_distance)
    np.testing.assert_array_equal(ours, expected.numpy())
