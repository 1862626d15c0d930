"""Specification of T5 (models/t5.py, nn/attention.py), checked without any reference library."""
import numpy as np
import pytest

from minillm import Tensor, no_grad
from minillm.models import T5Config, T5ForConditionalGeneration
from minillm.nn.attention import relative_position_bucket

TINY = dict(vocab_size=40, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, dropout_rate=0.0)


def tiny_t5(**overrides):
    return T5ForConditionalGeneration(T5Config(**{**TINY, **overrides})).eval()


def log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


# ---------------------------------------------------------------------------------- config
def test_config_defaults_are_hugging_face_t5_small():
    """Values from the Hugging Face T5Config documentation (google-t5/t5-small)."""
    c = T5Config()
    assert (c.vocab_size, c.d_model, c.d_kv, c.d_ff) == (32128, 512, 64, 2048)
    assert (c.num_layers, c.num_decoder_layers, c.num_heads) == (6, 6, 8)
    assert (c.relative_attention_num_buckets, c.relative_attention_max_distance) == (32, 128)
    assert c.dropout_rate == 0.1 and c.layer_norm_epsilon == 1e-6 and c.initializer_factor == 1.0
    assert c.feed_forward_proj == "relu" and c.tie_word_embeddings is True
    assert c.scale_decoder_outputs is True
    assert (c.pad_token_id, c.eos_token_id, c.decoder_start_token_id) == (0, 1, 0)


def test_rescaling_defaults_to_the_tying_flag_unless_given():
    assert T5Config(tie_word_embeddings=False).scale_decoder_outputs is False
    assert T5Config(tie_word_embeddings=True, scale_decoder_outputs=False).scale_decoder_outputs is False


def test_unknown_feed_forward_projection_is_rejected():
    with pytest.raises(ValueError, match="feed_forward_proj"):
        T5Config(feed_forward_proj="swish")


def test_the_activation_error_lists_every_accepted_value():
    with pytest.raises(ValueError) as error:
        T5Config(feed_forward_proj="gated-swish")
    for value in ("relu", "gelu", "gelu_new", "gelu_pytorch_tanh", "gated-relu", "gated-gelu",
                  "gated-gelu_new", "gated-gelu_pytorch_tanh"):
        assert repr(value) in str(error.value), value


@pytest.mark.parametrize("feed_forward_proj, dense_act_fn, gated", [
    # transformers' T5Config: the part after "gated-", except that "gated-gelu" means "gelu_new"
    ("relu", "relu", False), ("gelu", "gelu", False), ("gelu_new", "gelu_new", False),
    ("gated-gelu", "gelu_new", True), ("gated-relu", "relu", True),
    ("gated-gelu_pytorch_tanh", "gelu_pytorch_tanh", True),
])
def test_feed_forward_proj_names_the_activation_as_transformers_does(feed_forward_proj, dense_act_fn, gated):
    d = T5Config(feed_forward_proj=feed_forward_proj).to_dict()
    assert (d["dense_act_fn"], d["is_gated_act"]) == (dense_act_fn, gated)


def _feed_forward_of(feed_forward_proj, x):
    """The feed-forward's hidden activation h (before wo), from a 1-unit layer with wi = 1 (wi_1 = 1)."""
    from minillm.models.t5 import DenseReluDense

    ff = DenseReluDense(T5Config(**{**TINY, "d_model": 1, "d_ff": 1, "feed_forward_proj": feed_forward_proj}))
    for name in ("wi", "wi_0", "wi_1", "wo"):
        if hasattr(ff, name):
            getattr(ff, name).weight.data[...] = 1.0
    with no_grad():
        return ff(Tensor(np.array(x, dtype=np.float64).reshape(-1, 1))).data.ravel()


