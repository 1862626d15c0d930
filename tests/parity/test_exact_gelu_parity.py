"""``feed_forward_proj="gelu"`` is transformers' exact (erf) GELU, not the tanh form.

A random T5 with ``feed_forward_proj="gelu"`` goes to transformers through ``save_pretrained``;
its logits are compared with minillm's, and with those of the same weights run through the tanh
form (``gelu_new``), which is what minillm computed for "gelu" before. The printed figures are the
relative logits differences, max |ours - theirs| / max |theirs|.
"""
import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="parity tests need PyTorch as the oracle's backend")
transformers = pytest.importorskip("transformers", reason="parity tests need Hugging Face transformers")

from minillm import manual_seed, no_grad  # noqa: E402
from minillm.models import T5Config, T5ForConditionalGeneration  # noqa: E402

# initializer_factor 4 makes the pre-activations O(several units), where erf and tanh GELU differ most
CONFIG = dict(vocab_size=64, d_model=32, d_kv=8, d_ff=96, num_layers=2, num_heads=4, dropout_rate=0.0,
              initializer_factor=4.0, feed_forward_proj="gelu")


def _relative_difference(ours, theirs):
    return float(np.abs(ours - theirs).max() / np.abs(theirs).max())


def _saved_and_loaded_by_transformers(tmp_path, seed: int, config: dict, data_seed: int, batch: int,
                                      source: int, target: int):
    """A minillm T5 of ``config``, the same weights in transformers, a random batch, and transformers'
    logits on it."""
    manual_seed(seed)
    model = T5ForConditionalGeneration(T5Config(**config)).eval()
    model.save_pretrained(tmp_path)
    hf = transformers.T5ForConditionalGeneration.from_pretrained(tmp_path).eval()
    rng = np.random.default_rng(data_seed)
    ids, labels = rng.integers(2, 64, (batch, source)), rng.integers(2, 64, (batch, target))
    with torch.no_grad():
        theirs = hf(input_ids=torch.tensor(ids), labels=torch.tensor(labels)).logits.numpy()
    return model, hf, ids, labels, theirs


def test_gelu_logits_match_transformers_exact_gelu(tmp_path):
    model, hf, ids, labels, theirs = _saved_and_loaded_by_transformers(tmp_path, 3, CONFIG, 0, 4, 11, 6)
    assert hf.config.dense_act_fn == "gelu"
    with no_grad():
        exact = model(input_ids=ids, labels=labels).logits.data
        tanh_model = T5ForConditionalGeneration(dataclasses.replace(model.config, feed_forward_proj="gelu_new"))
        tanh_model.load_state_dict(model.state_dict())
        tanh = tanh_model.eval()(input_ids=ids, labels=labels).logits.data
    exact_error, tanh_error = _relative_difference(exact, theirs), _relative_difference(tanh, theirs)
    print(f"relative logits difference vs transformers: exact GELU {exact_error:.2e}, tanh form {tanh_error:.2e}")
    assert exact_error < 1e-5
    assert tanh_error > 20 * exact_error  # the comparison can tell the two forms apart


@pytest.mark.parametrize("feed_forward_proj", ["relu", "gelu", "gelu_new", "gelu_pytorch_tanh", "gated-relu",
                                               "gated-gelu", "gated-gelu_new", "gated-gelu_pytorch_tanh"])
def test_every_accepted_feed_forward_proj_computes_what_transformers_computes(tmp_path, feed_forward_proj):
    config = {**CONFIG, "feed_forward_proj": feed_forward_proj}
    model, hf, ids, labels, theirs = _saved_and_loaded_by_transformers(tmp_path, 4, config, 1, 2, 9, 5)
    assert (hf.config.dense_act_fn, hf.config.is_gated_act) == (model.config.dense_act_fn, model.config.is_gated_act)
    with no_grad():
        ours = model(input_ids=ids, labels=labels).logits.data
    assert _relative_difference(ours, theirs) < 1e-5
