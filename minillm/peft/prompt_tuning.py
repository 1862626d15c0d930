"""Prompt tuning: a soft prompt of trained vectors before the encoder's input (Lester et al., 2021).

The model stays frozen. For input embeddings E (batch, len, d) the encoder reads

    [P ; E]     P (num_virtual_tokens, d), the same for every example of the task

and the attention mask gets num_virtual_tokens ones in front, so every input token can attend to
the prompt. The gradient reaching P is the sum over the batch of the gradient at those positions.
Only num_virtual_tokens * d numbers train. Hugging Face PEFT does the same for seq2seq models
and saves P under the single key ``prompt_embeddings``.
"""
from __future__ import annotations

import numpy as np

from .. import ops
from ..autograd import Tensor
from ..backend import get_array_module, get_rng
from ..nn import Embedding, Module, Parameter
from .config import PromptTuningConfig


class PromptEmbedding(Module):
    """The soft prompt: ``embedding.weight`` is P, (num_virtual_tokens, d_model)."""

    def __init__(self, config: PromptTuningConfig, word_embeddings: Embedding):
        super().__init__()
        n = config.num_virtual_tokens
        vocab, dim = word_embeddings.weight.shape
        dtype = word_embeddings.weight.dtype
        self.embedding = Embedding(n, dim)  # "random": N(0, 1), like a fresh nn.Embedding
        self.embedding.weight = Parameter(self.embedding.weight.data.astype(dtype))
        if config.prompt_tuning_init == "sample_vocab":
            ids = get_rng(np).integers(0, vocab, size=n)
            self.embedding.weight = Parameter(np.array(word_embeddings.weight.data[ids]))
        elif config.prompt_tuning_init == "text":
            if config.tokenizer is None or not config.prompt_tuning_init_text:
                raise ValueError("prompt_tuning_init='text' needs prompt_tuning_init_text and a tokenizer")
            ids = list(config.tokenizer.encode(config.prompt_tuning_init_text))
            if not ids:
                raise ValueError("prompt_tuning_init_text encodes to no tokens")
            ids = (ids * (-(-n // len(ids))))[:n]  # repeat, then cut to n (as PEFT)
            self.embedding.weight = Parameter(np.array(word_embeddings.weight.data[np.asarray(ids)]))

    def prepend(self, embeds: Tensor, attention_mask=None):
        """[P ; embeds] (batch, n + len, d) and the mask with n ones in front (None stays None)."""
        batch = embeds.shape[0]
        n, dim = self.embedding.weight.shape
        # (n, d) -> (batch, n, d); broadcast_to's backward sums the batch back into dL/dP
        prompt = ops.broadcast_to(self.embedding.weight.reshape(1, n, dim), (batch, n, dim))
        embeds = ops.concat([prompt, embeds], axis=1)  # (batch, n + len, d)
        if attention_mask is not None:
            mask = attention_mask.data if isinstance(attention_mask, Tensor) else attention_mask
            xp = get_array_module(mask)
            mask = xp.asarray(mask)
            attention_mask = xp.concatenate([xp.ones((batch, n), dtype=mask.dtype), mask], axis=1)
        return embeds, attention_mask
