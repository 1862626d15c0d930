"""Tests for the bugs that survived a mutation run over the library (issue 14), in the plain suite.

Each test names the planted bug it must catch. The oracles are hand computations or float64
NumPy written here, never the code under test, and none needs the reference tools (rouge-score,
sacrebleu, transformers): the planted ROUGE-Lsum and BLEU bugs used to be caught only with them.
"""
import math

import numpy as np
import pytest

import minillm
from minillm.metrics.bleu import corpus_bleu, sentence_bleu
from minillm.metrics.rouge import rouge_score
from minillm.models import T5Config, T5ForConditionalGeneration
from minillm.nn import Linear, Parameter, RMSNorm
from minillm.peft import LoraConfig, LoraLinear, get_peft_model


def tiny_t5(seed=0, **overrides):
    minillm.manual_seed(seed)
    options = dict(vocab_size=40, d_model=16, d_kv=4, d_ff=24, num_layers=2, num_heads=4, dropout_rate=0.0)
    options.update(overrides)
    return T5ForConditionalGeneration(T5Config(**options)).eval()


# ------------------------------------------------------------- LoRA dropout acts on the input
def test_lora_dropout_drops_entries_of_the_input_not_of_the_lora_output():
    # Bug caught: dropout applied to the LoRA branch's output, s·dropout(B A x), instead of s·B A dropout(x).
    # With d_in <= r < d_out, M = s Aᵀ Bᵀ (d_in, d_out) has full row rank, so the dropped input x̃ is
    # recovered exactly from the LoRA branch: x̃ = (y - x Wᵀ) M⁺. Input dropout makes each x̃ entry
    # either 0 or x / (1 - p); dropout on the output gives a delta that no such x̃ explains.
    d_in, r, d_out, p, n = 3, 4, 7, 0.5, 10
    rng = np.random.default_rng(0)
    base = Linear(d_in, d_out, bias=False)
    base.weight = Parameter(rng.standard_normal((d_out, d_in)), requires_grad=False)
    layer = LoraLinear(base)
    layer.update_layer("default", LoraConfig(r=r, lora_alpha=8, lora_dropout=p))
    layer.active_adapter = "default"
    A, B = rng.standard_normal((r, d_in)), rng.standard_normal((d_out, r))
    layer.lora_A["default"].weight.data, layer.lora_B["default"].weight.data = A, B
    layer.train()
    s = 8 / r
    x = rng.standard_normal((n, d_in))
    minillm.manual_seed(1)
    y = layer(minillm.Tensor(x)).data
    delta = y - x @ base.weight.data.T
    x_dropped = delta @ np.linalg.pinv(s * A.T @ B.T)
    np.testing.assert_allclose(x_dropped @ (s * A.T @ B.T), delta, atol=1e-9)  # explained by some input
    kept = np.isclose(x_dropped, x / (1 - p), rtol=1e-9, atol=1e-9)
    dropped = np.isclose(x_dropped, 0.0, atol=1e-9)
    assert np.all(kept | dropped), "the LoRA branch is not B A applied to a dropped-out input"
    assert kept.any() and dropped.any()
    layer.eval()  # and no dropout at evaluation
    np.testing.assert_allclose(layer(minillm.Tensor(x)).data, x @ (base.weight.data + s * B @ A).T, atol=1e-12)


# ------------------------------------------------------------- deleting a merged adapter
def test_deleting_a_merged_lora_adapter_gives_back_the_original_weights():
    # Bug caught: delete_adapter on a merged adapter leaves s B A inside W (no unmerge first).
    model = tiny_t5()
    original = {name: p.data.copy() for name, p in model.named_parameters()}
    ids = np.array([[5, 6, 7, 1]])
    labels = np.array([[8, 9, 1]])
    before = model(input_ids=ids, labels=labels).logits.data.copy()
    peft = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules=["q", "v"]))
    rng = np.random.default_rng(0)
    for name, p in peft.named_parameters():
        if "lora_B" in name:
            p.data = rng.standard_normal(p.shape).astype(np.float32)
    peft.merge_adapter()
    merged_q = peft.base_model.encoder.block[0].layer[0].SelfAttention.q.base_layer.weight.data.copy()
    assert not np.allclose(merged_q, original["encoder.block.0.layer.0.SelfAttention.q.weight"])  # it did merge
    peft.delete_adapter("default")
    restored = dict(peft.base_model.named_parameters())
    assert set(restored) == set(original)  # the wrappers are gone: plain names again
    for name, value in original.items():
        # W + D - D in float32: within a few ulps of |W| + |D|
        np.testing.assert_allclose(restored[name].data, value, rtol=0, atol=1e-5, err_msg=name)
    np.testing.assert_allclose(peft.base_model(input_ids=ids, labels=labels).logits.data, before, atol=1e-4)


