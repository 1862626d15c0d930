"""Hugging Face folders: ``config.json`` + ``model.safetensors`` <-> a minillm T5.

minillm's parameter names are Hugging Face's, so loading is a dictionary copy. The only care is
for tied weights: a Hugging Face file stores the embedding once, as ``shared.weight``, and leaves
``encoder.embed_tokens.weight``, ``decoder.embed_tokens.weight`` (and ``lm_head.weight`` when tied)
out. Pickled ``pytorch_model.bin`` files are refused: unpickling can run arbitrary code.

A downloaded folder is checked before memory is allocated: ``config.json``'s types and ranges
(``T5Config``), every safetensors header against its file's size, every shape against the config,
and each shard named by an index must lie inside the folder. Every error names the file.
This module does not import ``t5.py``: the model class passes its ``config_class`` in.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from ..files import (atomic_write_text, confined_path, load_safetensors, read_json, read_safetensors_header,
                     save_safetensors)
from ..generation_config import GenerationConfig

# Keys that exist in minillm's state dict as aliases of shared.weight.
_EMBEDDING_ALIASES = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight")
# Keys some old T5 checkpoints carry but never use (cross-attention has no position bias).
_IGNORED_KEYS = ("decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight",)

_PICKLE_MESSAGE = (
    "{path}: minillm does not load pickled PyTorch checkpoints, because unpickling a file can run "
    "arbitrary code. Convert it once to safetensors, e.g. with transformers installed:\n"
    "  python -c \"from transformers import T5ForConditionalGeneration as M; "
    "M.from_pretrained('{dir}').save_pretrained('{dir}', safe_serialization=True)\"\n"
    "or run `minillm convert --from-hf {dir} --out NEW_DIR` on a safetensors folder."
)


def _weight_files(directory: Path) -> list[Path]:
    """The safetensors files of a folder: ``model.safetensors``, or the shards its index lists."""
    single = directory / "model.safetensors"
    index = directory / "model.safetensors.index.json"
    if single.exists():
        return [single]
    if index.exists():
        content = read_json(index, "safetensors index")
        weight_map = content.get("weight_map") if isinstance(content, dict) else None
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise ValueError(f"{index}: not a valid safetensors index (needs \"weight_map\": "
                             "{tensor name: shard file name})")
        shards = []
        for shard in sorted(set(weight_map.values())):
            path = confined_path(directory, shard, "shard", index)
            if not path.is_file():
                raise FileNotFoundError(f"{index} lists shard {shard}, but {path} does not exist")
            shards.append(path)
        return shards
    for name in ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.ckpt.index"):
        if (directory / name).exists():
            raise ValueError(_PICKLE_MESSAGE.format(path=directory / name, dir=directory))
    raise FileNotFoundError(f"{directory}: no model.safetensors or model.safetensors.index.json found")


def read_safetensors_folder(directory) -> dict:
    """All tensors of ``model.safetensors`` or of the shards listed in ``model.safetensors.index.json``."""
    tensors = {}
    for path in _weight_files(Path(directory)):
        tensors.update(load_safetensors(path))
    return tensors


def expected_shape(name: str, config) -> tuple | None:
    """The shape Hugging Face's T5 gives parameter ``name`` under ``config`` (None: not a T5 name)."""
    inner = config.num_heads * config.d_kv
    rules = [(r"(shared|lm_head|(en|de)coder\.embed_tokens)\.weight", (config.vocab_size, config.d_model)),
             (r".*\.(q|k|v)\.weight", (inner, config.d_model)),
             (r".*\.o\.weight", (config.d_model, inner)),
             (r".*\.(wi|wi_0|wi_1)\.weight", (config.d_ff, config.d_model)),
             (r".*\.wo\.weight", (config.d_model, config.d_ff)),
             (r".*(layer_norm|final_layer_norm)\.weight", (config.d_model,)),
             (r".*relative_attention_bias\.weight", (config.relative_attention_num_buckets, config.num_heads))]
    return next((shape for pattern, shape in rules if re.fullmatch(pattern, name)), None)


