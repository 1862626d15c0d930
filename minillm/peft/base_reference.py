"""A PEFT run names its frozen base instead of copying it: a path and a fingerprint of the weights.

A LoRA run on a flan-t5-small-shaped model trains 0.45% of the parameters. Copying the base into
every run (308 MB for a 1.4 MB adapter) stores the same frozen weights again and again, so the run
folder keeps ``base_model.json`` instead:

    {"path": "/abs/path/to/base", "weights_sha256": "…", "files": {"model.safetensors": 308…}}

and ``adapter_config.json``'s ``base_model_name_or_path`` holds the same absolute path, which is
what Hugging Face PEFT's ``AutoPeftModelForSeq2SeqLM.from_pretrained(RUN)`` loads the base from.

The fingerprint is the SHA-256 of the base's weight files (name, then bytes, in name order). It is
checked whenever the run is loaded: an adapter trained on other weights would load without an
error and answer nonsense, so a changed or missing base is refused, naming both folders.
"""
from __future__ import annotations

import hashlib
import json
import os

from ..files import atomic_write_text, open_input, read_json

BASE_REFERENCE = "base_model.json"
_CHUNK = 1 << 20


def weight_files(model_dir: str) -> list[str]:
    """The names of a model folder's weight files: model.safetensors, or the shards its index lists."""
    if os.path.isfile(os.path.join(model_dir, "model.safetensors")):
        return ["model.safetensors"]
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.isfile(index):
        content = read_json(index, "safetensors index")
        shards = content.get("weight_map", {}).values() if isinstance(content, dict) else []
        return ["model.safetensors.index.json", *sorted({s for s in shards if isinstance(s, str)})]
    raise FileNotFoundError(f"{model_dir}: no model.safetensors or model.safetensors.index.json "
                            "(the base of a PEFT run must be a model folder)")


def fingerprint(model_dir: str) -> str:
    """SHA-256 over the weight files of ``model_dir`` (each file's name, then its bytes)."""
    digest = hashlib.sha256()
    for name in weight_files(model_dir):
        digest.update(name.encode() + b"\0")
        with open_input(os.path.join(model_dir, name), "weight file") as f:
            for chunk in iter(lambda f=f: f.read(_CHUNK), b""):
                digest.update(chunk)
    return digest.hexdigest()


def write_base_reference(run_dir: str, base_dir: str) -> str:
    """Record ``base_dir`` (absolute) and its fingerprint in ``run_dir/base_model.json``; returns the path."""
    base_dir = os.path.abspath(base_dir)
    content = {"path": base_dir, "weights_sha256": fingerprint(base_dir),
               "files": {n: os.path.getsize(os.path.join(base_dir, n)) for n in weight_files(base_dir)}}
    atomic_write_text(os.path.join(run_dir, BASE_REFERENCE), json.dumps(content, indent=2, sort_keys=True))
    return base_dir


def resolve_base(run_dir: str) -> str:
    """The base folder that ``run_dir/base_model.json`` names, after checking its fingerprint.

    Raises:
        FileNotFoundError / ValueError: naming the reference file and the base folder, when the base
            is gone or its weights are not the ones the adapter was trained on.
    """
    source = os.path.join(run_dir, BASE_REFERENCE)
    content = read_json(source, "base model reference")
    if not isinstance(content, dict) or not isinstance(content.get("path"), str) or not isinstance(
            content.get("weights_sha256"), str):
        raise ValueError(f"{source}: expected {{\"path\": base folder, \"weights_sha256\": hex digest}}")
    base = content["path"]
    if not os.path.isdir(base):
        raise FileNotFoundError(f"{source}: the base model folder {base} does not exist any more; put it back, "
                                "or point the run at a copy by editing \"path\" here")
    found = fingerprint(base)
    if found != content["weights_sha256"]:
        raise ValueError(f"{source}: the weights in {base} are not the ones this adapter was trained on "
                         f"(fingerprint {found[:12]}…, recorded {content['weights_sha256'][:12]}…)")
    return base
