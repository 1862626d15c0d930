"""Text generation for encoder-decoder models: greedy, sampling and beam search, with a KV cache.

The encoder runs once. The decoder then produces one token per step. Without a cache each step
would re-run the decoder over the whole prefix (quadratic work). With the cache each self-attention
layer keeps the keys and values of earlier positions and appends the new ones, and each
cross-attention layer computes the encoder's keys and values once, at step 0.

What to decode comes as one ``GenerationConfig`` (generation_config.py), with Hugging Face's names
and meanings: the output starts with the decoder start token; beam search keeps 2 * num_beams
candidates per step and scores a finished hypothesis as sum(log p) / length ** length_penalty
(length = generated tokens, counting ``</s>``); ``early_stopping`` True / False / "never" stops as
transformers does. Greedy search and beam search give transformers' tokens (tests/parity/), with
one documented difference: after a hypothesis's ``</s>``, minillm always pads with ``<pad>``, while
transformers' beam search fills with ``pad_token_id or eos_token_id``, i.e. ``</s>`` when pad is
id 0 as in T5 (its greedy search pads with ``<pad>``, as minillm does everywhere).

Before any work, the memory that a request needs (key/value cache x rows x length, plus the
per-step scores) is estimated and compared with what the device has free: a request that cannot
fit is refused with the estimate (``GenerationTooLarge``) instead of failing after minutes.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from .autograd import Tensor, no_grad
from .backend import get_array_module, get_rng
from .fast.dispatch import context as fast_context
from .generation_config import GenerationConfig

_NEG = -1.0e9  # "impossible", as in transformers (finite, so arithmetic never yields NaN)


class GenerationTooLarge(ValueError):
    """A generation request whose estimated memory exceeds what the device has available."""


@dataclasses.dataclass
class GenerateOutput:
    """What ``generate`` returns with ``return_dict_in_generate`` (transformers' field names).

    sequences: (rows, 1 + generated) token ids; rows = batch * num_return_sequences.
    sequences_scores: beam search only, with output_scores: each returned hypothesis's
        sum(log p) / length ** length_penalty.
    scores: with output_scores, one (rows or batch * num_beams, vocab) array per step: the
        processed logits (greedy/sampling) or the log-probabilities (beam search).
    """

    sequences: object
    sequences_scores: object = None
    scores: tuple | None = None


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


# ------------------------------------------------------------------------------ memory bounds
def estimate_generation_bytes(model_config, batch: int, src_len: int, config: GenerationConfig) -> int:
    """Bytes a request needs at its peak, float32 activations and int64 token ids.

    rows = batch x num_beams (sampling: x num_return_sequences) decode side by side. Each decoder
    layer caches keys and values (2 arrays of rows x heads x d_kv per position) for the
    1 + max_new_tokens decoder positions and the src_len encoder positions. Each step also holds
    rows x vocab scores a few times over (logits, log-probabilities, their ranking), and beam
    search keeps three token tables of batch x (up to 2 num_beams) x length.
    """
    c = model_config
    rows = batch * config.num_beams * (config.num_return_sequences if config.num_beams == 1 else 1)
    length = 1 + config.max_new_tokens
    kv_cache = c.num_decoder_layers * 2 * rows * c.num_heads * c.d_kv * (length + src_len) * 4
    scores = rows * c.vocab_size * (4 * 3 + (8 if config.num_beams > 1 else 0))
    tokens = rows * length * 8 * (4 if config.num_beams > 1 else 1)
    encoder = rows * src_len * c.d_model * 4
    return kv_cache + scores + tokens + encoder


def available_bytes(xp) -> int | None:
    """Memory the device can still give: the GPU's free memory, or the host's MemAvailable."""
    if xp is not np:
        return int(xp.cuda.runtime.memGetInfo()[0])
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _gib(n: int) -> str:
    return f"{n / 2 ** 30:.3g} GiB"


def check_generation_fits(model_config, batch: int, src_len: int, config: GenerationConfig, xp=np) -> int:
    """The estimate (``estimate_generation_bytes``); GenerationTooLarge when it exceeds the free memory."""
    need = estimate_generation_bytes(model_config, batch, src_len, config)
    have = available_bytes(xp)
    if have is not None and need > have:
        raise GenerationTooLarge(
            f"generate: max_new_tokens={config.max_new_tokens} with num_beams={config.num_beams} for {batch} "
            f"input(s) of {src_len} tokens needs about {_gib(need)} (key/value cache: "
            f"{model_config.num_decoder_layers} layers x 2 x {config.num_beams} beam(s) x "
            f"{1 + config.max_new_tokens + src_len} positions x {model_config.num_heads * model_config.d_kv} "
            f"values), but only {_gib(have)} is available; lower max_new_tokens or num_beams")
    return need


# ------------------------------------------------------------------------------ the entry point
def resolve_config(model, generation_config=None, **overrides) -> GenerationConfig:
    """The call's settings: ``generation_config`` (else the model's, else the defaults), then the
    keyword overrides; token ids left None come from the model's config."""
    base = generation_config or getattr(model, "generation_config", None) or GenerationConfig()
    config = base.update(**overrides)
    ids = {name: getattr(model.config, name) for name in ("eos_token_id", "pad_token_id", "decoder_start_token_id")
           if getattr(config, name) is None}
    return config.update(**ids) if ids else config


