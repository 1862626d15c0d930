"""Specification of generation.py: greedy, sampling, beam search, the KV cache and stopping.

These tests run a random tiny T5, so most compare two paths of minillm (cached and uncached,
beam and greedy) or check invariants. A bug both paths share needs an independent expectation:
tests/test_generation_scripted.py runs the same code on a scripted decoder with known
log-probabilities and checks it against a brute-force search."""
import numpy as np
import pytest

import minillm
from minillm.generation import _beam_search, filter_logits, generate, resolve_config
from minillm.models import T5Config, T5ForConditionalGeneration

EOS, PAD, VOCAB = 1, 0, 40


def tiny_t5(projection_scale=1.0, eos_scale=1.0, **overrides):
    """A random tiny T5. ``projection_scale`` > 1 sharpens it (varied greedy output instead of one
    token repeated); ``eos_scale`` > 1 scales the tied embedding/lm_head row of </s>, making it likely."""
    settings = dict(vocab_size=VOCAB, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, dropout_rate=0.0)
    model = T5ForConditionalGeneration(T5Config(**{**settings, **overrides})).eval()
    for name, p in model.named_parameters():
        if name.endswith(("q.weight", "k.weight", "v.weight", "o.weight", "wi.weight", "wo.weight")):
            p.data = p.data * np.float32(projection_scale)
    model.shared.weight.data[EOS] *= np.float32(eos_scale)
    return model


def batch():
    """Four encoder inputs ending in </s>; the second and fourth are padded."""
    ids = np.random.default_rng(0).integers(2, VOCAB, size=(4, 7))
    ids[:, -1] = EOS
    ids[1, 4:] = [EOS, PAD, PAD]
    ids[3, 2:] = [EOS, PAD, PAD, PAD, PAD]
    return ids, (ids != PAD).astype(np.int64)


def after_first_eos(row):
    """The tokens after the first </s> of a generated row (empty when there is none)."""
    hits = np.flatnonzero(row[1:] == EOS)
    return row[1 + hits[0] + 1:] if hits.size else row[:0]


# ---------------------------------------------------------------------------------- the KV cache
@pytest.mark.parametrize("eos_scale", [1.0, 2.5])
def test_cached_greedy_decoding_gives_the_tokens_of_uncached_decoding(eos_scale):
    model = tiny_t5(projection_scale=3.0, eos_scale=eos_scale)
    ids, mask = batch()
    cached = generate(model, ids, mask, max_new_tokens=12, use_cache=True)
    uncached = generate(model, ids, mask, max_new_tokens=12, use_cache=False)
    np.testing.assert_array_equal(cached, uncached)
    assert len({tuple(row) for row in cached[:, 1:].tolist()}) > 1  # not a degenerate constant output


def test_cached_sampling_gives_the_tokens_of_uncached_sampling_with_the_same_seed():
    model = tiny_t5()
    ids, mask = batch()
    kwargs = dict(max_new_tokens=10, do_sample=True, top_k=10, temperature=1.3, seed=5)
    np.testing.assert_array_equal(generate(model, ids, mask, use_cache=True, **kwargs),
                                  generate(model, ids, mask, use_cache=False, **kwargs))


@pytest.mark.parametrize("num_beams, length_penalty", [(2, 1.0), (3, 0.5), (4, 2.0)])
def test_cached_beam_search_gives_the_tokens_of_uncached_beam_search(num_beams, length_penalty):
    model = tiny_t5(projection_scale=3.0, eos_scale=2.5)
    ids, mask = batch()
    kwargs = dict(max_new_tokens=8, num_beams=num_beams, length_penalty=length_penalty)
    np.testing.assert_array_equal(generate(model, ids, mask, use_cache=True, **kwargs),
                                  generate(model, ids, mask, use_cache=False, **kwargs))


@pytest.mark.parametrize("eos_scale", [1.0, 2.5])
def test_beam_search_with_one_beam_is_greedy(eos_scale):
    """The beam-search algorithm itself, run with a single beam, keeps the argmax at every step."""
    model = tiny_t5(projection_scale=3.0, eos_scale=eos_scale)
    ids, mask = batch()
    greedy = generate(model, ids, mask, max_new_tokens=10)
    with minillm.no_grad():
        encoder_hidden = model.encode(ids, mask)
        config = resolve_config(model, max_new_tokens=10, num_beams=1)
        beam = _beam_search(model, encoder_hidden, mask, config).sequences
    np.testing.assert_array_equal(beam, greedy)
    np.testing.assert_array_equal(generate(model, ids, mask, max_new_tokens=10, num_beams=1), greedy)


def test_greedy_tokens_are_the_argmax_of_teacher_forced_logits():
    model = tiny_t5(projection_scale=3.0)
    ids, mask = batch()
    tokens = generate(model, ids, mask, max_new_tokens=6)
    logits = model(input_ids=ids, attention_mask=mask, decoder_input_ids=tokens[:, :-1]).logits.data
    np.testing.assert_array_equal(tokens[:, 1:], logits.argmax(-1))


