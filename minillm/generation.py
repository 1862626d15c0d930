"""Text generation for encoder-decoder models: greedy, sampling and beam search, with a KV cache.

The encoder runs once. The decoder then produces one token per step. Without a cache each step
would re-run the decoder over the whole prefix (quadratic work). With the cache each self-attention
layer keeps the keys and values of earlier positions and appends the new ones, and each
cross-attention layer computes the encoder's keys and values once, at step 0.

Semantics follow Hugging Face's ``generate`` so that results can be compared token for token:
the output starts with the decoder start token; a sequence that emitted ``</s>`` is padded with
``<pad>``; beam search keeps 2 * num_beams candidates per step and scores a finished hypothesis as
sum(log p) / length ** length_penalty (length = generated tokens, counting ``</s>``).
"""
from __future__ import annotations

import numpy as np

from .autograd import Tensor, no_grad
from .backend import get_array_module, get_rng
from .fast.dispatch import context as fast_context

_NEG = -1.0e9  # "impossible", as in transformers (finite, so arithmetic never yields NaN)


def _new_caches(model):
    return [{"self": {}, "cross": {}} for _ in model.decoder.block]


def _log_softmax(x):
    xp = get_array_module(x)
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=-1, keepdims=True))


def filter_logits(logits, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0):
    """Apply temperature, then top-k, then top-p (nucleus) filtering; removed tokens get -inf.

    top-k keeps the k largest logits. top-p keeps the smallest set of most likely tokens whose
    probabilities add up to at least ``top_p`` (always at least one token).
    """
    xp = get_array_module(logits)
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    logits = logits / np.float32(temperature)
    if top_k and top_k < logits.shape[-1]:
        kth = xp.sort(logits, axis=-1)[:, -top_k][:, None]
        logits = xp.where(logits < kth, -xp.inf, logits)
    if top_p < 1.0:
        order = xp.argsort(logits, axis=-1)  # ascending
        sorted_logits = xp.take_along_axis(logits, order, axis=-1)
        probs = xp.exp(_log_softmax(sorted_logits))
        cumulative = xp.cumsum(probs, axis=-1)
        remove_sorted = cumulative <= (1 - top_p)  # the low tail whose total mass is <= 1 - p
        remove_sorted[:, -1] = False  # keep the most likely token
        remove = xp.zeros_like(remove_sorted)
        xp.put_along_axis(remove, order, remove_sorted, axis=-1)
        logits = xp.where(remove, -xp.inf, logits)
    return logits


def generate(model, input_ids, attention_mask=None, max_new_tokens: int = 32, num_beams: int = 1,
             length_penalty: float = 1.0, do_sample: bool = False, temperature: float = 1.0,
             top_k: int = 0, top_p: float = 1.0, seed: int | None = None, use_cache: bool = True,
             eos_token_id: int | None = None, inputs_embeds=None, early_stopping: bool = False):
    """Generate decoder token ids for a batch of encoder inputs.

    Args:
        input_ids: (batch, src_len) integer array (or Tensor).
        attention_mask: (batch, src_len), 1 for tokens and 0 for padding.
        max_new_tokens: most tokens to generate after the start token.
        num_beams: 1 for greedy/sampling, more for beam search.
        do_sample, temperature, top_k, top_p: sampling controls (num_beams == 1).
        seed: seeds this call's sampler (reproducible regardless of global state); None draws from
            minillm's generator, so ``manual_seed`` makes the call repeatable.
        use_cache: keep keys/values across steps (the result is identical either way).
        inputs_embeds: encoder input embeddings instead of ids (soft prompts use this).

    Returns:
        int64 array (batch, 1 + generated), starting with the decoder start token.
    """
    config = model.config
    eos = config.eos_token_id if eos_token_id is None else eos_token_id
    was_training = model.training
    model.eval()
    try:
        with no_grad(), fast_context("decoding"):  # decoding multiplies a few rows at a time
            ids = input_ids.data if isinstance(input_ids, Tensor) else input_ids
            if ids is not None:
                ids = get_array_module(ids).asarray(ids)
            mask = attention_mask.data if isinstance(attention_mask, Tensor) else attention_mask
            encoder_hidden = model.encode(ids, mask, inputs_embeds)
            if num_beams > 1:
                if do_sample:
                    raise NotImplementedError("beam sampling is not supported; use num_beams=1 with do_sample")
                return _beam_search(model, encoder_hidden, mask, max_new_tokens, num_beams,
                                    length_penalty, eos, use_cache, early_stopping)
            return _greedy_or_sample(model, encoder_hidden, mask, max_new_tokens, do_sample, temperature,
                                     top_k, top_p, seed, eos, use_cache)
    finally:
        model.train(was_training)


