"""Checkpoints: save and restore a training run exactly, atomically, without pickle.

A checkpoint is a directory of three files:

    model.safetensors      the model's state_dict (parameter name -> array)
    optimizer.safetensors  the optimizer's arrays, keyed "state.<param_index>.<name>" (e.g. state.0.exp_avg)
    trainer_state.json     step, scheduler state, RNG state, the optimizer's scalars and param
                           groups, and the user's ``extra`` dict

Loading restores parameters, optimizer moments, schedule position and random-number generator,
so training resumed from step N continues bit for bit as if it had never stopped.

Why "atomic": a crash (or Ctrl-C, or a full disk) in the middle of saving must never destroy the
last good checkpoint. Every file is written to a temporary name, flushed and fsync'ed, then
renamed with ``os.replace`` (a rename within one file system is atomic). The whole directory is
built as ``<dir>.tmp-XXXX`` and swapped in by renames too: the old checkpoint is moved aside,
the new one moved in, and only then is the old one deleted.

safetensors and JSON hold only arrays and plain values. Unlike pickle, loading them cannot
run code, so a downloaded checkpoint is safe to open.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile

import numpy as np
from safetensors.numpy import load_file, save_file

from .. import backend

MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
TRAINER_STATE_FILE = "trainer_state.json"
FORMAT_VERSION = 1


# ---------------------------------------------------------------------------------- atomic files
def _fsync_directory(path: str) -> None:
    """Make a rename inside ``path`` durable (a no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write(path: str, write) -> None:
    """Call ``write(tmp_path)`` on a temporary file next to ``path``, fsync it, then rename it to ``path``."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp_path = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        write(tmp_path)
        with open(tmp_path, "rb+") as f:
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise


def _write_safetensors(path: str, arrays: dict) -> None:
    """Save name -> array to ``path`` atomically (arrays copied to the CPU, made contiguous)."""
    arrays = {k: np.ascontiguousarray(backend.to_device(v, "cpu")) for k, v in arrays.items()}
    _atomic_write(path, lambda tmp: save_file(arrays, tmp, metadata={"format": "np"}))


def _write_json(path: str, obj: dict) -> None:
    """Save ``obj`` as indented JSON to ``path`` atomically."""
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, sort_keys=True)
    _atomic_write(path, write)


# ---------------------------------------------------------------------------------- optimizer <-> files
def _split_optimizer_state(state_dict: dict) -> tuple[dict, dict]:
    """Split an optimizer state_dict into flat arrays {"state.0.exp_avg": ...} and JSON-able scalars."""
    arrays, scalars = {}, {}
    for index, param_state in state_dict["state"].items():
        for name, value in param_state.items():
            if isinstance(value, np.ndarray):
                arrays[f"state.{index}.{name}"] = value
            else:
                scalars.setdefault(str(index), {})[name] = value
    return arrays, {"state": scalars, "param_groups": state_dict["param_groups"]}


def _join_optimizer_state(arrays: dict, scalars: dict) -> dict:
    """Inverse of ``_split_optimizer_state``."""
    state: dict = {int(i): dict(values) for i, values in scalars["state"].items()}
    for key, value in arrays.items():
        _, index, name = key.split(".", 2)
        state.setdefault(int(index), {})[name] = value
    return {"state": state, "param_groups": scalars["param_groups"]}


# ---------------------------------------------------------------------------------- public API
def save_checkpoint(directory, model, optimizer=None, scheduler=None, step: int = 0,
                    extra: dict | None = None) -> str:
    """Save model, optimizer, scheduler, step, RNG state and ``extra`` to ``directory``, atomically.

    If ``directory`` already holds a checkpoint it is replaced only once the new one is complete.

    Args:
        directory: the checkpoint directory (created; its parent must exist or is created).
        model: a ``minillm.nn.Module``.
        optimizer: a ``minillm.optim.Optimizer`` or None.
        scheduler: a schedule with ``state_dict()`` (e.g. ``LambdaLR``) or None.
        step: the training step reached.
        extra: any JSON-able dict (epoch, best metric, config...).

    Returns:
        The checkpoint directory's path.
    """
    directory = os.path.abspath(os.fspath(directory))
    parent = os.path.dirname(directory)
    os.makedirs(parent, exist_ok=True)
    trainer_state = {
        "format_version": FORMAT_VERSION,
        "step": int(step),
        "rng_state": backend.get_rng_state(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "optimizer": None,
        "extra": extra or {},
    }
    tmp_dir = tempfile.mkdtemp(prefix=os.path.basename(directory) + ".tmp-", dir=parent)
    old_dir = None
    try:
        _write_safetensors(os.path.join(tmp_dir, MODEL_FILE), model.state_dict())
        if optimizer is not None:
            arrays, scalars = _split_optimizer_state(optimizer.state_dict())
            _write_safetensors(os.path.join(tmp_dir, OPTIMIZER_FILE), arrays)
            trainer_state["optimizer"] = scalars
        _write_json(os.path.join(tmp_dir, TRAINER_STATE_FILE), trainer_state)
        _fsync_directory(tmp_dir)
        # Swap: move the old checkpoint aside, move the new one in, and only then delete the old.
        if os.path.exists(directory):
            old_dir = tempfile.mkdtemp(prefix=os.path.basename(directory) + ".old-", dir=parent)
            os.rmdir(old_dir)
            os.replace(directory, old_dir)
        os.replace(tmp_dir, directory)
        _fsync_directory(parent)
    except BaseException:
        if old_dir is not None and not os.path.exists(directory):
            os.replace(old_dir, directory)  # put the previous checkpoint back
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    if old_dir is not None:
        shutil.rmtree(old_dir, ignore_errors=True)
    return directory


def _require_file(directory: str, name: str) -> str:
    """The path of ``name`` in ``directory``, or a FileNotFoundError naming what is missing."""
    path = os.path.join(directory, name)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    return path


def load_checkpoint(directory, model, optimizer=None, scheduler=None) -> dict:
    """Restore a checkpoint written by ``save_checkpoint`` into ``model`` (and optimizer, scheduler).

    Also restores minillm's random-number generator, so dropout and sampling continue the same
    random stream. The optimizer and scheduler must be built like the saved ones (same parameter
    groups); create them before loading.

    Returns:
        ``{"step": int, "extra": dict}``.

    Raises:
        FileNotFoundError: the directory or one of its files is missing (the message names the path).
        KeyError / ValueError: the model's parameter names or shapes differ from the checkpoint's
            (the message lists the keys).
    """
    directory = os.path.abspath(os.fspath(directory))
    if not os.path.isdir(directory):
        parent, base = os.path.split(directory)
        leftovers = [n for n in os.listdir(parent) if n.startswith(base + ".old-")] if os.path.isdir(parent) else []
        hint = (f" (an interrupted save left {os.path.join(parent, leftovers[0])}: rename it to recover)"
                if leftovers else "")
        raise FileNotFoundError(f"checkpoint directory not found: {directory}{hint}")
    with open(_require_file(directory, TRAINER_STATE_FILE), encoding="utf-8") as f:
        trainer_state = json.load(f)

    model_path = _require_file(directory, MODEL_FILE)
    try:
        model.load_state_dict(load_file(model_path))
    except (KeyError, ValueError) as error:
        message = error.args[0] if error.args else str(error)
        raise type(error)(f"{model_path} does not match the model: {message}") from error

    if optimizer is not None:
        if trainer_state.get("optimizer") is None:
            raise ValueError(f"checkpoint {directory} was saved without an optimizer")
        arrays = load_file(_require_file(directory, OPTIMIZER_FILE))
        optimizer.load_state_dict(_join_optimizer_state(arrays, trainer_state["optimizer"]))
    if scheduler is not None:
        if trainer_state.get("scheduler") is None:
            raise ValueError(f"checkpoint {directory} was saved without a scheduler")
        scheduler.load_state_dict(trainer_state["scheduler"])
    backend.set_rng_state(trainer_state["rng_state"])
    return {"step": int(trainer_state["step"]), "extra": trainer_state.get("extra") or {}}