def test_beam_search_finds_a_sequence_at_least_as_likely_as_greedy():
    model = tiny_t5(projection_scale=3.0)
    ids, mask = batch()

    def log_prob(tokens):
        logits = model(input_ids=ids, attention_mask=mask, decoder_input_ids=tokens[:, :-1]).logits.data
        logits = logits.astype(np.float64)
        log_probs = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
            - logits.max(-1, keepdims=True)
        return np.take_along_axis(log_probs, tokens[:, 1:, None], axis=-1)[..., 0].sum(-1)

    # no </s> within 6 tokens for this model, so every hypothesis has the same length
    greedy = generate(model, ids, mask, max_new_tokens=6)
    beam = generate(model, ids, mask, max_new_tokens=6, num_beams=4)
    assert not (greedy[:, 1:] == EOS).any() and beam.shape == greedy.shape
    assert np.all(log_prob(beam) >= log_prob(greedy) - 1e-5)


# ---------------------------------------------------------------------------------- sampling
def test_sampling_is_reproducible_by_seed_and_differs_between_seeds():
    model = tiny_t5()  # a random tiny T5 has a flat next-token distribution
    ids, mask = batch()
    kwargs = dict(max_new_tokens=8, do_sample=True)
    first = generate(model, ids, mask, seed=1, **kwargs)
    np.testing.assert_array_equal(generate(model, ids, mask, seed=1, **kwargs), first)
    assert not np.array_equal(generate(model, ids, mask, seed=2, **kwargs), first)


def test_sampling_without_a_seed_follows_manual_seed():
    model = tiny_t5()
    ids, mask = batch()
    minillm.manual_seed(11)
    first = generate(model, ids, mask, max_new_tokens=8, do_sample=True)
    minillm.manual_seed(11)
    np.testing.assert_array_equal(generate(model, ids, mask, max_new_tokens=8, do_sample=True), first)


def test_top_k_keeps_exactly_the_k_largest_logits():
    logits = np.array([[1.0, 3.0, 2.0, -1.0, 0.5]], dtype=np.float32)
    out = filter_logits(logits, top_k=2)
    np.testing.assert_array_equal(np.isfinite(out), [[False, True, True, False, False]])
    np.testing.assert_array_equal(out[np.isfinite(out)], [3.0, 2.0])


def test_top_p_keeps_the_smallest_set_reaching_p():
    logits = np.log(np.array([[0.15, 0.5, 0.05, 0.3]], dtype=np.float32))
    kept = np.isfinite(filter_logits(logits, top_p=0.6))
    np.testing.assert_array_equal(kept, [[False, True, False, True]])  # 0.5 + 0.3 >= 0.6
    kept = np.isfinite(filter_logits(logits, top_p=0.9))
    np.testing.assert_array_equal(kept, [[True, True, False, True]])  # 0.5 + 0.3 + 0.15 >= 0.9


@pytest.mark.parametrize("top_p", [0.0, 1e-9])
def test_top_p_always_keeps_the_most_likely_token(top_p):
    # The guard matters only when the whole cumulative mass, the top token's included, is <= 1 - p.
    # Row 2 has one finite logit, so its sorted probabilities are exactly 0, 0, 1 and the sum reaches
    # exactly 1.0, which is <= 1 - p for p = 0 and for p = 1e-9 (1 - 1e-9 rounds to 1.0 in float32):
    # without the guard that row would lose every token. (Rows 0 and 1 trigger it only when their
    # float32 sums happen to stay <= 1.0; at p = 0.01 no row triggers it.)
    logits = np.log(np.array([[0.2, 0.5, 0.3], [0.4, 0.3, 0.3], [1.0, 1.0, 1.0]], dtype=np.float32))
    logits[2, [0, 2]] = -np.inf
    kept = np.isfinite(filter_logits(logits, top_p=top_p))
    np.testing.assert_array_equal(kept, [[False, True, False], [True, False, False], [False, True, False]])


def test_temperature_divides_the_logits_and_must_be_positive():
    logits = np.array([[2.0, -4.0]], dtype=np.float32)
    np.testing.assert_allclose(filter_logits(logits, temperature=2.0), [[1.0, -2.0]])
    with pytest.raises(ValueError, match="temperature"):
        filter_logits(logits, temperature=0.0)


def _allowed(logits, temperature, top_k, top_p):
    """The support of the filtered distribution, computed directly from the definitions."""
    order = np.argsort(-logits)
    allowed = set(order[:top_k].tolist()) if top_k else set(order.tolist())
    if top_p < 1.0:
        probs = np.exp((logits - logits.max()) / temperature)
        probs = probs / probs.sum()
        need = int(np.searchsorted(np.cumsum(probs[order]), top_p)) + 1  # smallest prefix reaching p
        allowed &= set(order[:need].tolist())
    return allowed