def generate(model, input_ids=None, attention_mask=None, generation_config: GenerationConfig | None = None, *,
             inputs_embeds=None, seed: int | None = None, **overrides):
    """Generate decoder token ids for a batch of encoder inputs.

    Args:
        input_ids: (batch, src_len) integer array (or Tensor).
        attention_mask: (batch, src_len), 1 for tokens and 0 for padding.
        generation_config: the settings (``GenerationConfig``); None takes the model's
            ``generation_config`` (read from its folder), else the defaults.
        inputs_embeds: encoder input embeddings instead of ids (soft prompts use this).
        seed: seeds this call's sampler (reproducible regardless of global state); None draws from
            minillm's generator, so ``manual_seed`` makes the call repeatable.
        **overrides: any GenerationConfig field (``max_new_tokens=16, num_beams=4``), applied on top.

    Returns:
        int64 array (batch * num_return_sequences, 1 + generated), starting with the decoder start
        token; a ``GenerateOutput`` with ``return_dict_in_generate``.
    """
    config = resolve_config(model, generation_config, **overrides)
    was_training = model.training
    model.eval()
    try:
        with no_grad(), fast_context("decoding"):  # decoding multiplies a few rows at a time
            ids = input_ids.data if isinstance(input_ids, Tensor) else input_ids
            if ids is not None:
                ids = get_array_module(ids).asarray(ids)
            mask = attention_mask.data if isinstance(attention_mask, Tensor) else attention_mask
            shape = ids.shape if ids is not None else inputs_embeds.shape[:2]
            check_generation_fits(model.config, shape[0], shape[1], config,
                                  get_array_module(ids if ids is not None else inputs_embeds.data))
            encoder_hidden = model.encode(ids, mask, inputs_embeds)
            if config.num_beams > 1:
                out = _beam_search(model, encoder_hidden, mask, config)
            else:
                out = _greedy_or_sample(model, encoder_hidden, mask, config, seed)
    finally:
        model.train(was_training)
    return out if config.return_dict_in_generate else out.sequences


def _next_logits(model, tokens, encoder_hidden, mask, caches, use_cache):
    """Logits of the last position: one new token with the cache, the whole prefix without."""
    if use_cache:
        step_input = tokens[:, -1:]
        logits = model.decode(step_input, encoder_hidden, mask, caches=caches, past_length=tokens.shape[1] - 1)
    else:
        logits = model.decode(tokens, encoder_hidden, mask)
    return logits.data[:, -1, :].astype(np.float32)


def _repeat_rows(encoder_hidden, mask, times):
    """Each example's encoder output (and mask) repeated ``times`` times, one after the other."""
    if times == 1:
        return encoder_hidden, mask
    xp = get_array_module(encoder_hidden.data)
    return (Tensor(xp.repeat(encoder_hidden.data, times, axis=0)),
            None if mask is None else xp.repeat(xp.asarray(mask), times, axis=0))