def test_deleting_a_merged_adapter_on_one_layer_unmerges_it():
    rng = np.random.default_rng(3)
    base = Linear(5, 4, bias=False)
    W = rng.standard_normal((4, 5))
    base.weight = Parameter(W.copy(), requires_grad=False)
    layer = LoraLinear(base)
    layer.update_layer("default", LoraConfig(r=2, lora_alpha=2))
    layer.active_adapter = "default"
    layer.lora_B["default"].weight.data = rng.standard_normal((4, 2))
    layer.merge()
    layer.delete_adapter("default")
    np.testing.assert_allclose(layer.base_layer.weight.data, W, rtol=0, atol=1e-12)
    assert layer.merged_adapters == []


# ------------------------------------------------------------- relative position buckets
def _t5_bucket(rel, bidirectional, num_buckets=32, max_distance=128):
    """T5's bucket for one relative position (key - query), in plain Python floats."""
    bucket = 0
    if bidirectional:
        num_buckets //= 2
        bucket = num_buckets if rel > 0 else 0
        n = abs(rel)
    else:
        n = max(-rel, 0)
    max_exact = num_buckets // 2
    if n < max_exact:
        return bucket + n
    large = max_exact + int(math.log(n / max_exact) / math.log(max_distance / max_exact) * (num_buckets - max_exact))
    return bucket + min(large, num_buckets - 1)


@pytest.mark.parametrize("distance, decoder_bucket, encoder_bucket", [
    # key `distance` positions before the query. Decoder: 32 one-directional buckets, 16 exact;
    # encoder: 16 buckets per direction, 8 exact. E.g. 20: 16 + ⌊ln(20/16)/ln(8)·16⌋ = 16 + ⌊1.72⌋ = 17;
    # encoder 20: 8 + ⌊ln(20/8)/ln(16)·8⌋ = 8 + ⌊2.64⌋ = 10.
    (0, 0, 0), (5, 5, 5), (15, 15, 8 + 1), (16, 16, 10), (20, 17, 10), (32, 21, 12), (64, 26, 14),
    (127, 31, 15), (128, 31, 15), (500, 31, 15),
])
def test_hand_computed_buckets(distance, decoder_bucket, encoder_bucket):
    assert _t5_bucket(-distance, bidirectional=False) == decoder_bucket
    assert _t5_bucket(-distance, bidirectional=True) == encoder_bucket


def test_decoder_relative_position_bias_is_one_directional_beyond_the_exact_buckets():
    # Bug caught: the decoder's bias computed with bidirectional buckets (the encoder's rule).
    # Queries and keys over 140 positions reach every log-spaced bucket and past max_distance.
    model = tiny_t5()
    for stack, bidirectional in ((model.decoder, False), (model.encoder, True)):
        attention = stack.block[0].layer[0].SelfAttention
        table = attention.relative_attention_bias.weight.data  # (buckets, heads)
        L = 140
        bias = attention.compute_bias(L, L).data[0]  # (heads, q, k)
        expected_buckets = np.array([[_t5_bucket(k - q, bidirectional) for k in range(L)] for q in range(L)])
        np.testing.assert_array_equal(bias, np.moveaxis(table[expected_buckets], -1, 0))


def test_decoder_bias_with_a_cache_offset_matches_the_full_bias_rows():
    # A decoding step at position 30 (the cache case) sees the same row as the full computation.
    attention = tiny_t5().decoder.block[0].layer[0].SelfAttention
    full = attention.compute_bias(31, 31).data
    step = attention.compute_bias(1, 31, offset=30).data
    np.testing.assert_array_equal(step[0, :, 0], full[0, :, 30])


# ------------------------------------------------------------- layer_norm_epsilon reaches every norm
def _rms_norm_by_hand(x, weight, eps):
    x = x.astype(np.float64)
    return x / np.sqrt((x * x).mean(axis=-1, keepdims=True) + eps) * weight