def _next_logits(model, tokens, encoder_hidden, mask, caches, use_cache):
    """Logits of the last position: one new token with the cache, the whole prefix without."""
    if use_cache:
        step_input = tokens[:, -1:]
        logits = model.decode(step_input, encoder_hidden, mask, caches=caches, past_length=tokens.shape[1] - 1)
    else:
        logits = model.decode(tokens, encoder_hidden, mask)
    return logits.data[:, -1, :].astype(np.float32)


def _greedy_or_sample(model, encoder_hidden, mask, max_new_tokens, do_sample, temperature, top_k,
                      top_p, seed, eos, use_cache):
    xp = get_array_module(encoder_hidden.data)
    batch = encoder_hidden.shape[0]
    pad = model.config.pad_token_id
    tokens = xp.full((batch, 1), model.config.decoder_start_token_id, dtype=np.int64)
    unfinished = xp.ones(batch, dtype=bool)
    caches = _new_caches(model) if use_cache else None
    rng = np.random.default_rng(seed) if seed is not None else get_rng(np)
    for _ in range(max_new_tokens):
        logits = _next_logits(model, tokens, encoder_hidden, mask, caches, use_cache)
        if do_sample:
            logits = filter_logits(logits, temperature, top_k, top_p)
            probs = np.asarray(xp.exp(_log_softmax(logits)).get() if xp is not np else np.exp(_log_softmax(logits)),
                               dtype=np.float64)
            probs /= probs.sum(axis=-1, keepdims=True)
            # Inverse-CDF sampling: one uniform draw per row from this call's own generator.
            u = rng.random((batch, 1))
            next_tokens = xp.asarray(np.minimum((probs.cumsum(axis=-1) < u).sum(axis=-1), probs.shape[-1] - 1))
        else:
            next_tokens = logits.argmax(axis=-1)
        next_tokens = xp.where(unfinished, next_tokens, pad).astype(np.int64)
        tokens = xp.concatenate([tokens, next_tokens[:, None]], axis=1)
        unfinished &= next_tokens != eos
        if not bool(unfinished.any()):
            break
    return tokens


def _reorder(caches, index):
    """Keep the cached keys/values of the surviving beams (self-attention only; cross is shared)."""
    for cache in caches:
        own = cache["self"]
        for key in ("k", "v"):
            own[key] = Tensor(own[key].data[index])