def test_gelu_is_exact_and_gated_gelu_is_the_tanh_form():
    # Hand values: exact GELU(x) = x Phi(x); Phi(1) = 0.8413447460685429, Phi(-1) = 1 - Phi(1).
    # tanh form at 1: 0.5 (1 + tanh(sqrt(2/pi) * 1.044715)) = 0.8411919906082768.
    np.testing.assert_allclose(_feed_forward_of("gelu", [1.0, -1.0]),
                               [0.8413447460685429, -0.15865525393145707], rtol=1e-12)
    np.testing.assert_allclose(_feed_forward_of("gated-gelu", [1.0]), [0.8411919906082768], rtol=1e-12)
    np.testing.assert_allclose(_feed_forward_of("gelu_new", [1.0]), [0.8411919906082768], rtol=1e-12)
    np.testing.assert_allclose(_feed_forward_of("relu", [1.0, -1.0]), [1.0, 0.0])


@pytest.mark.parametrize("num_buckets, max_distance, message", [
    (3, 128, "relative_attention_num_buckets must be >= 4"),  # the encoder's 3 // 4 = 0 exact buckets: d / 0
    (8, 4, r"relative_attention_max_distance must be > relative_attention_num_buckets // 2 = 4"),  # log(4/4) = 0
    (32, 10, "= 16"),  # log(10 / 16) < 0: far distances would fall into the exact buckets
])
def test_bucket_arguments_that_break_log_bucketing_are_refused(num_buckets, max_distance, message):
    with pytest.raises(ValueError, match=message):
        T5Config(relative_attention_num_buckets=num_buckets, relative_attention_max_distance=max_distance)


def test_the_smallest_valid_bucket_arguments_bucket_as_t5_does():
    T5Config(relative_attention_num_buckets=4, relative_attention_max_distance=3)
    # causal, 4 buckets, max_distance 3: e = 2 exact; d = 2 -> 2 + floor(log(1) ...) = 2; d = 9 -> 3 (last)
    rel = -np.array([0, 1, 2, 9])
    np.testing.assert_array_equal(relative_position_bucket(rel, False, 4, 3), [0, 1, 2, 3])
    with pytest.raises(ValueError, match="max_distance > max_exact"):
        relative_position_bucket(rel, False, 4, 2)


def test_config_dict_round_trip_keeps_unknown_keys():
    d = T5Config(d_model=64, feed_forward_proj="gated-gelu").to_dict()
    assert d["dense_act_fn"] == "gelu_new" and d["is_gated_act"] is True and d["model_type"] == "t5"
    again = T5Config.from_dict({**d, "task_specific_params": {"x": 1}})
    assert again.d_model == 64 and again.feed_forward_proj == "gated-gelu"
    assert again.to_dict()["task_specific_params"] == {"x": 1}


# ---------------------------------------------------------------------------------- relative positions
# T5's bucketing of a relative position r = key - query (Raffel et al. 2020):
#   bidirectional: n = num_buckets / 2, offset n if r > 0; d = |r|.   causal: n = num_buckets, d = max(-r, 0).
#   e = n / 2 exact buckets; d < e -> bucket d;
#   else min(e + floor(log(d / e) / log(max_distance / e) * (n - e)), n - 1).
BUCKET_CASES = [
    # (relative_position, bidirectional, num_buckets, max_distance, expected bucket)
    (0, True, 32, 128, 0),
    (-1, True, 32, 128, 1),
    (1, True, 32, 128, 17),      # 16 + 1
    (-7, True, 32, 128, 7),      # last exact bucket (e = 8)
    (-8, True, 32, 128, 8),      # 8 + floor(log(1) ...) = 8
    (12, True, 32, 128, 25),     # 16 + 8 + floor(log(1.5)/log(16)*8 = 1.17)
    (-20, True, 32, 128, 10),    # 8 + floor(log(2.5)/log(16)*8 = 2.64)
    (-200, True, 32, 128, 15),   # 8 + 9 = 17, capped at n - 1 = 15
    (200, True, 32, 128, 31),    # 16 + 15
    (5, False, 32, 128, 0),      # the future all maps to bucket 0 in the causal case
    (-3, False, 32, 128, 3),
    (-15, False, 32, 128, 15),   # e = 16
    (-40, False, 32, 128, 23),   # 16 + floor(log(2.5)/log(8)*16 = 7.05)
    (-100, False, 32, 128, 30),  # 16 + floor(log(6.25)/log(8)*16 = 14.1)
    (-200, False, 32, 128, 31),  # capped at 31
    (1, True, 8, 20, 5),         # n = 4, e = 2: 4 + 1
    (-2, True, 8, 20, 2),
    (-5, True, 8, 20, 2),        # 2 + floor(log(2.5)/log(10)*2 = 0.80)
    (-9, True, 8, 20, 3),        # 2 + floor(log(4.5)/log(10)*2 = 1.31)
    (30, True, 8, 20, 7),        # 4 + min(2 + 2, 3)
    (-10, False, 8, 20, 6),      # e = 4: 4 + floor(log(2.5)/log(5)*4 = 2.28)
    (-50, False, 8, 20, 7),      # 4 + 6 capped at 7
]


