"""``GenerationConfig``: how ``generate`` decodes, as one object, with Hugging Face's names.

    config = GenerationConfig(num_beams=4, length_penalty=0.6, max_new_tokens=48)
    model.generate(input_ids, attention_mask, generation_config=config, num_return_sequences=2)

A model folder may hold ``generation_config.json`` (the Hub's checkpoints do); ``from_pretrained``
reads it, ``save_pretrained`` writes it, and transformers reads what is written here. The names and
meanings are transformers' (``generation/configuration_utils.py``), with two defaults of minillm's
own, stated so that a comparison sets them explicitly:

- ``max_new_tokens`` defaults to 32 (transformers: ``max_length`` 20, i.e. 19 new tokens for an
  encoder-decoder). A file's ``max_length`` is read as ``max_new_tokens = max_length - 1``, as the
  decoder start token counts towards ``max_length``.
- ``top_k`` defaults to 0, i.e. off (transformers: 50). It only matters when ``do_sample`` is set.

A file that asks for a behaviour minillm does not implement (``repetition_penalty`` 1.2,
``no_repeat_ngram_size`` 3, ...) is refused, naming the file and the key, rather than silently
decoding differently. Keys that do not change the tokens (``transformers_version``, ...) are dropped.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from .files import atomic_write_text, read_json

GENERATION_CONFIG_NAME = "generation_config.json"
EARLY_STOPPING_VALUES = (True, False, "never")

# transformers options that minillm does not implement, with the value that makes each a no-op.
_NO_OP_VALUES = {
    "min_length": (0, None), "min_new_tokens": (0, None), "repetition_penalty": (1.0, None),
    "no_repeat_ngram_size": (0, None), "encoder_no_repeat_ngram_size": (0, None), "typical_p": (1.0, None),
    "bad_words_ids": (None,), "force_words_ids": (None,), "forced_bos_token_id": (None,),
    "forced_eos_token_id": (None,), "suppress_tokens": (None,), "begin_suppress_tokens": (None,),
    "num_beam_groups": (1, None), "diversity_penalty": (0.0, None), "epsilon_cutoff": (0.0, None),
    "eta_cutoff": (0.0, None), "encoder_repetition_penalty": (1.0, None), "penalty_alpha": (None,),
    "exponential_decay_length_penalty": (None,), "constraints": (None,), "sequence_bias": (None,),
    "guidance_scale": (None, 1.0), "min_p": (None,), "top_h": (None,), "stop_strings": (None,),
    "renormalize_logits": (False, None),
}
# Keys that describe the file or the runtime, not the tokens.
_IGNORED_KEYS = {"transformers_version", "minillm_version", "_from_model_config", "output_attentions",
                 "output_hidden_states", "output_logits", "max_time", "remove_invalid_values", "low_memory",
                 "cache_implementation", "bos_token_id", "is_assistant", "num_assistant_tokens",
                 "num_assistant_tokens_schedule", "assistant_confidence_threshold", "assistant_lookbehind",
                 "target_lookbehind", "disable_compile", "compile_config", "watermarking_config",
                 "prefill_chunk_size", "cache_config", "max_cache_len", "token_healing", "use_mtp"}


@dataclasses.dataclass
class GenerationConfig:
    """The settings of one ``generate`` call (transformers' names and meanings).

    Args:
        max_new_tokens: most tokens to generate after the decoder start token.
        num_beams: 1 for greedy search or sampling, more for beam search.
        num_return_sequences: sequences returned per input (beam search: the best ones, at most
            num_beams; sampling: independent draws; greedy search: 1).
        do_sample: draw each token from the (filtered) distribution instead of taking the argmax.
        temperature: divides the logits before sampling (> 0).
        top_k: sampling keeps the k most likely tokens (0: all).
        top_p: sampling keeps the smallest set of tokens whose probabilities add up to top_p.
        length_penalty: beam search scores a finished hypothesis sum(log p) / length ** length_penalty.
        early_stopping: beam search stops when num_beams hypotheses have finished (True), when a
            heuristic says none can improve (False), or only when none can (\"never\").
        use_cache: keep keys and values across steps (the tokens are the same either way).
        output_scores: with return_dict_in_generate, also return per-step scores and, for beam
            search, sequences_scores.
        return_dict_in_generate: return a GenerateOutput instead of the token array.
        eos_token_id / pad_token_id / decoder_start_token_id: None takes the model config's.
    """

    max_new_tokens: int = 32
    num_beams: int = 1
    num_return_sequences: int = 1
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    length_penalty: float = 1.0
    early_stopping: bool | str = False
    use_cache: bool = True
    output_scores: bool = False
    return_dict_in_generate: bool = False
    eos_token_id: int | None = None
    pad_token_id: int | None = None
    decoder_start_token_id: int | None = None

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first setting that is out of its range or inconsistent."""
        def need(ok, message):
            if not ok:
                raise ValueError(f"GenerationConfig: {message}")

        for name in ("max_new_tokens", "num_beams", "num_return_sequences", "top_k"):
            value = getattr(self, name)
            need(isinstance(value, int) and not isinstance(value, bool), f"{name} must be an integer, got {value!r}")
        need(self.max_new_tokens >= 1, f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        need(self.num_beams >= 1, f"num_beams must be >= 1, got {self.num_beams}")
        need(self.num_return_sequences >= 1, f"num_return_sequences must be >= 1, got {self.num_return_sequences}")
        need(self.top_k >= 0, f"top_k must be >= 0, got {self.top_k}")
        need(self.temperature > 0, f"temperature must be > 0, got {self.temperature}")
        need(0 < self.top_p <= 1, f"top_p must be in (0, 1], got {self.top_p}")
        need(any(self.early_stopping is v for v in (True, False)) or self.early_stopping == "never",
             f"early_stopping must be True, False or \"never\", got {self.early_stopping!r}")
        need(not (self.do_sample and self.num_beams > 1),
             "beam sampling (do_sample with num_beams > 1) is not supported; use num_beams=1 with do_sample")
        if self.num_beams > 1:
            need(self.num_return_sequences <= self.num_beams,
                 f"num_return_sequences ({self.num_return_sequences}) must be <= num_beams ({self.num_beams})")
        else:
            need(self.do_sample or self.num_return_sequences == 1,
                 "greedy search returns one sequence per input: num_return_sequences > 1 needs "
                 "do_sample or num_beams > 1")

    def update(self, **overrides) -> "GenerationConfig":
        """A copy with ``overrides`` applied; an unknown name is a TypeError listing the known ones."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise TypeError(f"generate() got unknown option(s) {unknown}; GenerationConfig has {sorted(known)}")
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict:
        """The settings as a JSON-ready dict (transformers' keys)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, content: dict, source="generation config") -> "GenerationConfig":
        """Read transformers' keys; refuse a behaviour minillm does not implement, naming ``source``."""
        if not isinstance(content, dict):
            raise ValueError(f"{source}: expected a JSON object")
        content = dict(content)
        known = {f.name for f in dataclasses.fields(cls)}
        max_length = content.pop("max_length", None)
        if max_length is not None and content.get("max_new_tokens") is None:
            if not isinstance(max_length, int) or max_length < 2:
                raise ValueError(f"{source}: max_length must be an integer >= 2, got {max_length!r}")
            content["max_new_tokens"] = max_length - 1  # the decoder start token counts towards it
        settings = {}
        for key, value in content.items():
            if key in known:
                if value is not None:
                    settings[key] = value
            elif key in _NO_OP_VALUES:
                if not any(value == v and type(value) is type(v) or value is v for v in _NO_OP_VALUES[key]):
                    raise ValueError(f"{source}: {key}={value!r} is not implemented by minillm "
                                     f"(it decodes as if {key}={_NO_OP_VALUES[key][0]!r}); remove the key")
            elif key not in _IGNORED_KEYS:
                raise ValueError(f"{source}: unknown generation option {key!r}")
        try:
            return cls(**settings)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{source}: {err}") from None

    @classmethod
    def from_pretrained(cls, directory) -> "GenerationConfig | None":
        """The folder's ``generation_config.json``, or None when it has none."""
        path = Path(directory) / GENERATION_CONFIG_NAME
        if not path.exists():
            return None
        return cls.from_dict(read_json(path, "generation_config.json"), source=path)

    def save_pretrained(self, directory) -> None:
        """Write ``generation_config.json`` with the settings that differ from the defaults (as
        transformers does: a reader fills in its own defaults), the token ids, and minillm's version."""
        from . import __version__  # noqa: PLC0415

        defaults = GenerationConfig()
        content = {k: v for k, v in self.to_dict().items() if v is not None and (
            k.endswith("token_id") or v != getattr(defaults, k) or type(v) is not type(getattr(defaults, k)))}
        content["minillm_version"] = __version__
        Path(directory).mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(directory) / GENERATION_CONFIG_NAME, json.dumps(content, indent=2, sort_keys=True))
