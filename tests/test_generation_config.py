"""GenerationConfig: its checks, its file, its defaults in a model folder; and generation's bounds.

Parity of every option with transformers is in tests/parity/test_generation_config_parity.py;
here are the behaviours that need no oracle, with hand-worked expectations.
"""
import json
from types import SimpleNamespace

import numpy as np
import pytest

from minillm.generation import GenerationTooLarge, estimate_generation_bytes, generate
from minillm.generation_config import GenerationConfig
from minillm.models import T5Config, T5ForConditionalGeneration

EOS, PAD, VOCAB = 1, 0, 40


def tiny_t5():
    model = T5ForConditionalGeneration(T5Config(vocab_size=VOCAB, d_model=32, d_kv=8, d_ff=64, num_layers=2,
                                                num_heads=4, dropout_rate=0.0)).eval()
    for name, p in model.named_parameters():
        if name.endswith(("q.weight", "k.weight", "v.weight", "o.weight", "wi.weight", "wo.weight")):
            p.data = p.data * np.float32(5.0)  # sharpened: varied tokens (seed 0)
    return model


def batch():
    ids = np.random.default_rng(0).integers(2, VOCAB, size=(3, 6))
    ids[:, -1] = EOS
    ids[1, 3:] = [EOS, PAD, PAD]
    return ids, (ids != PAD).astype(np.int64)


# ---------------------------------------------------------------------------------- checks
@pytest.mark.parametrize("settings, message", [
    (dict(early_stopping="sometimes"), "early_stopping must be True, False or \"never\", got 'sometimes'"),
    (dict(early_stopping=1), "early_stopping must be True, False or \"never\", got 1"),
    (dict(num_beams=2, num_return_sequences=3), "num_return_sequences (3) must be <= num_beams (2)"),
    (dict(num_return_sequences=2), "greedy search returns one sequence per input"),
    (dict(num_beams=2, do_sample=True), "beam sampling"),
    (dict(max_new_tokens=0), "max_new_tokens must be >= 1, got 0"),
    (dict(top_p=0.0), "top_p must be in (0, 1], got 0.0"),
    (dict(temperature=0.0), "temperature must be > 0"),
    (dict(num_beams=2.5), "num_beams must be an integer, got 2.5"),
])
def test_settings_out_of_range_are_refused_by_name(settings, message):
    with pytest.raises(ValueError) as err:
        GenerationConfig(**settings)
    assert message in str(err.value)


def test_generate_refuses_an_unknown_option_listing_the_known_ones():
    ids, mask = batch()
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['num_beam'\].*'num_beams'"):
        generate(tiny_t5(), ids, mask, num_beam=2)


# ---------------------------------------------------------------------------------- the file
def test_a_file_written_is_read_back_with_every_setting(tmp_path):
    config = GenerationConfig(max_new_tokens=7, num_beams=3, num_return_sequences=2, length_penalty=0.5,
                              early_stopping="never", output_scores=True, eos_token_id=1)
    config.save_pretrained(tmp_path)
    content = json.loads((tmp_path / "generation_config.json").read_text())
    assert content["minillm_version"] and "transformers_version" not in content
    assert GenerationConfig.from_pretrained(tmp_path) == config


def test_max_length_counts_the_decoder_start_token(tmp_path):
    assert GenerationConfig.from_dict({"max_length": 20}).max_new_tokens == 19
    assert GenerationConfig.from_dict({"max_length": 20, "max_new_tokens": 5}).max_new_tokens == 5


def test_a_behaviour_minillm_does_not_implement_is_refused_naming_the_file(tmp_path):
    (tmp_path / "generation_config.json").write_text(json.dumps({"num_beams": 4, "no_repeat_ngram_size": 3}))
    with pytest.raises(ValueError, match=r"generation_config.json: no_repeat_ngram_size=3 is not implemented"):
        GenerationConfig.from_pretrained(tmp_path)
    # its no-op value, and keys about the file, are accepted
    config = GenerationConfig.from_dict({"no_repeat_ngram_size": 0, "transformers_version": "4.27.0", "num_beams": 2})
    assert config.num_beams == 2


