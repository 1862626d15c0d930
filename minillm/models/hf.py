"""Hugging Face folders: ``config.json`` + ``model.safetensors`` <-> a minillm T5.

minillm's parameter names are Hugging Face's, so loading is a dictionary copy. The only care is
for tied weights: a Hugging Face file stores the embedding once, as ``shared.weight``, and leaves
``encoder.embed_tokens.weight``, ``decoder.embed_tokens.weight`` (and ``lm_head.weight`` when tied)
out. Pickled ``pytorch_model.bin`` files are refused: unpickling can run arbitrary code.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

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


def read_safetensors_folder(directory: Path) -> dict:
    """All tensors of ``model.safetensors`` or of the shards listed in ``model.safetensors.index.json``."""
    from safetensors.numpy import load_file  # noqa: PLC0415

    single = directory / "model.safetensors"
    index = directory / "model.safetensors.index.json"
    if single.exists():
        return load_file(str(single))
    if index.exists():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        except (json.JSONDecodeError, KeyError) as err:
            raise ValueError(f"{index}: not a valid safetensors index ({err})") from None
        tensors = {}
        for shard in sorted(set(weight_map.values())):
            shard_path = directory / shard
            if not shard_path.exists():
                raise FileNotFoundError(f"{index} lists shard {shard}, but {shard_path} does not exist")
            tensors.update(load_file(str(shard_path)))
        return tensors
    for name in ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.ckpt.index"):
        if (directory / name).exists():
            raise ValueError(_PICKLE_MESSAGE.format(path=directory / name, dir=directory))
    raise FileNotFoundError(f"{directory}: no model.safetensors or model.safetensors.index.json found")


def load_pretrained(cls, directory, **config_overrides):
    """Build ``cls`` from a Hugging Face T5 folder (config.json + safetensors weights)."""
    from .t5 import T5Config  # noqa: PLC0415

    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"from_pretrained: {directory} is not a directory")
    config_path = directory / "config.json"
    if not config_path.exists():
        raise FileNotFoundError(f"from_pretrained: {config_path} does not exist")
    config = T5Config.from_json_file(config_path)
    for key, value in config_overrides.items():
        setattr(config, key, value)
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
    model.load_state_dict(state, strict=True)
    model.eval()
    return model


def save_pretrained(model, directory) -> None:
    """Write ``config.json`` and ``model.safetensors`` (tied weights stored once), atomically."""
    from safetensors.numpy import save_file  # noqa: PLC0415

    from ..backend import to_device  # noqa: PLC0415

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {}
    for name, array in model.state_dict().items():
        if name in _EMBEDDING_ALIASES or (name == "lm_head.weight" and model.config.tie_word_embeddings):
            continue
        state[name] = np.ascontiguousarray(to_device(array, "cpu"))
    _atomic_write(directory / "model.safetensors", lambda p: save_file(state, p, metadata={"format": "pt"}))
    config = json.dumps(model.config.to_dict(), indent=2, sort_keys=True)
    _atomic_write(directory / "config.json", lambda p: Path(p).write_text(config, encoding="utf-8"))


def _atomic_write(path: Path, write) -> None:
    """Write to a temporary file beside ``path``, then rename: a crash never leaves half a file."""
    tmp = path.with_name(path.name + ".tmp")
    write(str(tmp))
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