def check_weights_against_config(directory, config) -> None:
    """Compare every safetensors header with ``config`` before any array is read or built.

    Raises:
        ValueError: naming the file and the tensor, when a shape disagrees with config.json or
            the file holds a different number of blocks than config.json says.
    """
    blocks = {"encoder": set(), "decoder": set()}
    for path in _weight_files(Path(directory)):
        for name, (_, shape) in read_safetensors_header(path).items():
            want = expected_shape(name, config)
            if want is not None and shape != want:
                raise ValueError(f"{path}: tensor {name} has shape {list(shape)}, but config.json "
                                 f"(d_model={config.d_model}, vocab_size={config.vocab_size}, ...) needs {list(want)}")
            match = re.match(r"(encoder|decoder)\.block\.(\d+)\.", name)
            if match:
                blocks[match.group(1)].add(int(match.group(2)))
    for stack, layers in (("encoder", config.num_layers), ("decoder", config.num_decoder_layers)):
        if blocks[stack] and len(blocks[stack]) != layers:
            raise ValueError(f"{directory}: the weights hold {len(blocks[stack])} {stack} blocks, but "
                             f"config.json says {layers}")


def load_pretrained(cls, directory, **config_overrides):
    """Build ``cls`` (a model class with a ``config_class``) from a Hugging Face T5 folder."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"from_pretrained: {directory} is not a directory")
    config_path = directory / "config.json"
    if not config_path.exists():
        raise FileNotFoundError(f"from_pretrained: {config_path} does not exist")
    config = cls.config_class.from_json_file(config_path)
    for key, value in config_overrides.items():
        setattr(config, key, value)
    check_weights_against_config(directory, config)
    tensors = read_safetensors_folder(directory)
    state = {k: v.astype(np.float32) for k, v in tensors.items() if k not in _IGNORED_KEYS}
    if "shared.weight" not in state:
        for alias in _EMBEDDING_ALIASES:  # some files keep only an alias of the embedding
            if alias in state:
                state["shared.weight"] = state[alias]
                break
    for alias in _EMBEDDING_ALIASES:
        state.setdefault(alias, state.get("shared.weight"))
    if (config.tie_word_embeddings and "lm_head.weight" in state and "shared.weight" in state
            and not np.array_equal(state["lm_head.weight"], state["shared.weight"])):
        # transformers 5 writes tie_word_embeddings=true for every T5 (it only means "rescale or
        # not", see T5Config.scale_decoder_outputs), but still saves a separately trained lm_head
        # (T5 v1.1, FLAN-T5). Like transformers, keep such a head untied instead of overwriting it.
        config.tie_word_embeddings = False
    model = cls(config)
    if config.tie_word_embeddings:
        state["lm_head.weight"] = state.get("shared.weight")
    state = {k: v for k, v in state.items() if v is not None}
    try:
        model.load_state_dict(state, strict=True)
    except (KeyError, ValueError) as err:
        message = err.args[0] if err.args else str(err)
        raise type(err)(f"{directory}: the weights do not fit config.json: {message}") from None
    model.eval()
    model.generation_config = GenerationConfig.from_pretrained(directory)  # None when the folder has none
    return model


def save_pretrained(model, directory) -> None:
    """Write ``config.json`` and ``model.safetensors`` (tied weights stored once), atomically."""
    from ..backend import to_device  # noqa: PLC0415

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {}
    for name, array in model.state_dict().items():
        if name in _EMBEDDING_ALIASES or (name == "lm_head.weight" and model.config.tie_word_embeddings):
            continue
        state[name] = np.ascontiguousarray(to_device(array, "cpu"))
    save_safetensors(directory / "model.safetensors", state, metadata={"format": "pt"})
    atomic_write_text(directory / "config.json", json.dumps(model.config.to_dict(), indent=2, sort_keys=True))
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(directory)
