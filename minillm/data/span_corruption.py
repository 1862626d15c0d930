"""T5's pretraining objective: span corruption ("fill in the blanks").

Pick about 15% of the tokens of a text, in spans of about 3, and replace each span by a
sentinel. The encoder reads the text with holes; the decoder writes what was in the holes:

    original  Thank you for inviting me to your party last week .
    inputs    Thank you <extra_id_0> me to your party <extra_id_1> week . </s>
    targets   <extra_id_0> for inviting <extra_id_1> last </s>

This is self-supervised: the labels come from the text itself, so any plain text will do
(here, `corpus.pretraining_corpus`). The targets are short (about 15% of the text plus one
sentinel per span), which is what makes T5's pretraining cheap.

`random_spans_noise_mask` follows T5's function of the same name:
    num_noise_tokens = round(length * noise_density), kept within [1, length - 1]
    num_noise_spans  = max(round(num_noise_tokens / mean_noise_span_length), 1)
and both the noise and the non-noise tokens are split into that many spans at random
positions ("random segmentation"). Spans alternate, starting with non-noise, so the text
never begins with a hole.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np


def random_segmentation(num_items: int, num_segments: int, rng: np.random.Generator) -> np.ndarray:
    """Split `num_items` into `num_segments` random positive lengths that sum to `num_items`.

    Choose `num_segments - 1` distinct cut points among the `num_items - 1` gaps between items.
    """
    cuts = np.sort(rng.choice(num_items - 1, size=num_segments - 1, replace=False)) + 1
    return np.diff(np.concatenate([[0], cuts, [num_items]]))


def random_spans_noise_mask(length: int, noise_density: float = 0.15,
                            mean_noise_span_length: float = 3.0,
                            rng: np.random.Generator | None = None) -> np.ndarray:
    """A boolean mask of `length` tokens, True on the tokens to hide (see module doc).

    Args:
        length: number of tokens (at least 2: one must stay and one must be hidden).
        noise_density: fraction of tokens to hide (T5: 0.15).
        mean_noise_span_length: average span length (T5: 3).
    """
    if length < 2:
        raise ValueError(f"span corruption needs at least 2 tokens, got {length}")
    rng = rng if rng is not None else np.random.default_rng()
    num_noise = int(np.round(length * noise_density))
    num_noise = min(max(num_noise, 1), length - 1)
    num_spans = max(int(np.round(num_noise / mean_noise_span_length)), 1)
    num_nonnoise = length - num_noise
    # Each span needs at least one token of each kind. T5 does not check this; it can only fail
    # at high densities (noise_density > 0.5 with short spans), where we use fewer spans.
    num_spans = min(num_spans, num_nonnoise)
    noise_lengths = random_segmentation(num_noise, num_spans, rng)
    nonnoise_lengths = random_segmentation(num_nonnoise, num_spans, rng)
    # Interleave: keep, hide, keep, hide, ...
    lengths = np.stack([nonnoise_lengths, noise_lengths], axis=1).reshape(-1)
    is_noise = np.tile([False, True], num_spans)
    return np.repeat(is_noise, lengths)


def count_spans(mask: np.ndarray) -> int:
    """Number of runs of True in a boolean mask (a run starts where False turns True)."""
    mask = np.asarray(mask, dtype=bool)
    if mask.size == 0:
        return 0
    return int(mask[0]) + int(np.sum(mask[1:] & ~mask[:-1]))


def noise_span_to_sentinel(tokens: Sequence[int], mask: np.ndarray,
                           sentinel_ids: Sequence[int]) -> list[int]:
    """Replace each run of masked tokens by the next sentinel (0, 1, 2, ...)."""
    out, span = [], 0
    for i, (tok, hidden) in enumerate(zip(tokens, mask)):
        if not hidden:
            out.append(int(tok))
        elif i == 0 or not mask[i - 1]:  # first token of a hidden span
            out.append(sentinel_ids[span])
            span += 1
    return out


def span_corruption(tokens: Sequence[int], sentinel_ids: Sequence[int], eos_id: int = 1,
                    noise_density: float = 0.15, mean_noise_span_length: float = 3.0,
                    rng: np.random.Generator | None = None) -> tuple[list[int], list[int]]:
    """Corrupt one token sequence; returns (input_ids, target_ids), each ending in </s>.

    Args:
        tokens: the text's ids, without </s>.
        sentinel_ids: id of <extra_id_0>, <extra_id_1>, ...; e.g.
            `[tokenizer.sentinel_id(i) for i in range(tokenizer.num_sentinels)]`.
    """
    mask = random_spans_noise_mask(len(tokens), noise_density, mean_noise_span_length, rng)
    if count_spans(mask) > len(sentinel_ids):
        raise ValueError(f"{len(tokens)} tokens need more than {len(sentinel_ids)} sentinels")
    inputs = noise_span_to_sentinel(tokens, mask, sentinel_ids)
    # The targets are the mirror image: keep the hidden tokens, replace the kept runs. The mask
    # starts with a kept run, so the targets start with <extra_id_0>, matching the inputs.
    targets = noise_span_to_sentinel(tokens, ~mask, sentinel_ids)
    return inputs + [eos_id], targets + [eos_id]


def chunk_tokens(token_lists: Iterable[Sequence[int]], length: int) -> list[list[int]]:
    """Concatenate documents and cut them into pieces of `length` tokens (T5 "packs" text so
    that no compute is spent on padding). The remainder shorter than 2 tokens is dropped."""
    flat = [int(t) for tokens in token_lists for t in tokens]
    chunks = [flat[i:i + length] for i in range(0, len(flat), length)]
    return [c for c in chunks if len(c) >= 2]


def span_corruption_pairs(texts: Iterable[str], tokenizer, chunk_length: int = 64,
                          noise_density: float = 0.15, mean_noise_span_length: float = 3.0,
                          seed: int = 0) -> list[tuple[list[int], list[int]]]:
    """Plain texts -> (input_ids, target_ids) pairs ready for `collate.Batcher`.

    Each text is encoded (ending in </s>, which marks document boundaries in the packed
    stream), the stream is cut into `chunk_length`-token chunks, and each chunk is corrupted.
    Inputs come out about (1 - noise_density) * chunk_length + spans + 1 tokens long.
    """
    rng = np.random.default_rng(seed)
    sentinels = [tokenizer.sentinel_id(i) for i in range(tokenizer.num_sentinels)]
    encoded = tokenizer.batch_encode(list(texts), padding=False)["input_ids"]
    return [span_corruption(chunk, sentinels, tokenizer.eos_token_id, noise_density,
                            mean_noise_span_length, rng)
            for chunk in chunk_tokens(encoded, chunk_length)]