def _sample(logits, rng, xp):
    """One token per row by inverse-CDF sampling from the filtered distribution (float64 on the host).

    Token i is drawn when cumsum[i - 1] <= u < cumsum[i], an interval as long as its probability:
    empty for a removed token, the first one included (at u = 0).
    """
    probs = xp.exp(_log_softmax(logits))
    probs = np.asarray(probs.get() if xp is not np else probs, dtype=np.float64)
    probs /= probs.sum(axis=-1, keepdims=True)
    u = rng.random((probs.shape[0], 1))  # one uniform draw per row from this call's own generator
    return xp.asarray(np.minimum((probs.cumsum(axis=-1) <= u).sum(axis=-1), probs.shape[-1] - 1))


def _greedy_or_sample(model, encoder_hidden, mask, config, seed):
    encoder_hidden, mask = _repeat_rows(encoder_hidden, mask, config.num_return_sequences)
    xp = get_array_module(encoder_hidden.data)
    rows = encoder_hidden.shape[0]
    tokens = xp.full((rows, 1), config.decoder_start_token_id, dtype=np.int64)
    unfinished = xp.ones(rows, dtype=bool)
    caches = _new_caches(model) if config.use_cache else None
    rng = np.random.default_rng(seed) if seed is not None else get_rng(np)
    scores = []
    for _ in range(config.max_new_tokens):
        logits = _next_logits(model, tokens, encoder_hidden, mask, caches, config.use_cache)
        if config.do_sample:
            logits = filter_logits(logits, config.temperature, config.top_k, config.top_p)
            next_tokens = _sample(logits, rng, xp)
        else:
            next_tokens = logits.argmax(axis=-1)
        if config.output_scores:
            scores.append(logits)
        next_tokens = xp.where(unfinished, next_tokens, config.pad_token_id).astype(np.int64)
        tokens = xp.concatenate([tokens, next_tokens[:, None]], axis=1)
        unfinished &= next_tokens != config.eos_token_id
        if not bool(unfinished.any()):
            break
    return GenerateOutput(tokens, scores=tuple(scores) if config.output_scores else None)


# ------------------------------------------------------------------------------ beam search
def _reorder(caches, index):
    """Keep the cached keys/values of the surviving beams (self-attention only; cross is shared)."""
    for cache in caches:
        own = cache["self"]
        for key in ("k", "v"):
            own[key] = Tensor(own[key].data[index])


class _Hypotheses:
    """Token tables of one beam search: (batch, num_beams, max_len) ids with their scores.

    ``running`` holds the beams still being extended (score: sum of log p); ``finished`` the best
    ended hypotheses so far (score: sum(log p) / length ** length_penalty; length: ``finished_len``).
    """

    def __init__(self, xp, batch, nb, max_len, config):
        self.running = xp.full((batch, nb, max_len), config.pad_token_id, dtype=np.int64)
        self.running[:, :, 0] = config.decoder_start_token_id
        self.running_scores = xp.full((batch, nb), _NEG, dtype=np.float32)
        self.running_scores[:, 0] = 0.0  # at step 0 all beams are identical: let only one expand
        self.finished = self.running.copy()
        self.finished_scores = xp.full((batch, nb), _NEG, dtype=np.float32)
        self.is_finished = xp.zeros((batch, nb), dtype=bool)
        self.finished_len = xp.ones((batch, nb), dtype=np.int64)
        self.improvable = xp.ones((batch, 1), dtype=bool)


def _take(xp, arrays, index):
    """Gather along the beam axis of each array (index: (batch, k))."""
    return [xp.take_along_axis(a, index if a.ndim == 2 else index[:, :, None], axis=1) for a in arrays]


def _keep_finished(h, candidates, top_scores, just_finished, cur_len, config, xp):
    """Merge the candidates that just ended into the finished set; keep the best num_beams."""
    nb = h.finished.shape[1]
    scored = top_scores / np.float32((cur_len + 1 - 1) ** config.length_penalty)
    scored = scored + (~just_finished) * _NEG + (~h.improvable) * _NEG
    if config.early_stopping is True:  # a full finished set takes no more hypotheses
        scored = scored + h.is_finished.all(axis=-1, keepdims=True) * _NEG
    merged = [xp.concatenate(pair, axis=1) for pair in (
        (h.finished, candidates), (h.finished_scores, scored.astype(np.float32)),
        (h.is_finished, just_finished), (h.finished_len, xp.full(just_finished.shape, cur_len + 1)))]
    best = xp.argsort(-merged[1], axis=-1, kind="stable")[:, :nb]
    h.finished, h.finished_scores, h.is_finished, h.finished_len = _take(xp, merged, best)


