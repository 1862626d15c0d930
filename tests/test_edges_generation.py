"""Edges of generation, traced by hand (issue 26): when beam search may stop, finished hypotheses
beyond the top ``num_beams``, top-p keeping the most likely token, and the cached decoder's mask
for more than one new token.

The beam-search "model" is a table of next-token log-probabilities per prefix (as in
tests/test_generation_scripted.py); each scenario's comment walks the search step by step, so the
expected tokens and the number of decoder calls are known without running the code under test.
"""
import math
from types import SimpleNamespace

import numpy as np
import pytest

import minillm
from minillm.autograd import Tensor
from minillm.generation import filter_logits, generate

PAD, EOS, START, A, B, C = 0, 1, 0, 2, 3, 4
VOCAB = 8  # 5..7 (and any token a script leaves out) share the probability left over


def log_probs(script, prefix):
    given = script.get(tuple(prefix), {})
    rest = (1.0 - sum(math.exp(v) for v in given.values())) / (VOCAB - len(given))
    return np.array([given.get(t, math.log(rest)) for t in range(VOCAB)])


class ScriptedT5:
    """encode/decode/config, enough for ``generate``; the decoder looks each prefix up in ``script``."""

    def __init__(self, script):
        self.script, self.calls, self.training = script, 0, False
        self.config = SimpleNamespace(eos_token_id=EOS, pad_token_id=PAD, decoder_start_token_id=START,
                                      vocab_size=VOCAB, d_model=1, num_heads=1, d_kv=1, num_decoder_layers=1)
        self.decoder = SimpleNamespace(block=[None])

    def eval(self):
        return self

    def train(self, mode=True):
        self.training = mode
        return self

    def encode(self, ids, mask=None, inputs_embeds=None):
        return Tensor(np.zeros((len(ids), 1, 1), dtype=np.float32))

    def decode(self, tokens, encoder_hidden, mask=None, caches=None, past_length=0):
        self.calls += 1
        tokens = np.asarray(tokens)
        if caches is not None:  # the prefix lives in the cache, so beam reordering is exercised
            own = caches[0]["self"]
            own["k"] = Tensor(tokens.copy() if past_length == 0 else np.concatenate([own["k"].data, tokens], 1))
            own["v"] = own["k"]
            tokens = own["k"].data
        rows = [[log_probs(self.script, row[1:i + 1]) for i in range(len(row))] for row in tokens]
        out = np.array(rows, dtype=np.float32)
        return Tensor(out[:, -1:] if caches is not None else out)


def beam(script, **options):
    model = ScriptedT5(script)
    out = generate(model, np.array([[0]]), **options)
    row = list(np.asarray(out)[0][1:])
    while row and row[-1] == PAD:
        row.pop()
    return row, model.calls


# Step 1: A -0.9, B -1.5, </s> -1.8, C -2.0 (fillers -4.05). Step 2 from "A": C -1.0, the rest
# -2.405; from anything else: uniform, log(1/8) = -2.079. With length_penalty 0 (plain sums) and
# max_new_tokens 2, every step-2 candidate stops at the length limit.
#   num_beams 2: the top 2 candidates of step 1 are A and B; "</s>" ranks 3rd, beyond num_beams,
#     so it never joins the finished set. Step 2's best is "A C" (-1.9): the answer.
#     (Had "</s>" joined, its -1.8 would beat every step-2 hypothesis: -1.9, -2.98, -3.58.)
#   num_beams 3: "</s>" ranks 3rd, within the top 3: it is finished, and its -1.8 wins.
BEYOND_TOP = {(): {A: -0.9, B: -1.5, EOS: -1.8, C: -2.0}, (A,): {C: -1.0}}


@pytest.mark.parametrize("use_cache", [True, False])
@pytest.mark.parametrize("num_beams, expected", [(2, [A, C]), (3, [EOS])])
def test_a_hypothesis_that_ends_beyond_the_top_num_beams_is_not_finished(num_beams, expected, use_cache):
    got, _ = beam(BEYOND_TOP, max_new_tokens=2, num_beams=num_beams, length_penalty=0.0, use_cache=use_cache)
    assert got == expected


# num_beams 2, length_penalty 1 (score = sum / length), max_new_tokens 4.
# Step 1: A -0.5, </s> -1.5, B -2.0 (fillers -4.96). Top 2: A (runs on) and "</s>" (finished, -1.5).
# Step 2, from A: </s> -0.3, C -1.5 (fillers -5.11); from B: </s> -0.5, fillers -2.88.
#   candidates: "A </s>" -0.8, "A C" -2.0, "B </s>" -2.5 (3rd: beyond the top 2), ...
#   finished: "A </s>" (-0.8/2 = -0.4) and "</s>" (-1.5): the set is full; "A C" runs on.
#   early_stopping=True stops here: 2 decoder calls.
#   early_stopping=False asks whether the best running beam, ended now, would beat the worst
#   finished: -2.0/2 = -1.0 > -1.5, yes: a 3rd step.
# Step 3, from "A C": </s> -0.1 → "A C </s>" -2.1/3 = -0.7 replaces "</s>" in the finished set.
#   The best running beam now scores at most -6.3/3 = -2.1 < -0.7: stop after 3 calls.
# The answer is "A </s>" (-0.4) either way.
STOPPING = {(): {A: -0.5, EOS: -1.5, B: -2.0}, (A,): {EOS: -0.3, C: -1.5}, (B,): {EOS: -0.5},
            (A, C): {EOS: -0.1}}


