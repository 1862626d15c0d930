"""T5's hyper-parameters: ``T5Config``, read from and written to Hugging Face's ``config.json``.

Kept apart from the model, as transformers keeps ``configuration_t5.py`` apart from
``modeling_t5.py``: a config is checked (types, ranges, the activation, the bucket arguments)
before any array of the model exists.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from ..files import read_json

ACTIVATIONS = {"relu": "max(x, 0)", "gelu": "exact GELU, x Phi(x) with erf",
               "gelu_new": "GELU's tanh approximation", "gelu_pytorch_tanh": "GELU's tanh approximation"}
"""The activations ``feed_forward_proj`` may name, as transformers' ACT2FN spells them."""

FEED_FORWARD_PROJ = tuple(ACTIVATIONS) + tuple(f"gated-{name}" for name in ACTIVATIONS)
"""Accepted ``feed_forward_proj`` values: an activation, or ``gated-`` and one (Shazeer, 2020)."""

_SIZES = ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_decoder_layers", "num_heads",
          "relative_attention_num_buckets", "relative_attention_max_distance")
_TOKEN_IDS = ("pad_token_id", "eos_token_id", "decoder_start_token_id")


@dataclass
class T5Config:
    """Hyper-parameters, with Hugging Face's field names and defaults (t5-small's shape)."""

    vocab_size: int = 32128
    d_model: int = 512
    d_kv: int = 64
    d_ff: int = 2048
    num_layers: int = 6
    num_decoder_layers: int | None = None  # None: same as num_layers
    num_heads: int = 8
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    dropout_rate: float = 0.1
    layer_norm_epsilon: float = 1e-6
    initializer_factor: float = 1.0
    feed_forward_proj: str = "relu"  # one of FEED_FORWARD_PROJ; T5 v1.1 / FLAN-T5 use "gated-gelu"
    tie_word_embeddings: bool = True
    # Multiply the decoder output by d_model**-0.5 before lm_head. Original T5 does (its lm_head is
    # the tied embedding); T5 v1.1/FLAN-T5 do not. None means "same as tie_word_embeddings", the
    # rule transformers 4.x used; transformers 5 stores the flag itself.
    scale_decoder_outputs: bool | None = None
    pad_token_id: int = 0
    eos_token_id: int = 1
    decoder_start_token_id: int = 0
    extra: dict = field(default_factory=dict)  # unknown keys from a config.json, kept for saving

    def __post_init__(self):
        if self.num_decoder_layers is None:
            self.num_decoder_layers = self.num_layers
        self._check_types_and_ranges()
        if self.scale_decoder_outputs is None:
            self.scale_decoder_outputs = self.tie_word_embeddings

    def _check_types_and_ranges(self) -> None:
        """Refuse a value of the wrong type or out of range, naming the key, before any array exists.

        A config.json comes from anywhere; ``"d_model": "512"`` or ``"num_heads": 0`` must fail here,
        not as a NumPy error deep inside the model (or as a huge allocation).
        """
        _check_integers(self)
        _check_floats(self)
        for name in ("tie_word_embeddings", "scale_decoder_outputs"):
            if not isinstance(getattr(self, name), bool) and not (name == "scale_decoder_outputs"
                                                                  and self.scale_decoder_outputs is None):
                raise ValueError(f"T5Config: {name} must be true or false, got {getattr(self, name)!r}")
        if self.feed_forward_proj not in FEED_FORWARD_PROJ:
            raise ValueError(f"T5Config: feed_forward_proj must be one of {', '.join(map(repr, FEED_FORWARD_PROJ))}; "
                             f"got {self.feed_forward_proj!r}")
        check_bucket_arguments(self.relative_attention_num_buckets, self.relative_attention_max_distance)
        if not isinstance(self.extra, dict):
            raise ValueError("T5Config: extra must be a dict")

    @property
    def is_gated_act(self) -> bool:
        """Whether the feed-forward is gated: act(wi_0 x) * wi_1 x."""
        return self.feed_forward_proj.startswith("gated-")

    @property
    def dense_act_fn(self) -> str:
        """The activation's name, as transformers derives it: the part after ``gated-``, except that
        ``gated-gelu`` means ``gelu_new`` (the tanh form T5 v1.1 was trained with)."""
        if self.feed_forward_proj == "gated-gelu":
            return "gelu_new"
        return self.feed_forward_proj.removeprefix("gated-")

    def to_dict(self) -> dict:
        """The config as Hugging Face's config.json dict. A ``transformers_version`` read from a file is
        not written back (transformers did not write this file); ``minillm_version`` says who did."""
        from .. import __version__  # noqa: PLC0415

        d = {k: v for k, v in dataclasses.asdict(self).items() if k != "extra"}
        d.update({"model_type": "t5", "architectures": ["T5ForConditionalGeneration"],
                  "is_encoder_decoder": True, "dense_act_fn": self.dense_act_fn, "is_gated_act": self.is_gated_act})
        extra = {k: v for k, v in self.extra.items() if k != "transformers_version"}
        return {**extra, **d, "minillm_version": __version__}

    @classmethod
    def from_dict(cls, d: dict) -> "T5Config":
        """Build from a config.json dict; keys minillm does not use are kept in ``extra``."""
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in d.items() if k in names}
        return cls(**known, extra={k: v for k, v in d.items() if k not in names})

    @classmethod
    def from_json_file(cls, path) -> "T5Config":
        """Read a config.json; a ValueError names the file when it is not valid JSON or a value is wrong."""
        values = read_json(path, "config.json")
        if not isinstance(values, dict):
            raise ValueError(f"{path}: expected a JSON object of settings, got {type(values).__name__}")
        try:
            return cls.from_dict(values)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None


