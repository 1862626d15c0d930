"""The course base: a pretrained, instruction-tuned T5 that the lessons start from.

The course this project follows fine-tunes FLAN-T5, a model that was pretrained and then
instruction-tuned on many tasks before the learner sees it. ``ensure_base()`` gives the lessons
the same kind of starting point, built here from nothing downloaded:

    from minillm.course import ensure_base, HELD_IN, HELD_OUT, NEW_TASK
    folder = ensure_base()          # builds it the first time (says how long), then cached
    model = T5ForConditionalGeneration.from_pretrained(folder)
    tokenizer = Tokenizer.from_pretrained(folder)

The folder is a Hugging Face T5 folder (``config.json``, ``model.safetensors``,
``tokenizer.json``) with its model card (``README.md``, the numbers in ``card.json``) and
``recipe.json``. Command line: ``minillm base build`` / ``minillm base path``.

The task design, for the lessons:

    HELD_IN   news_summary, translation, sentiment, same_plan, word_problem: the tasks the base
              is instruction-tuned on. Each beats its constant answer by more than two
              standard errors; the card computes whether it does (docs/base_model.md holds the
              card of the measured build). same_plan and word_problem
              replace the built-in paraphrase and arithmetic, which a base of this size does not
              learn (``recipe.REPLACED`` says why; the card repeats it).
    HELD_OUT  "dialogue_summary": never instruction-tuned on, for the fine-tuning lessons
              (LoRA, adapters...); news_summary is the summarization family held in, as
              FLAN's news summarization relates to DialogSum.
    NEW_TASK  "antonym": in no mixture, for the forgetting lesson; the pretraining text states
              opposites, so a few hundred steps teach it.

Files: ``recipe.py`` (``BaseRecipe``, the task names), ``build.py`` (the phases), ``cache.py``
(cache folder, recipe key, lock), ``card.py`` (scores against constant answers, the card).
``MINILLM_SMOKE=1`` swaps in a seconds-fast stand-in recipe with its own cache key.
"""
from __future__ import annotations

from pathlib import Path

from .build import BuildInterrupted, build_base
from .cache import base_folder, build_lock, cache_root, is_built, recipe_key
from .card import compare_with_constant, constant_answer
from .recipe import FEW_SHOT_TASKS, HELD_IN, HELD_OUT, NEW_TASK, REPLACED, BaseRecipe, default_recipe

__all__ = ["ensure_base", "base_path", "is_built", "BaseRecipe", "BuildInterrupted", "HELD_IN", "HELD_OUT", "NEW_TASK",
           "REPLACED", "FEW_SHOT_TASKS", "cache_root", "recipe_key", "compare_with_constant", "constant_answer",
           "describe_estimate"]


def _smoke(smoke: bool | None) -> bool:
    if smoke is not None:
        return bool(smoke)
    from ..cli.quickstart import smoke_mode  # noqa: PLC0415

    return smoke_mode()


def base_path(smoke: bool | None = None, recipe: BaseRecipe | None = None) -> Path:
    """Where the base is (or will be) cached; ``smoke=None`` reads ``MINILLM_SMOKE``."""
    return base_folder(recipe or default_recipe(_smoke(smoke)))


def describe_estimate(recipe: BaseRecipe) -> str:
    """The build's measured wall time in words, e.g. "about 20 minutes"."""
    seconds = recipe.estimate_seconds
    return f"about {seconds / 60:.0f} minutes" if seconds >= 90 else f"about {seconds:.0f} seconds"


def ensure_base(smoke: bool | None = None, echo=print, recipe: BaseRecipe | None = None,
                progress: bool = True) -> Path:
    """The folder of the course base, built first if the cache lacks it.

    Args:
        smoke: the seconds-fast stand-in (True), the full base (False), or ``MINILLM_SMOKE`` (None).
        echo: where messages go (before a build: that it builds, where, and how long it takes).
        recipe: another recipe than the default (tests; it gets its own cache key).
        progress: show the build's progress bar.

    Raises:
        BuildInterrupted: Ctrl-C during the build (a KeyboardInterrupt); rerunning continues.
    """
    smoke = _smoke(smoke)
    recipe = recipe or default_recipe(smoke)
    folder = base_folder(recipe)
    if is_built(folder):
        return folder
    with build_lock(folder, echo):
        if is_built(folder):  # another process built it while we waited
            return folder
        echo(f"The course base ({'smoke stand-in' if smoke else 'full recipe'}) is not in the cache yet: "
             f"building it into {folder} ({describe_estimate(recipe)} on 2 CPU cores; Ctrl-C keeps what is "
             f"done and a rerun continues)")
        build_base(recipe, folder, echo, progress=progress, smoke=smoke)
    echo(f"built the course base: {folder} (model card: {folder / 'README.md'})")
    return folder