@pytest.mark.parametrize("use_cache", [True, False])
@pytest.mark.parametrize("early_stopping, calls", [(True, 2), (False, 3)])
def test_beam_search_stops_when_its_rule_says_and_not_before(early_stopping, calls, use_cache):
    got, made = beam(STOPPING, max_new_tokens=4, num_beams=2, early_stopping=early_stopping, use_cache=use_cache)
    assert (got, made) == ([A, EOS], calls)


def test_beam_search_runs_to_the_length_limit_when_nothing_ends():
    # No "</s>" is ever likely: every hypothesis is cut at max_new_tokens = 3, after 3 calls, and the
    # best is the most likely chain A A A (each -0.1).
    chain = {(): {A: -0.1, EOS: -9.0}, (A,): {A: -0.1, EOS: -9.0}, (A, A): {A: -0.1, EOS: -9.0}}
    assert beam(chain, max_new_tokens=3, num_beams=2) == ([A, A, A], 3)
    assert beam(chain, max_new_tokens=1, num_beams=2) == ([A], 1)


# ------------------------------------------------------------------------------ top-p


def _logits(probs):
    return np.log(np.array([probs], dtype=np.float32))


@pytest.mark.parametrize("top_p", [0.0, 1e-9, 1e-7])
def test_top_p_so_small_that_every_cumulative_mass_is_below_one_minus_p_keeps_the_top_token(top_p):
    # The ascending cumulative sums are 0.1, 0.3, 0.6 and (about) 1.0, and 1 - top_p is 1.0 or just
    # under it: every token, the most likely included, is in the "tail to remove" unless the guard
    # keeps the most likely one.
    logits = _logits([0.3, 0.1, 0.4, 0.2])
    got = filter_logits(logits, top_p=top_p)
    assert np.isneginf(got[0, [0, 1, 3]]).all() and got[0, 2] == pytest.approx(math.log(0.4))


@pytest.mark.parametrize("top_p, kept", [
    (0.39, [2]),             # the top token's 0.4 is already >= 0.39
    (0.41, [0, 2]),          # one past: 0.4 + 0.3
    (0.69, [0, 2]),
    (0.71, [0, 2, 3]),       # 0.4 + 0.3 + 0.2 = 0.9 >= 0.71
    (0.95, [0, 1, 2, 3]),    # only all four reach 0.95
    (1.0, [0, 1, 2, 3]),     # off
])
def test_top_p_keeps_the_smallest_set_of_likely_tokens_that_reaches_p(top_p, kept):
    got = filter_logits(_logits([0.3, 0.1, 0.4, 0.2]), top_p=top_p)
    assert np.flatnonzero(np.isfinite(got[0])).tolist() == kept


def test_top_k_and_temperature():
    logits = _logits([0.3, 0.1, 0.4, 0.2])
    assert np.flatnonzero(np.isfinite(filter_logits(logits, top_k=1)[0])).tolist() == [2]
    assert np.flatnonzero(np.isfinite(filter_logits(logits, top_k=2)[0])).tolist() == [0, 2]
    assert np.isfinite(filter_logits(logits, top_k=4)).all() and np.isfinite(filter_logits(logits, top_k=9)).all()
    np.testing.assert_allclose(filter_logits(logits, temperature=2.0), logits / 2, rtol=1e-6)
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match="temperature must be > 0"):
            filter_logits(logits, temperature=bad)


def test_sampling_at_a_tiny_top_p_is_greedy():
    script = {(): {A: -0.9, B: -1.0}, (A,): {EOS: -0.5}}
    for seed in range(5):
        out = generate(ScriptedT5(script), np.array([[0]]), max_new_tokens=2, do_sample=True, top_p=1e-9, seed=seed)
        assert np.asarray(out).tolist() == [[START, A, EOS]]


# ------------------------------------------------------------------------------ the cached decoder


@pytest.fixture(scope="module")
def t5():
    from minillm.models import T5Config, T5ForConditionalGeneration

    minillm.manual_seed(0)
    model = T5ForConditionalGeneration(T5Config(vocab_size=20, d_model=16, d_kv=4, d_ff=16, num_layers=2,
                                                num_heads=2, dropout_rate=0.0))
    return model.eval()


