"""Where the course base lives: a user cache folder, one sub-folder per recipe, and a build lock.

    <cache>/base-<key>/          the finished base (appears in one rename, so it is whole or absent)
    <cache>/base-<key>.build/    what an unfinished build has done so far (Ctrl-C keeps it)
    <cache>/base-<key>.lock      the lock a builder holds

``<cache>`` is ``$MINILLM_CACHE`` if set, else ``$XDG_CACHE_HOME/minillm``, else
``~/.cache/minillm``. ``<key>`` is the first 16 hex digits of the SHA-256 of the recipe's fields
(as sorted JSON) and ``BUILD_VERSION``, so a changed recipe, or a change in what the build code
makes of a recipe, gets a folder of its own.

Two processes that ask for the same base at once: the second waits on the lock (``fcntl.flock``,
released by the kernel if its holder dies) and then finds the finished folder instead of building
it again. The finished files are written into ``<cache>/base-<key>.tmp/`` and renamed into place,
so a reader never sees half a base.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from pathlib import Path

from .recipe import BaseRecipe

BUILD_VERSION = 2
"""Raised when the build code changes what a recipe makes (a new key for the same recipe).
2: news_summary says "An umbrella" (was "A umbrella") and draws no "glasses"."""

BASE_FILES = ("config.json", "model.safetensors", "tokenizer.json", "README.md", "card.json", "recipe.json")


def cache_root() -> Path:
    """The cache folder: ``$MINILLM_CACHE``, ``$XDG_CACHE_HOME/minillm`` or ``~/.cache/minillm``."""
    if os.environ.get("MINILLM_CACHE"):
        return Path(os.environ["MINILLM_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "minillm"


def recipe_key(recipe: BaseRecipe) -> str:
    """16 hex digits of SHA-256 over the recipe's hashed fields and ``BUILD_VERSION``."""
    text = json.dumps({"build_version": BUILD_VERSION, **recipe.hashed_fields()}, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def base_folder(recipe: BaseRecipe, root: Path | None = None) -> Path:
    """``<cache>/base-<key>``: where this recipe's base is (or will be)."""
    return Path(root or cache_root()) / f"base-{recipe_key(recipe)}"


def work_folder(folder: Path) -> Path:
    """``base-<key>.build``: the unfinished build's phases (tokenizer, checkpoints)."""
    return folder.with_name(folder.name + ".build")


def is_built(folder: Path) -> bool:
    """True when ``folder`` holds a finished base (every file of ``BASE_FILES``)."""
    return folder.is_dir() and all((folder / name).is_file() for name in BASE_FILES)


@contextlib.contextmanager
def build_lock(folder: Path, echo=print):
    """Hold ``base-<key>.lock`` exclusively; say so when another process holds it and wait.

    ``flock`` locks belong to the open file, so the kernel releases them when the holder exits or
    is killed: a crashed builder never leaves the lock taken.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    path = folder.with_name(folder.name + ".lock")
    with open(path, "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            echo(f"another process is building the course base ({path} is locked); waiting for it")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
