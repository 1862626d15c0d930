"""Catastrophic forgetting: score earlier tasks before and after each training stage.

Fine-tuning on a new task changes weights the old tasks relied on, so the model may get worse
at them: catastrophic forgetting. To see it, train in stages and after every stage j score
every task i. That gives the matrix

    R[j][i] = score on task i after training stage j

(rows: stages, columns: tasks). Backward transfer (Lopez-Paz & Ranzato, 2017, "Gradient
Episodic Memory") summarizes how later training changed the tasks learned earlier:

    BWT = 1 / |E| * sum over i in E of ( R[last][i] - R[learned(i)][i] )

where learned(i) is the stage at which task i was trained and E is the set of tasks learned
*before* the last stage. In the paper stage i trains task i, so learned(i) = i, E = the first
T-1 tasks, and BWT = 1/(T-1) sum_{i<T-1} (R[T-1][i] - R[i][i]). Here a stage may train
several tasks at once (a multitask base trained on A, B and C is stage 0 for all three),
so `learned_at` maps each task to its stage. BWT < 0 means forgetting; 0 means none;
> 0 means the later training helped the earlier tasks.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable


def backward_transfer(R, learned_at: list | None = None) -> float:
    """BWT of a score matrix (see the module docstring for the exact definition).

    Args:
        R: stages x tasks scores, R[j][i] = score on task i after stage j.
        learned_at: stage index at which each task was trained; default task i at stage i.
    """
    num_stages, num_tasks = len(R), len(R[0])
    if any(len(row) != num_tasks for row in R):
        raise ValueError("every row of R must have one score per task")
    if learned_at is None:
        learned_at = list(range(num_tasks))
    if len(learned_at) != num_tasks:
        raise ValueError(f"learned_at has {len(learned_at)} entries for {num_tasks} tasks")
    last = num_stages - 1
    earlier = [i for i in range(num_tasks) if learned_at[i] < last]
    if not earlier:
        raise ValueError("BWT needs at least one task learned before the last stage")
    return sum(R[last][i] - R[learned_at[i]][i] for i in earlier) / len(earlier)


@dataclass
class ForgettingMatrix:
    """R[j][i] with stage and task names; build it stage by stage with `record`.

    Example:
        m = ForgettingMatrix(["A", "B", "C", "D"], learned_at={"A": 0, "B": 0, "C": 0, "D": 1})
        m.record("base (A+B+C)", scores_after_base)     # a dict task -> score
        m.record("fine-tune D", scores_after_d)
        print(m.table()); m.backward_transfer()
    """

    tasks: list
    learned_at: dict | None = None
    stages: list = field(default_factory=list)
    R: list = field(default_factory=list)

    def record(self, stage: str, scores: dict) -> None:
        """Append the row of scores measured after `stage`."""
        missing = [t for t in self.tasks if t not in scores]
        if missing:
            raise KeyError(f"stage {stage!r}: no score for tasks {missing}")
        self.stages.append(stage)
        self.R.append([float(scores[t]) for t in self.tasks])

    def measure(self, stage: str, score_fn: Callable[[str], float]) -> dict:
        """Score every task with `score_fn(task)` and record the row; returns the scores."""
        scores = {t: score_fn(t) for t in self.tasks}
        self.record(stage, scores)
        return scores

    def _learned_at(self) -> list:
        if self.learned_at is None:
            return list(range(len(self.tasks)))
        return [self.learned_at[t] for t in self.tasks]

    def backward_transfer(self) -> float:
        """BWT over the tasks learned before the last recorded stage."""
        return backward_transfer(self.R, self._learned_at())

    def change(self, task: str, before: int = 0, after: int = -1) -> float:
        """R[after][task] - R[before][task]: a gain if positive, a drop if negative."""
        i = self.tasks.index(task)
        return self.R[after][i] - self.R[before][i]

    def table(self, digits: int = 2) -> str:
        """The matrix as a Markdown table: one row per stage, one column per task."""
        header = ["after stage"] + list(self.tasks)
        body = [[s] + [f"{v:.{digits}f}" for v in row] for s, row in zip(self.stages, self.R)]
        widths = [max(len(r[c]) for r in [header] + body) for c in range(len(header))]
        lines = ["| " + " | ".join(x.ljust(w) if c == 0 else x.rjust(w)
                                   for c, (x, w) in enumerate(zip(row, widths))) + " |"
                 for row in [header] + body]
        lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        d = {"tasks": self.tasks, "stages": self.stages, "R": self.R}
        if len(self.R) >= 2:
            d["backward_transfer"] = self.backward_transfer()
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def plot(self, path: str, title: str = "Score on each task after each stage") -> str | None:
        """Save a line plot (x: stage, one line per task); None if matplotlib is missing."""
        try:
            import matplotlib  # noqa: PLC0415  (optional dependency, imported only when plotting)
            matplotlib.use("Agg")  # write files; never open a window
            import matplotlib.pyplot as plt  # noqa: PLC0415
        except ImportError:
            return None
        fig, ax = plt.subplots(figsize=(7.5, 3.5))
        for i, task in enumerate(self.tasks):
            ax.plot(range(len(self.stages)), [row[i] for row in self.R], marker="o", label=task)
        ax.set_xticks(range(len(self.stages)))
        ax.set_xticklabels(self.stages, rotation=20, ha="right")
        ax.set_ylabel("score")
        ax.set_title(title)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")  # outside: never over a line
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)
        return path