def _check_every_norm(model, eps):
    norms = [(name, m) for name, m in model.named_modules() if isinstance(m, RMSNorm)]
    # encoder: 2 per block + final; decoder: 3 per block + final
    assert len(norms) == 2 * 2 + 1 + 3 * 2 + 1, [name for name, _ in norms]
    rng = np.random.default_rng(0)
    # Small activations, so that eps dominates mean(x²) and a wrong eps changes the output a lot.
    x = (1e-2 * rng.standard_normal((3, 16))).astype(np.float32)
    for name, norm in norms:
        weight = norm.weight.data.astype(np.float64)
        np.testing.assert_allclose(norm(minillm.Tensor(x)).data, _rms_norm_by_hand(x, weight, eps),
                                   rtol=1e-5, err_msg=f"{name} does not use layer_norm_epsilon={eps}")


def test_a_configured_layer_norm_epsilon_reaches_every_norm():
    # Bug caught: one norm (e.g. final_layer_norm, or the cross-attention's) left at the default 1e-6.
    _check_every_norm(tiny_t5(layer_norm_epsilon=1e-3), 1e-3)


def test_layer_norm_epsilon_survives_save_and_load(tmp_path):
    model = tiny_t5(layer_norm_epsilon=1e-3)
    model.save_pretrained(tmp_path)
    _check_every_norm(T5ForConditionalGeneration.from_pretrained(tmp_path).eval(), 1e-3)


# ------------------------------------------------------------- ROUGE-Lsum: LCS tie-breaking
def test_rouge_lsum_breaks_lcs_ties_like_rouge_score():
    # Bug caught: the LCS walk-back breaking ties the other way (left instead of up).
    # Reference "a b"; prediction sentences "b a" and "b". LCS("a b", "b a") has length 1 and two
    # readings, {a} or {b}. rouge-score moves up on a tie and reads {a}; with "b" from the second
    # sentence the union is {a, b}: 2 hits. Precision 2/3 (three predicted tokens), recall 2/2,
    # F = 2·(2/3)·1 / (2/3 + 1) = 0.8. The other tie-break reads {b} twice: 1 hit, F = 0.4.
    score = rouge_score("b a\nb", "a b", rouge_types=["rougeLsum"])["rougeLsum"]
    assert score.precision == pytest.approx(2 / 3)
    assert score.recall == pytest.approx(1.0)
    assert score.fmeasure == pytest.approx(0.8)


def test_rouge_lsum_tie_breaking_in_a_longer_reference():
    # Reference "x a b y"; predictions "b a" and "b". As above the union is {a, b} -> 2 hits of 4
    # reference tokens and 3 predicted: P = 2/3, R = 1/2, F = 2·(1/3)/(7/6) = 4/7.
    score = rouge_score("b a\nb", "x a b y", rouge_types=["rougeLsum"])["rougeLsum"]
    assert (score.precision, score.recall) == pytest.approx((2 / 3, 1 / 2))
    assert score.fmeasure == pytest.approx(4 / 7)


# ------------------------------------------------------------- BLEU: closest reference length, ties
@pytest.mark.parametrize("references", [["a b c d e f", "a b c d"], ["a b c d", "a b c d e f"]])
def test_bleu_takes_the_shorter_reference_when_two_are_equally_close(references):
    # Bug caught: on a tie in |hyp_len - ref_len|, taking the longer (or the first) reference.
    # Hypothesis of 5 tokens; references of 6 and 4 tokens, both 1 away. Every n-gram of the
    # hypothesis is in the 6-token reference, so all four precisions are 1 and BLEU = 100·BP.
    # Shorter reference: r = 4 <= c = 5, BP = 1, BLEU = 100. Longer: BP = exp(1 - 6/5) = 81.87.
    hypothesis = "a b c d e"
    assert sentence_bleu(hypothesis, references).score == pytest.approx(100.0)
    streams = [[ref] for ref in references]  # sacreBLEU's layout: one stream per reference
    result = corpus_bleu([hypothesis], streams)
    assert result.score == pytest.approx(100.0)
    assert (result.sys_len, result.ref_len) == (5, 4)


def test_bleu_brevity_penalty_with_a_single_longer_reference():
    # Control for the test above: with only the 6-token reference BP = exp(1 - 6/5).
    assert sentence_bleu("a b c d e", ["a b c d e f"]).score == pytest.approx(100 * math.exp(1 - 6 / 5))
