"""Generation against a scripted decoder whose log-probabilities are known, checked by brute force.

Comparing cached against uncached decoding, or beam search against greedy, cannot catch a bug
that both paths share. Here the "model" is a table: for each prefix it gives the next token's
log-probabilities. The expected output is then computed independently, by enumerating every
hypothesis and scoring it as Hugging Face does,

    score = sum(log p) / length ** length_penalty,   length = generated tokens, counting </s>,

and the scripts are built so that hypotheses of different lengths trade places as the penalty
changes, and so that counting the length one token too many, or too few, changes the winner.
"""
import itertools
import math
from types import SimpleNamespace

import numpy as np
import pytest

from minillm.autograd import Tensor
from minillm.generation import generate

PAD, EOS, START, A, B = 0, 1, 0, 2, 3
VOCAB = 10  # 4..9 are filler tokens that share what probability the script leaves over


# Two scripts, one per example of the batch. Entries: prefix (generated tokens) -> {token: log p}.
# The short hypothesis "a </s>" has sum log p = -2.0 in both. The long one "b b </s>" has -2.8 in
# script 0 and -3.2 in script 1. With length_penalty 1 (lengths 2 and 3):
#   script 0:  -2.0/2 = -1.0  <  -2.8/3 = -0.933   the long one wins;  with lengths 3, 4 it loses
#   script 1:  -2.0/2 = -1.0  >  -3.2/3 = -1.067   the short one wins; with lengths 1, 2 it loses
# With length_penalty 0 the plain sums decide: the short one wins both.
SCRIPTS = [
    {(): {A: -1.0, B: -1.2}, (A,): {EOS: -1.0}, (B,): {B: -0.6}, (B, B): {EOS: -1.0}},
    {(): {A: -1.0, B: -1.2}, (A,): {EOS: -1.0}, (B,): {B: -0.6}, (B, B): {EOS: -1.4}},
]


def log_probs(script, prefix):
    """The full next-token distribution: the script's entries, the rest spread evenly (float64)."""
    given = script.get(tuple(prefix), {})
    rest = (1.0 - sum(math.exp(v) for v in given.values())) / (VOCAB - len(given))
    return np.array([given.get(t, math.log(rest)) for t in range(VOCAB)])


class ScriptedT5:
    """Just enough of T5ForConditionalGeneration for ``generate``: encode, decode and a config.

    The encoder output carries the example's script number; the decoder looks its prefix up in
    the script. With a cache, the prefix lives in the self-attention cache's "k" and "v" entries,
    so beam search's reordering of the cache is exercised (a wrong reorder reads a wrong prefix).
    """

    def __init__(self):
        self.config = SimpleNamespace(eos_token_id=EOS, pad_token_id=PAD, decoder_start_token_id=START,
                                      vocab_size=VOCAB, d_model=1, num_heads=1, d_kv=1, num_decoder_layers=1)
        self.decoder = SimpleNamespace(block=[None])
        self.training = False
        self.calls = 0

    def eval(self):
        self.training = False
        return self

    def train(self, mode=True):
        self.training = mode
        return self

    def encode(self, ids, mask=None, inputs_embeds=None):
        return Tensor(np.asarray(ids, dtype=np.float32)[:, :, None])  # (batch, 1, 1): the script id

    def decode(self, tokens, encoder_hidden, mask=None, caches=None, past_length=0):
        self.calls += 1
        tokens = np.asarray(tokens)
        if caches is not None:
            own = caches[0]["self"]
            if past_length == 0:
                own["k"] = Tensor(tokens.copy())
            else:
                assert own["k"].shape[1] == past_length, "the cache does not hold the whole prefix"
                own["k"] = Tensor(np.concatenate([own["k"].data, tokens], axis=1))
            own["v"] = own["k"]
            tokens = own["k"].data
        scripts = encoder_hidden.data[:, 0, 0].astype(int)
        # Position i predicts the token after tokens[:i+1], as a causal decoder does; with a
        # cache only the new positions are returned.
        first = tokens.shape[1] - (1 if caches is not None and past_length > 0 else tokens.shape[1])
        logits = [[log_probs(SCRIPTS[s], row[1:i + 1]) for i in range(first, len(row))]
                  for s, row in zip(scripts, tokens)]
        return Tensor(np.array(logits, dtype=np.float32))  # (batch, new positions, vocab)


def brute_force_best(script, max_new_tokens, length_penalty):
    """The best hypothesis over all of them: ended by </s>, or cut at max_new_tokens."""
    best, best_score = None, -math.inf
    for length in range(1, max_new_tokens + 1):
        for body in itertools.product(range(VOCAB), repeat=length):
            if EOS in body[:-1] or (body[-1] != EOS and length < max_new_tokens):
                continue  # </s> only at the end; without it only at the length limit
            total = sum(log_probs(script, body[:i])[body[i]] for i in range(length))
            score = total / length ** length_penalty
            if score > best_score:
                best, best_score = list(body), score
    return best


def output_of(tokens):
    """Generated tokens after the start token, without the padding of an early end."""
    row = list(tokens[1:])
    while row and row[-1] == PAD:
        row.pop()
    return row


@pytest.mark.parametrize("use_cache", [True, False])
@pytest.mark.parametrize("length_penalty, expected", [
    (1.0, [[B, B, EOS], [A, EOS]]),    # length decides: the long one wins script 0 only
    (0.0, [[A, EOS], [A, EOS]]),       # plain sums: the short one wins both
    (2.0, [[B, B, EOS], [B, B, EOS]]),  # -2/4 = -0.5 < -2.8/9 and -3.2/9 = -0.356
])
def test_beam_search_picks_the_hypothesis_a_brute_force_search_picks(length_penalty, expected, use_cache):
    max_new_tokens = 3
    oracle = [brute_force_best(script, max_new_tokens, length_penalty) for script in SCRIPTS]
    assert oracle == expected  # the scripts do what their comment says
    out = generate(ScriptedT5(), np.array([[0], [1]]), max_new_tokens=max_new_tokens, num_beams=2,
                   length_penalty=length_penalty, use_cache=use_cache)
    assert [output_of(row) for row in out] == expected


@pytest.mark.parametrize("use_cache", [True, False])
def test_greedy_takes_the_most_likely_token_at_every_step(use_cache):
    # Greedy: "a" (-1.0 beats -1.2), then </s> (-1.0 beats the fillers' log((1 - e^-1)/9) = -2.66).
    out = generate(ScriptedT5(), np.array([[0], [1]]), max_new_tokens=3, use_cache=use_cache)
    assert out.tolist() == [[START, A, EOS], [START, A, EOS]]


def test_a_batch_whose_examples_end_at_different_steps_is_padded_after_eos():
    model = ScriptedT5()
    out = generate(model, np.array([[0], [1]]), max_new_tokens=3, num_beams=2, length_penalty=1.0)
    assert out.tolist() == [[START, B, B, EOS], [START, A, EOS, PAD]]
    assert model.calls == 3  # one decoder call per step, then the length limit


def test_the_oracle_itself_counts_eos_in_the_length():
    # A check on the brute force: "a </s>" is 2 tokens long, so with penalty 1 its score is -1.0.
    total = log_probs(SCRIPTS[0], ())[A] + log_probs(SCRIPTS[0], (A,))[EOS]
    assert total / 2 == pytest.approx(-1.0)
