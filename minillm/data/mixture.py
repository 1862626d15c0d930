"""Multitask mixtures: how many examples of each task go into instruction tuning.

Mixing tasks is what keeps a fine-tuned model good at more than one thing (the remedy for
catastrophic forgetting in the course notes). The question is the *rate* of each task. T5 and
FLAN use **examples-proportional mixing with a cap**:

    rate_i = min(n_i, cap) / sum_j min(n_j, cap)

so a huge dataset cannot crowd out the small ones (without the cap, a task with 1M examples
would drown a task with 1k). Optionally the rates are flattened by a **temperature** T,

    rate_i ∝ r_i ** (1 / T)

where T = 1 leaves them unchanged and T -> infinity makes every task equally likely.

`build_mixture` draws the examples, renders each through a random instruction template
(sometimes as a few-shot prompt) and shuffles everything into (prompt, completion, task)
records, deterministically by seed.
"""
from __future__ import annotations

import random

from .collate import Record
from .tasks import DEFAULT_MIXTURE, get_task
from .templates import few_shot_prompt, format_example


def mixture_rates(sizes: dict[str, int], cap: int | None = None,
                  temperature: float = 1.0) -> dict[str, float]:
    """Sampling rate of each task from its dataset size: ∝ min(n, cap) ** (1 / temperature).

    Rates sum to 1. `cap=None` means no cap (plain examples-proportional mixing).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    capped = {name: min(n, cap) if cap is not None else n for name, n in sizes.items()}
    if any(n < 0 for n in capped.values()) or sum(capped.values()) == 0:
        raise ValueError(f"dataset sizes must be >= 0 and not all 0, got {sizes}")
    scaled = {name: n ** (1.0 / temperature) for name, n in capped.items()}
    total = sum(scaled.values())
    return {name: s / total for name, s in scaled.items()}


def allocate(rates: dict[str, float], total: int) -> dict[str, int]:
    """Split `total` examples by `rates` into integers that sum exactly to `total`.

    Largest-remainder rounding: floor every share, then give the leftover examples to the
    tasks with the largest fractional parts (ties broken by name, so it is deterministic).
    """
    shares = {name: rate * total for name, rate in rates.items()}
    counts = {name: int(s) for name, s in shares.items()}
    leftover = total - sum(counts.values())
    by_remainder = sorted(shares, key=lambda name: (-(shares[name] - counts[name]), name))
    for name in by_remainder[:leftover]:
        counts[name] += 1
    return counts


def build_mixture(tasks: list | None = None, examples_per_task: int | dict[str, int] = 1000, split: str = "train",
                  *, cap: int | None = None, temperature: float = 1.0, total: int | None = None,
                  few_shot_fraction: float = 0.0, num_shots: int = 2, template_id: int | None = None,
                  seed: int = 0) -> list[Record]:
    """A shuffled list of Record(prompt, completion, task) mixing several tasks.

    Args:
        tasks: task names or Task objects (e.g. ``task_levels.task_variant`` levels); defaults
            to `DEFAULT_MIXTURE`. Records carry the task's name.
        examples_per_task: dataset size n_i of each task (one int for all, or a dict). Each
            task's pool is `task.examples(split, n_i, seed)`.
        cap, temperature: see `mixture_rates`.
        total: number of records; default sum_i min(n_i, cap), one pass over the capped data.
            A task asked for more than its pool gets the pool repeated (in a new order, with
            new templates).
        few_shot_fraction: share of records rendered as few-shot prompts with `num_shots`
            solved examples from the same task pool (FLAN mixes zero- and few-shot).
        template_id: fix one template for every record; None picks templates at random.
        seed: one seed for everything (pools, templates, order).
    """
    tasks = [get_task(t) for t in (tasks or DEFAULT_MIXTURE)]
    sizes = {task.name: examples_per_task[task.name] if isinstance(examples_per_task, dict) else examples_per_task
             for task in tasks}
    if total is None:
        total = sum(min(n, cap) if cap is not None else n for n in sizes.values())
    counts = allocate(mixture_rates(sizes, cap, temperature), total)
    rng = random.Random(f"mixture|{seed}")
    records = []
    for task in tasks:  # a fixed order, so the rng stream (and the result) is reproducible
        pool = task.examples(split, sizes[task.name], seed)
        for i in _shuffled_passes(len(pool), counts[task.name], rng):
            if few_shot_fraction and len(pool) > num_shots and rng.random() < few_shot_fraction:
                prompt, completion = _few_shot(task, pool, i, num_shots, template_id, rng)
            else:
                prompt, completion = format_example(task, pool[i], template_id, rng)
            records.append(Record(prompt, completion, task.name))
    rng.shuffle(records)
    return records


def _shuffled_passes(n: int, count: int, rng: random.Random) -> list[int]:
    """``count`` indices into a pool of ``n``: shuffled passes over the pool until there are enough."""
    chosen = []
    while len(chosen) < count:
        order = list(range(n))
        rng.shuffle(order)
        chosen += order[: count - len(chosen)]
    return chosen


def _few_shot(task, pool: list, i: int, num_shots: int, template_id: int | None, rng: random.Random):
    """(prompt, completion) of ``pool[i]`` after ``num_shots`` other solved examples of the pool."""
    spare = rng.sample(range(len(pool)), num_shots + 1)  # one spare: dropping the query still leaves num_shots
    others = [j for j in spare if j != i][:num_shots]
    return few_shot_prompt(task, [pool[j] for j in others], pool[i], template_id, rng)