def check_bucket_arguments(num_buckets: int, max_distance: int) -> None:
    """Refuse relative-attention bucket arguments for which T5's log-bucketing is undefined.

    The decoder's (causal) buckets hold distances below ``max_exact = num_buckets // 2`` exactly,
    and log-space the rest with ``log(d / max_exact) / log(max_distance / max_exact)``; the
    encoder (bidirectional) does the same with half the buckets, ``max_exact = num_buckets // 4``.
    So ``num_buckets // 4 >= 1`` (else d / 0), and ``max_distance > num_buckets // 2`` (else the
    divisor log(max_distance / max_exact) is 0, or negative and the far buckets fall below the
    exact ones).
    """
    if num_buckets < 4:
        raise ValueError(f"T5Config: relative_attention_num_buckets must be >= 4 (the encoder's exact "
                         f"buckets are num_buckets // 4), got {num_buckets}")
    if max_distance <= num_buckets // 2:
        raise ValueError(f"T5Config: relative_attention_max_distance must be > relative_attention_num_buckets // 2 "
                         f"= {num_buckets // 2} (the decoder's exact distances), got {max_distance}")


def _check_integers(config: T5Config) -> None:
    """Sizes are integers >= 1, token ids integers in [0, vocab_size)."""
    for name in _SIZES + _TOKEN_IDS:
        value = getattr(config, name)
        if type(value) is not int:
            raise ValueError(f"T5Config: {name} must be an integer, got {value!r}")
        if value < (1 if name in _SIZES else 0):
            raise ValueError(f"T5Config: {name} must be >= {1 if name in _SIZES else 0}, got {value}")
    for name in _TOKEN_IDS:
        if getattr(config, name) >= config.vocab_size:
            raise ValueError(f"T5Config: {name}={getattr(config, name)} is not an id of a vocabulary of "
                             f"{config.vocab_size}")


def _check_floats(config: T5Config) -> None:
    """dropout_rate in [0, 1); layer_norm_epsilon and initializer_factor finite and > 0."""
    for name, low, high in (("dropout_rate", 0.0, 1.0), ("layer_norm_epsilon", 0.0, math.inf),
                            ("initializer_factor", 0.0, math.inf)):
        value = getattr(config, name)
        if type(value) not in (int, float) or not math.isfinite(value) or not low <= value < high:
            raise ValueError(f"T5Config: {name} must be a finite number in [{low}, {high}), got {value!r}")
    if config.layer_norm_epsilon == 0 or config.initializer_factor == 0:
        raise ValueError("T5Config: layer_norm_epsilon and initializer_factor must be > 0")