@pytest.mark.parametrize("top_k, top_p", [(3, 1.0), (0, 0.5), (5, 0.7)])
def test_sampled_tokens_stay_in_the_allowed_support(top_k, top_p):
    model = tiny_t5()
    ids, mask = batch()
    temperature = 1.5
    seen_first_tokens = set()
    for seed in range(12):
        tokens = generate(model, ids, mask, max_new_tokens=5, do_sample=True, temperature=temperature,
                          top_k=top_k, top_p=top_p, seed=seed)
        logits = model(input_ids=ids, attention_mask=mask, decoder_input_ids=tokens[:, :-1]).logits.data
        for b in range(tokens.shape[0]):
            for t in range(1, tokens.shape[1]):
                if tokens[b, t - 1] == EOS or (t > 1 and tokens[b, t - 1] == PAD):
                    break  # finished: the rest is padding
                assert tokens[b, t] in _allowed(logits[b, t - 1].astype(np.float64), temperature, top_k, top_p)
        seen_first_tokens.add(int(tokens[0, 1]))
    assert len(seen_first_tokens) > 1  # the draws really were random


# ---------------------------------------------------------------------------------- stopping
def test_each_sequence_stops_at_its_own_eos_and_is_padded_afterwards():
    model = tiny_t5(eos_scale=3.0)
    ids, mask = batch()
    tokens = generate(model, ids, mask, max_new_tokens=10)
    ended = [bool((row[1:] == EOS).any()) for row in tokens]
    assert any(ended) and not all(ended)  # the batch mixes finished and unfinished sequences
    for row in tokens:
        assert np.all(after_first_eos(row) == PAD)
    assert tokens.shape == (4, 11)
    # a sequence's tokens do not depend on the others finishing
    for b in range(4):
        alone = generate(model, ids[b:b + 1, :mask[b].sum()], None, max_new_tokens=10)
        np.testing.assert_array_equal(alone[0], tokens[b, :alone.shape[1]])


def force_eos(model, eos_at):
    """Make ``model`` emit </s> as generated token number ``eos_at[b]`` of example b (None: never)."""
    decode = model.decode

    def decode_with_forced_eos(decoder_input_ids, *args, past_length=0, **kwargs):
        logits = decode(decoder_input_ids, *args, past_length=past_length, **kwargs)
        # the query at absolute decoder position p predicts generated token p + 1
        position = past_length + np.arange(logits.shape[1])
        for b, k in enumerate(eos_at):
            if k is not None:
                logits.data[b, position + 1 >= k, EOS] += 1e4
        return logits

    object.__setattr__(model, "decode", decode_with_forced_eos)
    return model


@pytest.mark.parametrize("use_cache", [True, False])
def test_a_sequence_that_emitted_eos_gets_only_padding_while_the_others_go_on(use_cache):
    model = tiny_t5(projection_scale=3.0)
    ids, mask = batch()
    free = generate(model, ids, mask, max_new_tokens=8)
    assert not (free == EOS).any()
    eos_at = [3, 1, 6, None]
    tokens = generate(force_eos(model, eos_at), ids, mask, max_new_tokens=8, use_cache=use_cache)
    expected = free.copy()
    for b, k in enumerate(eos_at):
        if k is not None:
            expected[b, k] = EOS
            expected[b, k + 1:] = PAD
    np.testing.assert_array_equal(tokens, expected)


def test_generation_ends_when_every_sequence_has_emitted_eos():
    model = force_eos(tiny_t5(projection_scale=3.0), [2, 1, 3, 2])
    ids, mask = batch()
    tokens = generate(model, ids, mask, max_new_tokens=10)
    assert tokens.shape == (4, 4)
    np.testing.assert_array_equal(tokens[:, 1:] == EOS, [[0, 1, 0], [1, 0, 0], [0, 0, 1], [0, 1, 0]])


@pytest.mark.parametrize("num_beams", [1, 3])
def test_max_new_tokens_is_respected(num_beams):
    model = tiny_t5(projection_scale=3.0)
    ids, mask = batch()
    for n in (1, 4):
        tokens = generate(model, ids, mask, max_new_tokens=n, num_beams=num_beams)
        assert tokens.shape[1] <= 1 + n and (tokens[:, 0] == model.config.decoder_start_token_id).all()
    assert generate(model, ids, mask, max_new_tokens=4, num_beams=num_beams).shape == (4, 5)  # no </s> here


def test_beam_search_output_ends_in_eos_then_padding():
    model = tiny_t5(projection_scale=3.0, eos_scale=2.5)
    ids, mask = batch()
    tokens = generate(model, ids, mask, max_new_tokens=8, num_beams=3)
    for row in tokens:
        assert np.all(after_first_eos(row) == PAD)


def test_generate_restores_training_mode():
    model = tiny_t5().train()
    ids, mask = batch()
    model.generate(ids, mask, max_new_tokens=2)
    assert model.training and all(m.training for m in model.modules())