@pytest.mark.parametrize("past, new", [(1, 1), (1, 3), (2, 3), (3, 2)])
def test_decoding_several_new_tokens_after_a_cache_equals_decoding_the_whole_prefix(t5, past, new):
    # Each of the `new` positions must see the cached past and the new positions up to itself,
    # never a later one: exactly the rows of the uncached, fully causal decode.
    rng = np.random.default_rng(past * 10 + new)
    src = rng.integers(2, 20, size=(2, 5))
    tokens = rng.integers(2, 20, size=(2, past + new))
    with minillm.no_grad():
        encoded = t5.encode(src)
        whole = t5.decode(tokens, encoded).data
        caches = [{"self": {}, "cross": {}} for _ in t5.decoder.block]
        t5.decode(tokens[:, :past], encoded, caches=caches, past_length=0)
        step = t5.decode(tokens[:, past:], encoded, caches=caches, past_length=past).data
    np.testing.assert_allclose(step, whole[:, past:], rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------ returned scores and sequences


@pytest.mark.parametrize("early_stopping, rows, scores, steps", [
    # The STOPPING walk above: with early_stopping=True the finished set after step 2 is "A </s>"
    # (-0.4) and "</s>" (-1.5); with False a 3rd step replaces "</s>" by "A C </s>" (-2.1/3 = -0.7).
    # Rows are cut to the longest returned hypothesis and padded after "</s>".
    (True, [[START, A, EOS], [START, EOS, PAD]], [-0.4, -1.5], 2),
    (False, [[START, A, EOS, PAD], [START, A, C, EOS]], [-0.4, -0.7], 3),
])
def test_beam_search_returns_the_best_hypotheses_with_their_length_normalised_scores(early_stopping, rows, scores,
                                                                                    steps):
    out = generate(ScriptedT5(STOPPING), np.array([[0]]), max_new_tokens=4, num_beams=2, num_return_sequences=2,
                   early_stopping=early_stopping, output_scores=True, return_dict_in_generate=True)
    assert np.asarray(out.sequences).tolist() == rows
    np.testing.assert_allclose(out.sequences_scores, scores, rtol=1e-6)
    assert len(out.scores) == steps and out.scores[0].shape == (2, VOCAB)   # one (beams, vocab) per step
    np.testing.assert_allclose(out.scores[0][0], log_probs(STOPPING, ()), rtol=1e-5)


def test_greedy_and_sampled_outputs_with_their_scores():
    script = {(): {A: -0.9, B: -1.0}, (A,): {EOS: -0.5}}
    out = generate(ScriptedT5(script), np.array([[0]]), max_new_tokens=3, output_scores=True,
                   return_dict_in_generate=True)
    assert np.asarray(out.sequences).tolist() == [[START, A, EOS]] and out.sequences_scores is None
    assert len(out.scores) == 2 and out.scores[0][0, A] == pytest.approx(-0.9, abs=1e-6)
    assert generate(ScriptedT5(script), np.array([[0]]), max_new_tokens=3).tolist() == [[START, A, EOS]]
    # Three sampled sequences per input at a top_p that keeps only the top token: greedy's, 3 times.
    sampled = generate(ScriptedT5(script), np.array([[0], [0]]), max_new_tokens=3, do_sample=True, top_p=1e-9,
                       num_return_sequences=3, seed=0)
    assert np.asarray(sampled).tolist() == [[START, A, EOS]] * 6


def test_the_memory_estimate_by_hand_and_the_refusal_past_it(monkeypatch):
    from minillm import generation
    from minillm.generation_config import GenerationConfig

    c = SimpleNamespace(num_decoder_layers=2, num_heads=2, d_kv=4, vocab_size=10, d_model=8)
    # rows = batch x beams (x samples per input); length = 1 + max_new_tokens = 7; src_len = 5:
    #   cache  layers 2 x (k, v) 2 x rows x heads 2 x d_kv 4 x (7 + 5) positions x 4 bytes
    #   scores rows x vocab 10 x (4 x 3, + 8 for beam search)
    #   tokens rows x 7 x 8 bytes (x 4 for beam search's tables); encoder rows x 5 x d_model 8 x 4
    greedy = 2 * 2 * 3 * 2 * 4 * 12 * 4 + 3 * 10 * 12 + 3 * 7 * 8 + 3 * 5 * 8 * 4             # rows 3
    beams = 2 * 2 * 6 * 2 * 4 * 12 * 4 + 6 * 10 * 20 + 6 * 7 * 8 * 4 + 6 * 5 * 8 * 4          # rows 6
    sampled = 2 * 2 * 6 * 2 * 4 * 12 * 4 + 6 * 10 * 12 + 6 * 7 * 8 + 6 * 5 * 8 * 4            # rows 6
    assert (greedy, beams, sampled) == (5616, 12720, 11232)
    assert generation.estimate_generation_bytes(c, 3, 5, GenerationConfig(max_new_tokens=6)) == greedy
    assert generation.estimate_generation_bytes(c, 3, 5, GenerationConfig(max_new_tokens=6, num_beams=2)) == beams
    assert generation.estimate_generation_bytes(
        c, 3, 5, GenerationConfig(max_new_tokens=6, do_sample=True, num_return_sequences=2)) == sampled
    config = GenerationConfig(max_new_tokens=6, num_beams=2)
    monkeypatch.setattr(generation, "available_bytes", lambda xp: beams)       # exact fit: accepted
    assert generation.check_generation_fits(c, 3, 5, config) == beams
    monkeypatch.setattr(generation, "available_bytes", lambda xp: None)        # unknown: accepted
    assert generation.check_generation_fits(c, 3, 5, config) == beams
    monkeypatch.setattr(generation, "available_bytes", lambda xp: beams - 1)   # one byte short: refused
    with pytest.raises(generation.GenerationTooLarge) as info:
        generation.check_generation_fits(c, 3, 5, config)
    assert str(info.value) == (
        "generate: max_new_tokens=6 with num_beams=2 for 3 input(s) of 5 tokens needs about 1.18e-05 GiB "
        "(key/value cache: 2 layers x 2 x 2 beam(s) x 12 positions x 8 values), but only 1.18e-05 GiB is "
        "available; lower max_new_tokens or num_beams")
    assert isinstance(info.value, ValueError)


def test_this_machine_reports_some_free_memory():
    from minillm.generation import available_bytes

    free = available_bytes(np)
    assert isinstance(free, int) and free > 2 ** 20


def test_the_settings_come_from_the_call_then_the_model_then_the_defaults():
    from minillm.generation import resolve_config
    from minillm.generation_config import GenerationConfig

    model = ScriptedT5({})
    config = resolve_config(model)
    assert (config.max_new_tokens, config.eos_token_id, config.pad_token_id, config.decoder_start_token_id) == \
        (32, EOS, PAD, START)                                     # defaults; ids from the model's config
    model.generation_config = GenerationConfig(max_new_tokens=5, num_beams=3)
    assert (resolve_config(model).max_new_tokens, resolve_config(model).num_beams) == (5, 3)
    given = GenerationConfig(max_new_tokens=7, eos_token_id=6)
    config = resolve_config(model, given, num_beams=2)
    assert (config.max_new_tokens, config.num_beams, config.eos_token_id, config.pad_token_id) == (7, 2, 6, PAD)
    with pytest.raises(TypeError, match="unknown option"):
        resolve_config(model, given, beams=2)


@pytest.mark.parametrize("use_cache", [True, False])
@pytest.mark.parametrize("num_beams", [1, 2])
def test_every_row_starts_with_the_decoder_start_token_even_when_it_is_not_pad(num_beams, use_cache):
    # T5's start token is <pad> (0), which hides a start written to the wrong position; here it is 7.
    model = ScriptedT5(STOPPING)
    model.config.decoder_start_token_id = 7
    out = generate(model, np.array([[0], [0]]), max_new_tokens=4, num_beams=num_beams, use_cache=use_cache,
                   output_scores=True, return_dict_in_generate=True)
    assert np.asarray(out.sequences).tolist() == [[7, A, EOS]] * 2     # greedy: A (-0.5), then </s> (-0.3)
    assert np.asarray(out.sequences).dtype == np.int64                 # token ids, not floats
    if num_beams > 1:
        assert out.sequences_scores.dtype == np.float32 and out.sequences_scores.tolist() == [pytest.approx(-0.4)] * 2


class ScriptedBatch(ScriptedT5):
    """One script per example (the encoder passes the example's input id on as its script number);
    for ``use_cache=False`` only: each call gets every row's whole prefix."""

    def __init__(self, scripts):
        super().__init__(scripts[0])
        self.scripts = scripts

    def encode(self, ids, mask=None, inputs_embeds=None):
        return Tensor(np.asarray(ids, dtype=np.float32)[:, :, None])

    def decode(self, tokens, encoder_hidden, mask=None, caches=None, past_length=0):
        assert caches is None
        self.calls += 1
        return Tensor(np.array([[log_probs(self.scripts[s], row[1:i + 1]) for i in range(len(row))]
                                for row, s in zip(np.asarray(tokens), encoder_hidden.data[:, 0, 0].astype(int))],
                               dtype=np.float32))


LONG = {(): {A: -0.1}, (A,): {A: -0.1}, (A, A): {A: -0.1}, (A, A, A): {A: -0.1}}  # </s> never in the top 2


@pytest.mark.parametrize("early_stopping, first", [
    (True, [[START, A, EOS, PAD, PAD], [START, EOS, PAD, PAD, PAD]]),
    # early_stopping=False: example 0 is done after step 3 (no running beam can beat "A C </s>" -0.7),
    # and takes nothing from step 4, which runs for example 1 only.
    (False, [[START, A, EOS, PAD, PAD], [START, A, C, EOS, PAD]]),
])
def test_an_example_whose_finished_set_is_full_takes_no_more_hypotheses_while_another_runs_on(early_stopping,
                                                                                              first):
    # Example 0 follows STOPPING: with early_stopping=True its set is full after step 2 ("A </s>" -0.4,
    # "</s>" -1.5). Example 1 (LONG) runs to the length limit, so the search goes on to step 4; at step 3
    # example 0 would find "A C </s>" (-0.7), better than "</s>", but a full set takes no more.
    # Example 1's best two at the limit: A A A A (-0.4/4) and A A A <pad> (-4.6/4; <pad> wins the tie
    # with </s> by its lower id).
    model = ScriptedBatch([STOPPING, LONG])
    out = generate(model, np.array([[0], [1]]), max_new_tokens=4, num_beams=2, num_return_sequences=2,
                   early_stopping=early_stopping, use_cache=False)
    assert np.asarray(out).tolist() == first + [[START, A, A, A, A], [START, A, A, A, PAD]]
    assert model.calls == 4


# STOPPING, changed from "A C" on: "A C" → </s> -0.6 or C -0.9; "A C C" → </s> -0.1.
# Step 3: "A C </s>" (-2.6/3 = -0.867) replaces "</s>" (-1.5); "A C C" (-2.9) runs on.
#   early_stopping=False: -2.9/3 = -0.967 cannot beat -0.867: stop after 3 calls.
#   early_stopping="never" (length penalty 1 > 0) scores the running beam at the length limit:
#   -2.9/4 = -0.725 can: a 4th step, where "A C C </s>" (-3.0/4 = -0.75) replaces "A C </s>".
#   early_stopping=True stops after step 2, with "A </s>" and "</s>".
NEVER = {**STOPPING, (A, C): {EOS: -0.6, C: -0.9}, (A, C, C): {EOS: -0.1}}


@pytest.mark.parametrize("early_stopping, second, calls", [
    (True, [EOS], 2), (False, [A, C, EOS], 3), ("never", [A, C, C, EOS], 4),
])
def test_early_stopping_never_scores_the_running_beam_at_the_length_limit(early_stopping, second, calls):
    model = ScriptedT5(NEVER)
    out = generate(model, np.array([[0]]), max_new_tokens=4, num_beams=2, num_return_sequences=2,
                   early_stopping=early_stopping, use_cache=False)
    rows = [[t for t in row[1:] if t != PAD] for row in np.asarray(out).tolist()]
    assert (rows, model.calls) == ([[A, EOS], second], calls)


def test_an_example_done_by_the_heuristic_ignores_a_later_better_hypothesis_in_a_batch():
    # Example 0 (NEVER, early_stopping=False) is done after step 3; example 1 (LONG) makes a 4th step,
    # in which example 0's "A C C </s>" (-0.75) would beat its "A C </s>" (-0.867): it is not taken.
    model = ScriptedBatch([NEVER, LONG])
    out = generate(model, np.array([[0], [1]]), max_new_tokens=4, num_beams=2, num_return_sequences=2,
                   early_stopping=False, use_cache=False)
    assert np.asarray(out).tolist()[:2] == [[START, A, EOS, PAD, PAD], [START, A, C, EOS, PAD]]


# ------------------------------------------------------------------------------ mutation survivors (issue 26)


def test_log_probabilities_do_not_depend_on_the_scale_of_each_row():
    # Rows [0, -1, -3] and [200, 199, 197] hold the same distribution: e^0, e^-1, e^-3 = 1, 0.368, 0.050
    # over 1.418, i.e. 0.705, 0.259, 0.035. Shifting by another row's maximum would underflow the first
    # row (e^-200 = 0 in float32), adding the maximum instead of subtracting it would overflow the second.
    logits = np.array([[0.0, -1.0, -3.0], [200.0, 199.0, 197.0]], dtype=np.float32)
    for top_p, kept in ((0.7, [True, False, False]),     # 0.705 >= 0.7
                        (0.9, [True, True, False])):     # 0.705 + 0.259 = 0.964 >= 0.9
        assert np.isfinite(filter_logits(logits, top_p=top_p)).tolist() == [kept, kept]


class ShiftedT5(ScriptedT5):
    """The script's log-probabilities plus a large constant per row: the same distribution."""

    def decode(self, tokens, encoder_hidden, mask=None, caches=None, past_length=0):
        out = super().decode(tokens, encoder_hidden, mask, caches, past_length).data
        return Tensor(out + np.float32(300.0) * np.arange(1, len(out) + 1, dtype=np.float32)[:, None, None])


def test_beam_search_scores_are_those_of_the_distribution_however_large_the_logits():
    # The STOPPING walk (above): "A </s>" -0.4 and "</s>" -1.5 with early_stopping=True, logits shifted
    # by 300 and 600 (one shift per beam row).
    out = generate(ShiftedT5(STOPPING), np.array([[0]]), max_new_tokens=4, num_beams=2, num_return_sequences=2,
                   early_stopping=True, output_scores=True, return_dict_in_generate=True)
    assert np.asarray(out.sequences).tolist() == [[START, A, EOS], [START, EOS, PAD]]
    np.testing.assert_allclose(out.sequences_scores, [-0.4, -1.5], rtol=1e-5)


def test_top_p_of_one_returns_the_logits_unchanged():
    # e^-200 is 0 in float32: a top-p filter that ran at p = 1 would see a token of zero mass and remove it.
    logits = np.array([[0.0, -200.0, -1.0]], dtype=np.float32)
    assert filter_logits(logits, top_p=1.0).tolist() == [[0.0, -200.0, -1.0]]
    assert filter_logits(logits).tolist() == [[0.0, -200.0, -1.0]]


@pytest.mark.parametrize("vocab, top_p, kept", [(4, 0.25, 1), (4, 0.5, 2), (4, 0.75, 3), (8, 0.25, 2), (2, 0.5, 1)])
def test_top_p_at_an_exact_fit_on_equal_tokens(vocab, top_p, kept):
    # `vocab` equal tokens of 1/vocab each (exact in binary): the smallest set reaching p has p x vocab
    # tokens, exactly; one more token would be one past the fit.
    got = filter_logits(np.zeros((1, vocab), dtype=np.float32), top_p=top_p)
    assert int(np.isfinite(got).sum()) == kept


class FixedDraws:
    """A stand-in for the sampler's generator: ``random`` returns the given uniform draws."""

    def __init__(self, *draws):
        self.draws = draws

    def random(self, shape):
        return np.array(self.draws, dtype=np.float64).reshape(shape)


@pytest.mark.parametrize("u, token", [
    (0.0, 0), (1 / 3 - 1e-9, 0),          # the first third of [0, 1) is token 0 ...
    (1 / 3 + 1e-9, 1), (2 / 3 - 1e-9, 1),  # ... the second token 1 ...
    (2 / 3 + 1e-9, 2), (1 - 2 ** -53, 2),  # ... the last token 2, up to the largest draw below 1
])
def test_inverse_cdf_sampling_over_three_equal_tokens_by_hand(u, token):
    from minillm.generation import _sample

    # float32 gives each token 0.33333334, which sum to 1.0000000298: the draw is compared with the
    # renormalised thirds (float64), so u = 1/3 + 1e-9 lies beyond the first.
    assert _sample(np.zeros((1, 3), dtype=np.float32), FixedDraws(u), np).tolist() == [token]


def test_sampling_never_draws_a_removed_token_even_at_the_ends_of_the_unit_interval():
    from minillm.generation import _sample

    # Token 0 removed (-inf): its interval is empty, so u = 0 draws token 1 (mass 1/2 on tokens 1, 2).
    logits = np.array([[-np.inf, 0.0, 0.0]], dtype=np.float32)
    assert _sample(logits, FixedDraws(0.0), np).tolist() == [1]
    # Ten equal tokens: the float64 cumulative sum ends at 0.9999999999999999 = 1 - 2**-53, the largest
    # draw the generator can return. At that draw all ten sums are <= u: the count is capped at the last
    # token, 9 (never an id past the vocabulary).
    assert _sample(np.zeros((1, 10), dtype=np.float32), FixedDraws(1 - 2 ** -53), np).tolist() == [9]


def test_the_memory_estimate_counts_beam_rows_once_whatever_is_returned():
    from minillm import generation
    from minillm.generation_config import GenerationConfig

    c = SimpleNamespace(num_decoder_layers=2, num_heads=2, d_kv=4, vocab_size=10, d_model=8)
    # Beam search returns num_return_sequences of its num_beams rows: 3 inputs x 2 beams = 6 rows, the
    # beam figure of the hand-worked estimate above (12720), not 12 rows.
    config = GenerationConfig(max_new_tokens=6, num_beams=2, num_return_sequences=2)
    assert generation.estimate_generation_bytes(c, 3, 5, config) == 12720


def test_available_memory_is_read_from_meminfo_else_from_sysconf(monkeypatch):
    import io

    from minillm import generation

    meminfo = "MemTotal:       8000 kB\nMemFree:         100 kB\nMemAvailable:    2048 kB\n"
    opened = []

    def fake_open(path, *args, **kwargs):
        opened.append(path)
        if path == "/proc/meminfo" and meminfo is not None:
            return io.StringIO(meminfo)
        raise FileNotFoundError(path)

    pages = {"SC_AVPHYS_PAGES": 3, "SC_PAGE_SIZE": 4096}
    monkeypatch.setattr(generation, "open", fake_open, raising=False)
    monkeypatch.setattr(generation.os, "sysconf", lambda name: pages[name])
    assert generation.available_bytes(np) == 2048 * 1024 and opened == ["/proc/meminfo"]
    meminfo = "MemTotal:       8000 kB\nMemFree:         100 kB\n"     # an old kernel: no MemAvailable
    assert generation.available_bytes(np) == 3 * 4096
    meminfo = None                                                      # no /proc at all
    assert generation.available_bytes(np) == 3 * 4096
    monkeypatch.setattr(generation.os, "sysconf", lambda name: (_ for _ in ()).throw(ValueError(name)))
    assert generation.available_bytes(np) is None                       # nothing known: no refusal


def test_generate_takes_the_config_it_is_given_and_decodes_in_the_fast_layers_decoding_context(monkeypatch):
    import contextlib

    from minillm import generation
    from minillm.generation_config import GenerationConfig

    entered = []
    real = generation.fast_context

    def recording(key):
        entered.append(key)
        return real(key)

    monkeypatch.setattr(generation, "fast_context", recording)
    out = generate(ScriptedT5(STOPPING), np.array([[0]]), generation_config=GenerationConfig(max_new_tokens=1))
    assert np.asarray(out).tolist() == [[START, A]] and entered == ["decoding"]   # greedy: A (-0.5), then cut
    assert isinstance(real("decoding"), contextlib.AbstractContextManager)


def test_token_ids_as_a_list_or_a_tensor_and_the_mask_as_a_tensor_or_none(t5):
    src = np.random.default_rng(0).integers(2, 20, size=(2, 5))
    mask = np.ones_like(src)
    kwargs = dict(max_new_tokens=3, num_beams=2)
    expected = generate(t5, src, mask, **kwargs)
    np.testing.assert_array_equal(generate(t5, src.tolist(), mask, **kwargs), expected)
    np.testing.assert_array_equal(generate(t5, Tensor(src), mask, **kwargs), expected)
    np.testing.assert_array_equal(generate(t5, src, Tensor(mask), **kwargs), expected)
    np.testing.assert_array_equal(generate(t5, src, None, **kwargs), expected)    # no mask: every token counts


class EmbeddedBatch(ScriptedBatch):
    """ScriptedBatch that also takes its script numbers as input embeddings (a soft prompt's path)."""

    def encode(self, ids, mask=None, inputs_embeds=None):
        assert (ids is None) != (inputs_embeds is None)
        return super().encode(ids) if ids is not None else Tensor(inputs_embeds.data[:, :, :1])


def test_generate_from_input_embeddings():
    # Embeddings (batch 2, 1 position, width 3) whose first value names the script: 1 (LONG), then 0
    # (STOPPING); greedy gives A A A for LONG and A </s> for STOPPING.
    embeds = Tensor(np.array([[[1.0, 9.0, 9.0]], [[0.0, 9.0, 9.0]]], dtype=np.float32))
    out = generate(EmbeddedBatch([STOPPING, LONG]), inputs_embeds=embeds, max_new_tokens=3, use_cache=False)
    assert np.asarray(out).tolist() == [[START, A, A, A], [START, A, EOS, PAD]]


def test_the_memory_check_gets_the_batch_then_the_source_length(monkeypatch):
    from minillm import generation

    # ScriptedT5's config: 1 layer, 1 head, d_kv 1, vocab 8, d_model 1. Greedy, max_new_tokens 2
    # (length 3), batch 1, source length 2:
    #   cache 1 x 2 x 1 row x 1 x 1 x (3 + 2) x 4 = 40; scores 1 x 8 x 12 = 96; tokens 1 x 3 x 8 = 24;
    #   encoder 1 x 2 x 1 x 4 = 8: 168 bytes. (Batch and length swapped, 2 rows: 336.)
    for have, fits in ((168, True), (167, False)):
        monkeypatch.setattr(generation, "available_bytes", lambda xp, have=have: have)
        call = lambda: generate(ScriptedT5(STOPPING), np.array([[0, 0]]), max_new_tokens=2)  # noqa: E731
        if fits:
            assert np.asarray(call()).tolist() == [[START, A, EOS]]
        else:
            with pytest.raises(generation.GenerationTooLarge, match="needs about"):
                call()


class WidthT5(ScriptedT5):
    """ScriptedT5 that records how many decoder positions each call is given."""

    def __init__(self, script):
        super().__init__(script)
        self.widths = []

    def decode(self, tokens, encoder_hidden, mask=None, caches=None, past_length=0):
        self.widths.append(np.asarray(tokens).shape[1])
        return super().decode(tokens, encoder_hidden, mask, caches, past_length)


@pytest.mark.parametrize("use_cache, widths", [(True, [1, 1, 1]), (False, [1, 2, 3])])
def test_with_the_cache_each_greedy_step_decodes_only_the_new_token(use_cache, widths):
    model = WidthT5(LONG)
    out = generate(model, np.array([[0]]), max_new_tokens=3, use_cache=use_cache, output_scores=True,
                   return_dict_in_generate=True)
    assert np.asarray(out.sequences).tolist() == [[START, A, A, A]] and model.widths == widths
    assert all(step.dtype == np.float32 for step in out.scores)          # the model's float32 logits
    plain = generate(ScriptedT5(LONG), np.array([[0]]), max_new_tokens=3, return_dict_in_generate=True)
    assert plain.scores is None and plain.sequences_scores is None      # asked for no scores: none


def test_the_cross_attention_keys_are_computed_once_per_layer_with_the_cache(t5, monkeypatch):
    from minillm.generation_config import GenerationConfig

    calls = []
    for block in t5.decoder.block:
        k = block.layer[1].EncDecAttention.k
        forward = k.forward
        monkeypatch.setattr(k, "forward", lambda x, forward=forward: calls.append(1) or forward(x))
    src = np.random.default_rng(0).integers(2, 20, size=(1, 5))
    config = GenerationConfig(max_new_tokens=3, eos_token_id=99)       # id 99 never comes: 3 steps
    out = generate(t5, src, generation_config=config, use_cache=True)
    assert out.shape == (1, 4) and len(calls) == 2                      # 2 layers, once each
    calls.clear()
    generate(t5, src, generation_config=config, use_cache=False)
    assert len(calls) == 2 * 3                                          # without the cache: every step


# Ties. Equal scores keep the order they were made in: the lower beam, then the lower token id (in the
# finished set: older hypotheses first). NumPy's default sort is not stable, so a slip in the sort's
# `kind` shows only where tied entries follow a better one in the array.
# BEST_LAST: token 7 has log p -0.5 and the other seven tie at log((1 - e^-0.5) / 7) = -2.879.
BEST_LAST = {(): {7: -0.5}}


@pytest.mark.parametrize("num_beams", [3, 6])
def test_tied_candidates_rank_by_beam_then_token_id(num_beams):
    # max_new_tokens 1: every candidate stops at the length limit. Only beam 0 is live at step 1, so the
    # top num_beams candidates are its token 7, then its tied tokens 0, 1, ... in id order.
    out = generate(ScriptedT5(BEST_LAST), np.array([[0]]), max_new_tokens=1, num_beams=num_beams,
                   num_return_sequences=num_beams)
    assert np.asarray(out).tolist() == [[START, 7]] + [[START, t] for t in range(num_beams - 1)]


# UNIFORM: every next token has log p = log(1/8) = -2.079; THEN_BY_PREFIX: uniform at step 1, then a
# distribution that tells the prefixes apart (A: -0.5 - 0.05 x the first token).
UNIFORM = {}
THEN_BY_PREFIX = {(p,): {A: -0.5 - 0.05 * p} for p in range(VOCAB)}


def test_tied_running_beams_keep_their_order_across_steps():
    # num_beams 9 (18 candidates per step), max_new_tokens 2, length_penalty 0 (plain sums).
    # Step 1: beam 0's tokens 0..7 tie at -2.079 (the other beams are dead, -1e9); </s> (2nd in order,
    #   within the top 9) is finished (-2.079); the running beams are the prefixes 0, 2, 3, ..., 7 in
    #   that order, then two dead ones (beam 1's tokens 0 and 2, the next in order).
    # Step 2 (UNIFORM): all 7 x 8 two-token candidates tie at -4.159 and stop at the limit; the first 9
    #   in order are "0 0" ... "0 7" and "2 0". The finished set: "</s>" (-2.079) first, then
    #   "0 0" ... "0 7" (ties: the order made).
    out = generate(ScriptedT5(UNIFORM), np.array([[0]]), max_new_tokens=2, num_beams=9, num_return_sequences=9,
                   length_penalty=0.0)
    assert np.asarray(out).tolist() == [[START, EOS, PAD]] + [[START, 0, t] for t in range(8)]
    # The step-2 rows of the log-probabilities follow the running beams: the live prefixes 0, 2, ..., 7
    # in order (the two dead rows that follow are not compared: which dead beam fills a slot is moot).
    out = generate(ScriptedT5(THEN_BY_PREFIX), np.array([[0]]), max_new_tokens=2, num_beams=9, length_penalty=0.0,
                   output_scores=True, return_dict_in_generate=True)
    expected = [log_probs(THEN_BY_PREFIX, (p,)) for p in (0, 2, 3, 4, 5, 6, 7)]
    np.testing.assert_allclose(out.scores[1][:7], expected, rtol=1e-5)


# num_beams 2, length_penalty 1, early_stopping False, max_new_tokens 4.
# Step 1: A -0.9, B -1.0 (fillers -3.28): A and B run.
# Step 2: from A, </s> and C tie at -1.0 (fillers -3.12); from B, </s> -0.1 (fillers -4.30).
#   Candidates: "B </s>" -1.1, "A </s>" -1.9, "A C" -1.9 (the same sum, exactly: one row, equal entries).
#   Finished: "B </s>" (-1.1/2 = -0.55), "A </s>" (-1.9/2 = -0.95): full. Running: "A C".
#   The best running beam ended now scores -1.9/2 = -0.95, equal to the worst finished: it cannot
#   beat it, so the search stops after 2 calls. (Going on, "A C </s>" (-1.91/3 = -0.637) would
#   replace "A </s>".)
TIE = {(): {A: -0.9, B: -1.0}, (A,): {EOS: -1.0, C: -1.0}, (B,): {EOS: -0.1}, (A, C): {EOS: -0.01}}


def test_a_running_beam_that_can_only_tie_the_worst_finished_one_ends_the_search():
    model = ScriptedT5(TIE)
    out = generate(model, np.array([[0]]), max_new_tokens=4, num_beams=2, num_return_sequences=2)
    assert (np.asarray(out).tolist(), model.calls) == ([[START, B, EOS], [START, A, EOS]], 2)