def test_a_model_folder_brings_its_generation_config_and_generate_uses_it(tmp_path):
    model = tiny_t5()
    ids, mask = batch()
    model.generation_config = GenerationConfig(max_new_tokens=3, num_beams=2, num_return_sequences=2)
    model.save_pretrained(tmp_path)
    loaded = T5ForConditionalGeneration.from_pretrained(tmp_path)
    assert loaded.generation_config == model.generation_config
    out = loaded.generate(ids, mask)
    assert out.shape[0] == 6 and out.shape[1] <= 4  # 2 sequences per input, at most 3 new tokens
    assert loaded.generate(ids, mask, num_return_sequences=1, max_new_tokens=5).shape[0] == 3  # overrides win


# ---------------------------------------------------------------------------------- outputs
def test_beam_search_returns_its_best_hypotheses_in_order_with_their_scores():
    model, (ids, mask) = tiny_t5(), batch()
    out = generate(model, ids, mask, num_beams=4, num_return_sequences=3, max_new_tokens=5,
                   output_scores=True, return_dict_in_generate=True)
    assert out.sequences.shape[0] == 9 and out.sequences_scores.shape == (9,)
    scores = out.sequences_scores.reshape(3, 3)
    assert (np.diff(scores, axis=1) <= 0).all()  # best first
    assert len({tuple(row) for row in out.sequences[:3].tolist()}) == 3  # three different hypotheses
    best = generate(model, ids, mask, num_beams=4, max_new_tokens=5)
    np.testing.assert_array_equal(out.sequences[::3, :best.shape[1]], best)


def test_sampling_draws_num_return_sequences_per_input_in_input_order():
    model, (ids, mask) = tiny_t5(), batch()
    out = generate(model, ids, mask, do_sample=True, num_return_sequences=4, max_new_tokens=6, seed=3)
    assert out.shape[0] == 12 and len({tuple(r) for r in out[4:8].tolist()}) > 1  # four different draws
    # with one candidate per step every draw is the greedy answer, so row b * 4 + j belongs to input b
    one = generate(model, ids, mask, do_sample=True, top_k=1, num_return_sequences=4, max_new_tokens=6, seed=3)
    greedy = generate(model, ids, mask, max_new_tokens=6)
    assert len({tuple(r) for r in greedy.tolist()}) == 3  # the inputs have different answers
    np.testing.assert_array_equal(one, np.repeat(greedy, 4, axis=0))


def test_greedy_scores_are_the_logits_whose_argmax_was_taken():
    model, (ids, mask) = tiny_t5(), batch()
    out = generate(model, ids, mask, max_new_tokens=4, output_scores=True, return_dict_in_generate=True)
    assert len(out.scores) == out.sequences.shape[1] - 1
    for step, logits in enumerate(out.scores):
        np.testing.assert_array_equal(logits.argmax(-1), out.sequences[:, step + 1])


# ---------------------------------------------------------------------------------- bounds
def test_the_memory_estimate_is_the_key_value_cache_plus_scores_plus_tables():
    c = SimpleNamespace(num_decoder_layers=2, num_heads=4, d_kv=8, vocab_size=40, d_model=32)
    config = GenerationConfig(max_new_tokens=9, num_beams=3)
    # rows 2 x 3 = 6; cache 2 layers x (k, v) x 6 rows x 32 values x (10 + 5 positions) x 4 bytes = 46080;
    # scores 6 x 40 x (12 + 8) = 4800; token tables 6 x 10 x 8 x 4 = 1920; encoder 6 x 5 x 32 x 4 = 3840
    assert estimate_generation_bytes(c, batch=2, src_len=5, config=config) == 46080 + 4800 + 1920 + 3840


@pytest.mark.parametrize("settings", [dict(max_new_tokens=10 ** 9), dict(num_beams=10 ** 6, max_new_tokens=4000)])
def test_a_request_that_cannot_fit_is_refused_before_any_work(settings):
    model, (ids, mask) = tiny_t5(), batch()
    calls = []
    object.__setattr__(model, "encode", lambda *a, **k: calls.append(1))
    with pytest.raises(GenerationTooLarge, match=r"needs about [\d.e+]+ GiB \(key/value cache: 2 layers .*"
                                                 r"but only [\d.e+]+ GiB is available"):
        generate(model, ids, mask, **settings)
    assert calls == []  # refused before the encoder ran