def _update_improvable(h, cur_len, config, xp):
    """transformers' stopping heuristic: can the best running beam still beat the worst finished one?

    It is scored as if it ended now (early_stopping False), or, under "never" with a positive
    length penalty, as if it ended at the length limit (the most a longer sequence can gain).
    """
    if config.early_stopping == "never" and config.length_penalty > 0:
        length = config.max_new_tokens
    else:
        length = cur_len - 1
    best_running = h.running_scores[:, :1] / np.float32(length ** config.length_penalty)
    worst_finished = xp.where(h.is_finished, h.finished_scores, _NEG).min(axis=-1, keepdims=True)
    worst_finished = xp.where(h.is_finished.all(axis=-1, keepdims=True), worst_finished, _NEG)
    h.improvable = h.improvable & (best_running > worst_finished)


def _beam_search(model, encoder_hidden, mask, config):
    xp = get_array_module(encoder_hidden.data)
    batch, nb = encoder_hidden.shape[0], config.num_beams
    encoder_hidden, mask = _repeat_rows(encoder_hidden, mask, nb)  # every beam attends to its example
    max_len, cur_len, keep = 1 + config.max_new_tokens, 1, 2 * nb  # keep: nb can go on if nb just ended
    h = _Hypotheses(xp, batch, nb, max_len, config)
    caches = _new_caches(model) if config.use_cache else None
    scores = []
    while cur_len < max_len:
        flat = h.running[:, :, :cur_len].reshape(batch * nb, cur_len)
        log_probs = _log_softmax(_next_logits(model, flat, encoder_hidden, mask, caches, config.use_cache))
        if config.output_scores:
            scores.append(log_probs)
        vocab = log_probs.shape[-1]
        total = (log_probs.reshape(batch, nb, vocab) + h.running_scores[:, :, None]).reshape(batch, nb * vocab)
        top = xp.argsort(-total, axis=-1, kind="stable")[:, :keep]  # (batch, 2 nb) best candidates
        top_scores = xp.take_along_axis(total, top, axis=-1)
        from_beam, token = top // vocab, top % vocab
        candidates = xp.take_along_axis(h.running, from_beam[:, :, None], axis=1).copy()
        candidates[:, :, cur_len] = token
        stops = (token == config.eos_token_id) | (cur_len + 1 >= max_len)  # </s> or the length limit
        # 1) The best nb candidates that did not stop continue.
        alive_scores = top_scores + stops * _NEG
        alive = xp.argsort(-alive_scores, axis=-1, kind="stable")[:, :nb]
        h.running, h.running_scores, origin = _take(xp, [candidates, alive_scores.astype(np.float32), from_beam], alive)
        # 2) Stopped candidates among the top nb join the finished set, scored by length.
        _keep_finished(h, candidates, top_scores, stops & (xp.arange(keep) < nb)[None, :], cur_len, config, xp)
        if config.use_cache:
            _reorder(caches, (origin + xp.arange(batch)[:, None] * nb).reshape(-1))
        cur_len += 1
        _update_improvable(h, cur_len, config, xp)
        if not bool(h.improvable.any()) or bool(stops.all()):
            break
        if config.early_stopping is True and bool(h.is_finished.all()):
            break
    return _beam_output(h, config, scores)


def _beam_output(h, config, scores):
    """The best num_return_sequences hypotheses per example, cut to the longest of them."""
    n = config.num_return_sequences
    batch, length = h.finished.shape[0], int(h.finished_len[:, :n].max())
    sequences = h.finished[:, :n, :length].reshape(batch * n, length)
    if not config.output_scores:
        return GenerateOutput(sequences)
    return GenerateOutput(sequences, h.finished_scores[:, :n].reshape(-1), tuple(scores))