@pytest.mark.parametrize("relative_position, bidirectional, num_buckets, max_distance, expected", BUCKET_CASES)
def test_relative_position_bucket_matches_the_t5_formula(relative_position, bidirectional, num_buckets,
                                                         max_distance, expected):
    bucket = relative_position_bucket(np.array([relative_position]), bidirectional=bidirectional,
                                      num_buckets=num_buckets, max_distance=max_distance)
    assert int(bucket[0]) == expected


def test_buckets_are_monotone_in_distance_and_within_range():
    rel = np.arange(-300, 301)
    for bidirectional in (True, False):
        buckets = relative_position_bucket(rel, bidirectional=bidirectional, num_buckets=32, max_distance=128)
        assert buckets.min() >= 0 and buckets.max() <= 31
        past = buckets[rel <= 0][::-1]  # distances 0, 1, 2, ... to the left
        assert np.all(np.diff(past) >= 0)


def test_only_the_first_block_owns_a_bias_and_every_block_receives_the_same_one():
    model = tiny_t5(num_layers=3)
    for stack in (model.encoder, model.decoder):
        owners = [i for i, block in enumerate(stack.block)
                  if block.layer[0].SelfAttention.relative_attention_bias is not None]
        assert owners == [0]
    names = [n for n, _ in model.named_parameters() if "relative_attention_bias" in n]
    assert names == ["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
                     "decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]
    received = []
    for block in model.encoder.block:
        original = block.forward

        def spy(hidden, bias=None, _original=original, **kwargs):
            received.append(bias)
            return _original(hidden, bias=bias, **kwargs)

        object.__setattr__(block, "forward", spy)
    model(input_ids=np.array([[3, 4, 5]]), decoder_input_ids=np.array([[0, 6]]))
    assert len(received) == 3 and all(b is received[0] for b in received)
    expected = model.encoder.block[0].layer[0].SelfAttention.compute_bias(3, 3)
    np.testing.assert_array_equal(received[0].data, expected.data)


# ---------------------------------------------------------------------------------- names
HF_NAMES = [
    "shared.weight",
    "encoder.block.0.layer.0.SelfAttention.q.weight",
    "encoder.block.0.layer.0.SelfAttention.k.weight",
    "encoder.block.0.layer.0.SelfAttention.v.weight",
    "encoder.block.0.layer.0.SelfAttention.o.weight",
    "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
    "encoder.block.0.layer.0.layer_norm.weight",
    "encoder.block.1.layer.1.DenseReluDense.wi_0.weight",
    "encoder.block.1.layer.1.DenseReluDense.wi_1.weight",
    "encoder.block.1.layer.1.DenseReluDense.wo.weight",
    "encoder.block.1.layer.1.layer_norm.weight",
    "encoder.final_layer_norm.weight",
    "decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
    "decoder.block.0.layer.1.EncDecAttention.q.weight",
    "decoder.block.0.layer.1.EncDecAttention.o.weight",
    "decoder.block.0.layer.1.layer_norm.weight",
    "decoder.block.1.layer.2.DenseReluDense.wi_0.weight",
    "decoder.block.1.layer.2.DenseReluDense.wo.weight",
    "decoder.block.1.layer.2.layer_norm.weight",
    "decoder.final_layer_norm.weight",
    "lm_head.weight",
]


def test_parameter_names_are_hugging_face_names():
    model = tiny_t5(feed_forward_proj="gated-gelu", tie_word_embeddings=False)
    names = [n for n, _ in model.named_parameters()]
    assert set(HF_NAMES) <= set(names)
    assert not any("relative_attention_bias" in n for n in names if ".block.1." in n or "EncDecAttention" in n)
    # 2 encoder blocks x (4 attention + 1 norm + 3 ff + 1 norm) + 1 bias + final norm;
    # 2 decoder blocks x (4 + 1 + 4 + 1 + 3 + 1) + 1 bias + final norm; shared; lm_head
    assert len(names) == (2 * 9 + 2) + (2 * 14 + 2) + 2


def test_parameter_count_follows_the_architecture():
    c = T5Config(**TINY)
    d, inner, ff, v = c.d_model, c.num_heads * c.d_kv, c.d_ff, c.vocab_size
    attention, ffn, bias = 4 * d * inner, 2 * d * ff, c.relative_attention_num_buckets * c.num_heads
    encoder = 2 * (attention + ffn + 2 * d) + bias + d
    decoder = 2 * (2 * attention + ffn + 3 * d) + bias + d
    assert tiny_t5().num_parameters() == v * d + encoder + decoder
    assert tiny_t5(tie_word_embeddings=False).num_parameters() == 2 * v * d + encoder + decoder


# ---------------------------------------------------------------------------------- forward pass
def test_shift_right_prepends_start_token_and_replaces_ignored_labels_with_pad():
    model = tiny_t5()
    labels = np.array([[5, 6, 1], [7, 1, -100], [8, -100, 1]])
    np.testing.assert_array_equal(model.shift_right(labels), [[0, 5, 6], [0, 7, 1], [0, 8, 0]])


def test_loss_is_mean_cross_entropy_over_labels_that_are_not_minus_100():
    model = tiny_t5()
    input_ids = np.array([[3, 4, 5, 1], [6, 7, 1, 0]])
    labels = np.array([[8, 9, 10, 1], [11, 1, -100, -100]])
    out = model(input_ids=input_ids, attention_mask=(input_ids != 0), labels=labels)
    log_probs = log_softmax(out.logits.data.astype(np.float64))
    keep = labels != -100
    picked = np.take_along_axis(log_probs, np.where(keep, labels, 0)[..., None], axis=-1)[..., 0]
    assert out.loss.item() == pytest.approx(-picked[keep].mean(), rel=1e-5)


def test_padding_is_invisible_to_the_real_tokens():
    """Padded positions (mask 0) change nothing: not the other examples, not the padded example."""
    model = tiny_t5()
    decoder_input_ids = np.array([[0, 5, 6], [0, 7, 8]])
    ids = np.array([[3, 4, 5, 0, 0], [6, 7, 8, 9, 1]])
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    logits = model(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_input_ids).logits.data
    other = ids.copy()
    other[0, 3:] = [12, 13]  # different tokens under the mask
    logits_other = model(input_ids=other, attention_mask=mask, decoder_input_ids=decoder_input_ids).logits.data
    np.testing.assert_allclose(logits_other, logits, rtol=1e-5, atol=1e-6)
    alone = model(input_ids=ids[:1, :3], decoder_input_ids=decoder_input_ids[:1]).logits.data
    np.testing.assert_allclose(alone, logits[:1], rtol=1e-4, atol=1e-5)
    unmasked = model(input_ids=other, decoder_input_ids=decoder_input_ids).logits.data
    assert not np.allclose(unmasked[0], logits[0], atol=1e-4)  # without the mask they would matter


def test_decoder_is_causal():
    model = tiny_t5()
    ids = np.array([[3, 4, 5, 1]])
    dec = np.array([[0, 5, 6, 7, 8]])
    changed = dec.copy()
    changed[0, 3] = 20
    a = model(input_ids=ids, decoder_input_ids=dec).logits.data
    b = model(input_ids=ids, decoder_input_ids=changed).logits.data
    np.testing.assert_array_equal(a[:, :3], b[:, :3])
    assert not np.allclose(a[:, 3:], b[:, 3:])


def test_tied_model_rescales_decoder_output_by_inverse_sqrt_d_model():
    scaled = tiny_t5(scale_decoder_outputs=True)
    plain = tiny_t5(scale_decoder_outputs=False)
    plain.load_state_dict(scaled.state_dict())
    ids, dec = np.array([[3, 4, 5, 1]]), np.array([[0, 5, 6]])
    a = scaled(input_ids=ids, decoder_input_ids=dec).logits.data
    b = plain(input_ids=ids, decoder_input_ids=dec).logits.data
    np.testing.assert_allclose(a, b * TINY["d_model"] ** -0.5, rtol=1e-5, atol=1e-7)


def test_untied_model_has_its_own_lm_head():
    model = tiny_t5(tie_word_embeddings=False)
    assert model.lm_head.weight is not model.shared.weight
    assert model.config.scale_decoder_outputs is False
    tied = tiny_t5()
    assert tied.lm_head.weight is tied.shared.weight


def test_inputs_embeds_give_the_same_output_as_input_ids():
    model = tiny_t5()
    ids, dec = np.array([[3, 4, 5, 1]]), np.array([[0, 5, 6]])
    a = model(input_ids=ids, decoder_input_ids=dec).logits.data
    b = model(inputs_embeds=model.shared(ids), decoder_input_ids=dec).logits.data
    np.testing.assert_array_equal(a, b)


def test_missing_inputs_are_a_clear_error():
    model = tiny_t5()
    with pytest.raises(ValueError, match="input_ids"):
        model(decoder_input_ids=np.array([[0]]))
    with pytest.raises(ValueError, match="labels"):
        model(input_ids=np.array([[3, 1]]))


def test_wrong_attention_mask_shape_is_a_clear_error():
    model = tiny_t5()
    with pytest.raises(ValueError, match="attention_mask"):
        model(input_ids=np.array([[3, 4, 1]]), attention_mask=np.ones((1, 2)), decoder_input_ids=np.array([[0]]))


def test_dropout_makes_training_mode_stochastic_and_eval_deterministic():
    model = tiny_t5(dropout_rate=0.3)
    ids, dec = np.array([[3, 4, 5, 1]]), np.array([[0, 5, 6]])
    model.train()
    a = model(input_ids=ids, decoder_input_ids=dec).logits.data
    b = model(input_ids=ids, decoder_input_ids=dec).logits.data
    assert not np.allclose(a, b)
    model.eval()
    with no_grad():
        c = model(input_ids=ids, decoder_input_ids=dec).logits.data
        d = model(input_ids=ids, decoder_input_ids=dec).logits.data
    np.testing.assert_array_equal(c, d)


@pytest.mark.parametrize("feed_forward_proj", ["relu", "gated-gelu"])
def test_a_few_sgd_steps_reduce_the_loss(feed_forward_proj):
    model = tiny_t5(feed_forward_proj=feed_forward_proj).train()
    input_ids = np.array([[3, 4, 5, 6, 1], [7, 8, 9, 1, 0]])
    labels = np.array([[10, 11, 12, 1], [13, 14, 1, -100]])
    losses = []
    for _ in range(8):
        model.zero_grad()
        loss = model(input_ids=input_ids, attention_mask=input_ids != 0, labels=labels).loss
        loss.backward()
        for p in model.parameters():
            p.data -= 0.5 * p.grad
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
    assert all(np.isfinite(losses))


def test_every_parameter_receives_a_gradient():
    model = tiny_t5(tie_word_embeddings=False, feed_forward_proj="gated-gelu")
    ids = np.array([[3, 4, 5, 1]])
    model(input_ids=ids, labels=np.array([[6, 7, 1]])).loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape, name
        assert np.abs(p.grad).max() > 0, name


def test_logits_tensor_has_batch_length_vocab_shape():
    model = tiny_t5()
    out = model(input_ids=np.array([[3, 4, 1], [5, 1, 0]]), decoder_input_ids=np.array([[0, 5, 6, 7]] * 2))
    assert isinstance(out.logits, Tensor) and out.logits.shape == (2, 4, TINY["vocab_size"])
    assert out.loss is None and out.encoder_last_hidden_state.shape == (2, 3, TINY["d_model"])