def _beam_search(model, encoder_hidden, mask, max_new_tokens, num_beams, length_penalty, eos,
                 use_cache, early_stopping):
    xp = get_array_module(encoder_hidden.data)
    batch = encoder_hidden.shape[0]
    nb, pad = num_beams, model.config.pad_token_id
    # Every beam of an example attends to the same encoder output: repeat it per beam.
    encoder_hidden = Tensor(xp.repeat(encoder_hidden.data, nb, axis=0))
    mask = None if mask is None else xp.repeat(xp.asarray(mask), nb, axis=0)
    max_len = 1 + max_new_tokens
    running = xp.full((batch, nb, max_len), pad, dtype=np.int64)
    running[:, :, 0] = model.config.decoder_start_token_id
    running_scores = xp.full((batch, nb), _NEG, dtype=np.float32)
    running_scores[:, 0] = 0.0  # at step 0 all beams are identical: let only one expand
    finished = xp.full((batch, nb, max_len), pad, dtype=np.int64)
    finished_scores = xp.full((batch, nb), _NEG, dtype=np.float32)
    is_finished = xp.zeros((batch, nb), dtype=bool)
    finished_len = xp.ones((batch, nb), dtype=np.int64)
    improvable = xp.ones((batch, 1), dtype=bool)
    caches = _new_caches(model) if use_cache else None
    keep = 2 * nb  # enough candidates that nb can continue even if nb of them just ended
    cur_len = 1
    while cur_len < max_len:
        flat = running[:, :, :cur_len].reshape(batch * nb, cur_len)
        log_probs = _log_softmax(_next_logits(model, flat, encoder_hidden, mask, caches, use_cache))
        vocab = log_probs.shape[-1]
        total = (log_probs.reshape(batch, nb, vocab) + running_scores[:, :, None]).reshape(batch, nb * vocab)
        top = xp.argsort(-total, axis=-1, kind="stable")[:, :keep]  # (batch, 2 nb) best candidates
        top_scores = xp.take_along_axis(total, top, axis=-1)
        from_beam, token = top // vocab, top % vocab
        candidates = xp.take_along_axis(running, from_beam[:, :, None], axis=1).copy()
        candidates[:, :, cur_len] = token
        # A candidate stops if it emitted </s> or reached the length limit.
        stops = (token == eos) | (cur_len + 1 >= max_len)
        # 1) The best nb candidates that did not stop continue.
        alive_scores = top_scores + stops * _NEG
        alive = xp.argsort(-alive_scores, axis=-1, kind="stable")[:, :nb]
        running = xp.take_along_axis(candidates, alive[:, :, None], axis=1)
        running_scores = xp.take_along_axis(alive_scores, alive, axis=-1).astype(np.float32)
        beam_origin = xp.take_along_axis(from_beam, alive, axis=-1) + xp.arange(batch)[:, None] * nb
        # 2) Stopped candidates among the top nb join the finished set, scored by length.
        just_finished = stops & (xp.arange(keep) < nb)[None, :]
        scored = top_scores / np.float32((cur_len + 1 - 1) ** length_penalty)
        scored = scored + (~just_finished) * _NEG + (~improvable) * _NEG
        if early_stopping:
            scored = scored + is_finished.all(axis=-1, keepdims=True) * _NEG
        merged = xp.concatenate([finished, candidates], axis=1)
        merged_scores = xp.concatenate([finished_scores, scored.astype(np.float32)], axis=1)
        merged_done = xp.concatenate([is_finished, just_finished], axis=1)
        merged_len = xp.concatenate([finished_len, xp.full((batch, keep), cur_len + 1)], axis=1)
        best = xp.argsort(-merged_scores, axis=-1, kind="stable")[:, :nb]
        finished = xp.take_along_axis(merged, best[:, :, None], axis=1)
        finished_scores = xp.take_along_axis(merged_scores, best, axis=-1)
        is_finished = xp.take_along_axis(merged_done, best, axis=-1)
        finished_len = xp.take_along_axis(merged_len, best, axis=-1)
        if use_cache:
            _reorder(caches, beam_origin.reshape(-1))
        cur_len += 1
        # Stop when no running beam can still beat the worst finished hypothesis (HF's heuristic:
        # the running beam's score as if it ended now).
        best_running = running_scores[:, :1] / np.float32((cur_len - 1) ** length_penalty)
        worst_finished = xp.where(is_finished, finished_scores, _NEG).min(axis=-1, keepdims=True)
        worst_finished = xp.where(is_finished.all(axis=-1, keepdims=True), worst_finished, _NEG)
        improvable = improvable & (best_running > worst_finished)
        if not bool(improvable.any()) or bool(stops.all()):
            break
        if early_stopping and bool(is_finished.all()):
            break
    # The best hypothesis of each example, cut to the longest of them (shorter ones end in pad).
    return finished[:, 0, : int(finished_len[:, 0].max())]
