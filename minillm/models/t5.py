"""T5: the encoder-decoder transformer of Raffel et al. (2020), readable top to bottom.

Follow one batch through the code:

    input_ids ─ shared embedding ─ encoder blocks (self-attention, feed-forward) ─ final RMSNorm ─┐
                                                                                                  │ cross-attention
    decoder_input_ids ─ shared embedding ─ decoder blocks (causal self-attn, cross-attn, FF) ─────┘
        ─ final RMSNorm ─ (x d_model^-0.5 when tied) ─ lm_head ─ logits ─ cross-entropy(labels)

Every sub-layer is pre-norm and residual:  h = h + Dropout(SubLayer(RMSNorm(h))).
Parameter names match Hugging Face's ``T5ForConditionalGeneration`` one to one, so a state dict
moves between the two without a mapping table (see models/hf.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import ops
from ..autograd import Tensor
from ..backend import get_array_module
from ..nn import Dropout, Embedding, Linear, Module, ModuleList, RMSNorm
from ..nn.attention import MultiHeadAttention
from .configuration_t5 import T5Config
from .hf import load_pretrained, save_pretrained


@dataclass
class Seq2SeqOutput:
    """What the model returns; ``loss`` is None without labels."""

    logits: Tensor
    loss: Tensor | None = None
    encoder_last_hidden_state: Tensor | None = None


class DenseReluDense(Module):
    """Feed-forward: wo(act(wi x)), or gated: wo(act(wi_0 x) * wi_1 x) (Shazeer, 2020).

    ``act`` is ``config.dense_act_fn``, named as in transformers: "gelu" is the exact GELU (erf),
    "gelu_new" and "gelu_pytorch_tanh" its tanh approximation, and "gated-gelu" means gated
    "gelu_new", the form T5 v1.1 and FLAN-T5 were trained with.
    """

    def __init__(self, config: T5Config):
        super().__init__()
        d, ff, f = config.d_model, config.d_ff, config.initializer_factor
        self.gated = config.is_gated_act
        self.act = config.dense_act_fn
        if self.gated:
            self.wi_0 = Linear(d, ff, bias=False, std=f * d ** -0.5)
            self.wi_1 = Linear(d, ff, bias=False, std=f * d ** -0.5)
        else:
            self.wi = Linear(d, ff, bias=False, std=f * d ** -0.5)
        self.wo = Linear(ff, d, bias=False, std=f * ff ** -0.5)
        self.dropout = Dropout(config.dropout_rate)

    def _activation(self, x: Tensor) -> Tensor:
        if self.act == "relu":
            return ops.relu(x)
        return ops.gelu(x, approximate="none" if self.act == "gelu" else "tanh")

    def forward(self, x: Tensor) -> Tensor:
        if self.gated and self.act in ("gelu_new", "gelu_pytorch_tanh"):  # one fused op: gelu_tanh(wi_0 x) * wi_1 x
            h = ops.gated_gelu(self.wi_0(x), self.wi_1(x))
        elif self.gated:
            h = self._activation(self.wi_0(x)) * self.wi_1(x)
        else:
            h = self._activation(self.wi(x))
        return self.wo(self.dropout(h))


class LayerSelfAttention(Module):
    """h + Dropout(SelfAttention(RMSNorm(h))). HF name: ``layer.0``."""

    def __init__(self, config: T5Config, is_decoder: bool, has_relative_attention_bias: bool):
        super().__init__()
        self.SelfAttention = _attention(config, is_decoder, has_relative_attention_bias)
        self.layer_norm = RMSNorm(config.d_model, eps=config.layer_norm_epsilon)
        self.dropout = Dropout(config.dropout_rate)

    def forward(self, hidden, bias=None, mask=None, causal=False, cache=None):
        return hidden + self.dropout(self.SelfAttention(self.layer_norm(hidden), bias=bias, mask=mask,
                                                        causal=causal, cache=cache))


class LayerCrossAttention(Module):
    """h + Dropout(EncDecAttention(RMSNorm(h), encoder states)). HF name: ``layer.1`` in the decoder."""

    def __init__(self, config: T5Config):
        super().__init__()
        self.EncDecAttention = _attention(config, True, False)
        self.layer_norm = RMSNorm(config.d_model, eps=config.layer_norm_epsilon)
        self.dropout = Dropout(config.dropout_rate)

    def forward(self, hidden, encoder_hidden, mask=None, cache=None):
        return hidden + self.dropout(self.EncDecAttention(self.layer_norm(hidden), encoder_hidden,
                                                          mask=mask, cache=cache))


class LayerFF(Module):
    """h + Dropout(FeedForward(RMSNorm(h))). HF name: ``layer.1`` (encoder) / ``layer.2`` (decoder)."""

    def __init__(self, config: T5Config):
        super().__init__()
        self.DenseReluDense = DenseReluDense(config)
        self.layer_norm = RMSNorm(config.d_model, eps=config.layer_norm_epsilon)
        self.dropout = Dropout(config.dropout_rate)

    def forward(self, hidden):
        return hidden + self.dropout(self.DenseReluDense(self.layer_norm(hidden)))


def _attention(config: T5Config, is_decoder: bool, has_bias: bool) -> MultiHeadAttention:
    return MultiHeadAttention(config.d_model, config.d_kv, config.num_heads, is_decoder=is_decoder,
                              has_relative_attention_bias=has_bias,
                              num_buckets=config.relative_attention_num_buckets,
                              max_distance=config.relative_attention_max_distance,
                              dropout=config.dropout_rate)


class T5Block(Module):
    """One transformer block: ``layer`` = [self-attn, (cross-attn,) feed-forward]."""

    def __init__(self, config: T5Config, is_decoder: bool, has_relative_attention_bias: bool):
        super().__init__()
        layers = [LayerSelfAttention(config, is_decoder, has_relative_attention_bias)]
        if is_decoder:
            layers.append(LayerCrossAttention(config))
        layers.append(LayerFF(config))
        self.layer = ModuleList(layers)
        self.is_decoder = is_decoder

    def forward(self, hidden, bias=None, mask=None, causal=False, encoder_hidden=None,
                encoder_mask=None, cache=None):
        cache = cache if cache is not None else {}
        hidden = self.layer[0](hidden, bias=bias, mask=mask, causal=causal, cache=cache.get("self"))
        if self.is_decoder:
            hidden = self.layer[1](hidden, encoder_hidden, mask=encoder_mask, cache=cache.get("cross"))
        return self.layer[-1](hidden)


class T5Stack(Module):
    """The encoder or the decoder: embeddings, blocks, final RMSNorm."""

    def __init__(self, config: T5Config, embed_tokens: Embedding, is_decoder: bool):
        super().__init__()
        self.embed_tokens = embed_tokens  # shared with the other stack (same Parameter)
        self.is_decoder = is_decoder
        n = config.num_decoder_layers if is_decoder else config.num_layers
        self.block = ModuleList(T5Block(config, is_decoder, has_relative_attention_bias=(i == 0))
                                for i in range(n))
        self.final_layer_norm = RMSNorm(config.d_model, eps=config.layer_norm_epsilon)
        self.dropout = Dropout(config.dropout_rate)

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, encoder_hidden=None,
                encoder_attention_mask=None, caches=None, past_length: int = 0) -> Tensor:
        """Run the stack.

        Args:
            attention_mask: (batch, len) with 1 for real tokens and 0 for padding.
            caches: per-block dicts for incremental decoding; ``past_length`` tokens are cached.
        """
        hidden = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        batch, length = hidden.shape[:2]
        xp = get_array_module(hidden.data)
        key_len = past_length + length
        mask = None
        if attention_mask is not None:
            am = _as_bool(attention_mask, xp)
            if am.shape != (batch, key_len):
                raise ValueError(f"attention_mask has shape {am.shape}, expected {(batch, key_len)}")
            mask = am[:, None, None, :]  # (batch, 1, 1, key_len): padding keys get no attention
        causal = False
        if self.is_decoder and past_length == 0:
            causal = True  # query i sees keys 0..i; the attention op builds that mask itself
        elif self.is_decoder and length > 1:
            # Several new tokens after a cache: query i (absolute position past_length+i) sees
            # keys 0..past_length+i. (With one new token, every cached key is in its past.)
            tri = xp.tril(xp.ones((length, key_len), dtype=bool), k=past_length)
            mask = tri if mask is None else mask & tri
        # The relative position bias is computed once, by the first block, and shared by all.
        bias = self.block[0].layer[0].SelfAttention.compute_bias(length, key_len, offset=past_length)
        enc_mask = None
        if encoder_attention_mask is not None:
            enc_mask = _as_bool(encoder_attention_mask, xp)[:, None, None, :]
        hidden = self.dropout(hidden)
        for i, block in enumerate(self.block):
            hidden = block(hidden, bias=bias, mask=mask, causal=causal, encoder_hidden=encoder_hidden,
                           encoder_mask=enc_mask, cache=None if caches is None else caches[i])
        return self.dropout(self.final_layer_norm(hidden))


def _as_bool(mask, xp):
    mask = mask.data if isinstance(mask, Tensor) else xp.asarray(mask)
    return mask.astype(bool)


class T5ForConditionalGeneration(Module):
    """The full model: shared embedding, encoder, decoder and a language-model head."""

    def __init__(self, config: T5Config):
        super().__init__()
        self.config = config
        self.shared = Embedding(config.vocab_size, config.d_model, std=config.initializer_factor)
        self.encoder = T5Stack(config, self.shared, is_decoder=False)
        self.decoder = T5Stack(config, self.shared, is_decoder=True)
        self.lm_head = Linear(config.d_model, config.vocab_size, bias=False,
                              std=config.initializer_factor * config.d_model ** -0.5)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.shared.weight

    # Hugging Face method names, implemented in models/hf.py and generation.py.
    config_class = T5Config  # what models/hf.py reads config.json into

    @classmethod
    def from_pretrained(cls, directory, **kwargs) -> "T5ForConditionalGeneration":
        """Load ``config.json`` + ``model.safetensors`` from a Hugging Face folder."""
        return load_pretrained(cls, directory, **kwargs)

    def save_pretrained(self, directory) -> None:
        """Write ``config.json`` + ``model.safetensors`` that transformers can load."""
        save_pretrained(self, directory)

    def generate(self, input_ids, attention_mask=None, **kwargs):
        """Generate output token ids; see ``minillm.generation.generate`` for the options."""
        from ..generation import generate  # noqa: PLC0415

        return generate(self, input_ids, attention_mask=attention_mask, **kwargs)

    def shift_right(self, labels):
        """Decoder inputs from labels: prepend the start token, drop the last, -100 -> pad."""
        xp = get_array_module(labels)
        labels = labels.data if isinstance(labels, Tensor) else xp.asarray(labels)
        shifted = xp.empty_like(labels)
        shifted[:, 0] = self.config.decoder_start_token_id
        shifted[:, 1:] = labels[:, :-1]
        shifted[shifted == -100] = self.config.pad_token_id
        return shifted

    def embed_inputs(self, input_ids) -> Tensor:
        """The encoder's input embeddings (soft prompts prepend to these)."""
        return self.shared(input_ids)

    def encode(self, input_ids=None, attention_mask=None, inputs_embeds=None) -> Tensor:
        """Encoder hidden states (batch, src_len, d_model)."""
        return self.encoder(input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds)

    def decode(self, decoder_input_ids, encoder_hidden, attention_mask=None,
               decoder_attention_mask=None, caches=None, past_length: int = 0) -> Tensor:
        """Logits (batch, tgt_len, vocab) for decoder inputs, given the encoder's output."""
        hidden = self.decoder(decoder_input_ids, attention_mask=decoder_attention_mask,
                              encoder_hidden=encoder_hidden, encoder_attention_mask=attention_mask,
                              caches=caches, past_length=past_length)
        if self.config.scale_decoder_outputs:
            # Original T5 (tied embeddings): rescale before projecting onto the unit-scale
            # embedding matrix, as Mesh TensorFlow T5 does.
            hidden = hidden * (self.config.d_model ** -0.5)
        return self.lm_head(hidden)

    def forward(self, input_ids=None, attention_mask=None, decoder_input_ids=None,
                decoder_attention_mask=None, labels=None, inputs_embeds=None,
                encoder_outputs=None) -> Seq2SeqOutput:
        """Teacher-forced forward pass; with ``labels`` (-100 = ignore) it also returns the loss."""
        if input_ids is None and inputs_embeds is None and encoder_outputs is None:
            raise ValueError("T5ForConditionalGeneration: pass input_ids, inputs_embeds or encoder_outputs")
        encoder_hidden = encoder_outputs if encoder_outputs is not None else self.encode(
            input_ids, attention_mask, inputs_embeds)
        if decoder_input_ids is None:
            if labels is None:
                raise ValueError("T5ForConditionalGeneration: pass decoder_input_ids or labels")
            decoder_input_ids = self.shift_right(labels)
        logits = self.decode(decoder_input_ids, encoder_hidden, attention_mask, decoder_attention_mask)
        loss = None
        if labels is not None:
            labels = labels.data if isinstance(labels, Tensor) else labels
            loss = ops.cross_entropy(logits, np.asarray(labels) if isinstance(labels, list) else labels,
                                     ignore_index=-100)
        return Seq2SeqOutput(logits=logits, loss=loss, encoder_last_hidden_state=encoder_hidden)
