"""The recipe of the course base: which tasks it knows, how big it is, how long it trains.

The course base is what FLAN-T5 is to the course it imitates: a T5 that was pretrained with span
corruption on plain text, then instruction-tuned on a mixture of tasks, so that the lessons start
from a model that already knows something. Everything it is made from is in ``BaseRecipe``; a
changed field gives a new cache key (``cache.recipe_key``), so a changed recipe builds anew.

The task design (see ``minillm/course/__init__.py`` and the model card):

    HELD_IN   the tasks the base is instruction-tuned on (every one beats its constant answer
              by more than two standard errors, or the card says it does not)
    HELD_OUT  dialogue summarization: never in the mixture; another summarization family
              (news_summary) is, as DialogSum relates to FLAN's news summarization tasks
    NEW_TASK  antonym: in no mixture, for the forgetting lesson (the pretraining text states
              opposites, "The opposite of big is small.", so a few hundred steps teach it)

The size was chosen by measurement (docs/base_model.md): a T5 of 4,979,200 parameters (d_model
256, 3+3 layers) trained by the same schedule learned 2 of the 5 held-in tasks, because it had not
yet learned to read its input, while this one of 1,047,296 parameters (d_model 128, 2+2 layers)
beats every held-in task's constant answer and builds in about 11 minutes on 2 cores.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

HELD_IN = ["news_summary", "translation", "sentiment", "same_plan", "word_problem"]
HELD_OUT = "dialogue_summary"
NEW_TASK = "antonym"
FEW_SHOT_TASKS = ["translation", "sentiment", "word_problem"]  # short inputs: two shots still fit

# Built-in tasks that a base of this size does not learn, and what the base learns instead.
REPLACED = {
    "paraphrase": ("same_plan", "the full task changes one detail of four, like PAWS; trained alone for "
                   "600 steps a 1M-parameter T5 stayed at 0.500 (two details: 0.531, all four: 0.958; "
                   "docs/quickstart.md). same_plan asks whether two sentences describe the same plan, "
                   "and a different plan differs in every detail."),
    "arithmetic": ("word_problem", "a 7.6M-parameter T5 trained 2,500 steps of 32 reached 0.047 exact "
                   "match against a constant answer's 0.016 (issue 22's probe): 441 sums and products "
                   "of numbers up to 20 are too many facts to learn from a few examples each. "
                   "word_problem keeps the word problems that add or take away, with numbers up to 10."),
}


@dataclass(frozen=True)
class BaseRecipe:
    """Everything the course base is made from (the cache key hashes every field but ``estimate_seconds``).

    Args:
        seed: seeds the corpus, the mixture, the model's initialization and the data order.
        threads: CPU threads the build computes on (bytes are identical for the same thread count).
        vocab_size: BPE vocabulary, sentinels included.
        d_model / d_ff / num_layers / num_heads: the T5's width, feed-forward width, blocks per
            stack and attention heads.
        corpus_documents / chunk_length: pretraining text (``data.corpus.course_corpus``), packed
            into chunks of this many tokens before span corruption (15% hidden, spans of 3).
        pretrain_steps / pretrain_learning_rate / pretrain_warmup_steps: span-corruption training.
        held_in: the instruction-tuning tasks.
        task_weights: "task=w,...": task ``t`` gets ``w * examples_per_task`` training examples.
        examples_per_task: training examples of a weight-1 task (zero-shot prompts).
        few_shot_examples: two-shot prompts of each of ``FEW_SHOT_TASKS`` added to the mixture.
        tune_steps / tune_learning_rate / tune_warmup_steps: instruction tuning.
        batch_size: examples per step in both phases.
        bucket_pool: instruction batches are sorted by length inside pools of this many batches
            (less padding; ``data.collate.Batcher``).
        max_source_length / max_target_length: token limits of prompts and answers.
        save_every: steps between resumable checkpoints (what Ctrl-C keeps at the least).
        card_examples: test examples per task in the model card's table.
        estimate_seconds: printed before a build (not hashed): the wall time of the full build from a
            fresh venv on this 2-core machine, 652 s, measured while other jobs kept its load average
            at 4.9-8.3 (median 7.6), so a quiet machine should take less (docs/base_model.md).
    """

    seed: int = 0
    threads: int = 2
    vocab_size: int = 1000
    d_model: int = 128
    d_ff: int = 512
    num_layers: int = 2
    num_heads: int = 4
    corpus_documents: int = 4000
    chunk_length: int = 64
    pretrain_steps: int = 400
    pretrain_learning_rate: float = 2e-3
    pretrain_warmup_steps: int = 100
    held_in: tuple = tuple(HELD_IN)
    task_weights: str = "news_summary=1,translation=2,sentiment=1,same_plan=1.5,word_problem=1.5"
    examples_per_task: int = 2000
    few_shot_examples: int = 300
    tune_steps: int = 1200
    tune_learning_rate: float = 2e-3
    tune_warmup_steps: int = 200
    batch_size: int = 32
    bucket_pool: int = 20
    max_source_length: int = 160
    max_target_length: int = 32
    save_every: int = 100
    card_examples: int = 200
    estimate_seconds: float = field(default=652.0, compare=False)

    @classmethod
    def smoke(cls, **overrides) -> "BaseRecipe":
        """A stand-in that builds in seconds (tests, ``MINILLM_SMOKE=1``); its own cache key."""
        tiny = dict(threads=1, vocab_size=300, d_model=32, d_ff=64, num_layers=1, num_heads=2,
                    corpus_documents=60, chunk_length=32, pretrain_steps=4, pretrain_warmup_steps=1,
                    examples_per_task=12, few_shot_examples=4, tune_steps=4, tune_warmup_steps=1,
                    batch_size=8, max_source_length=96, max_target_length=16, save_every=2,
                    card_examples=4, estimate_seconds=10.0)
        return cls(**{**tiny, **overrides})

    def weights(self) -> dict[str, float]:
        """``task_weights`` as {task: weight} (held-in tasks not named get 1)."""
        weights = {name: 1.0 for name in self.held_in}
        for item in filter(None, (part.strip() for part in self.task_weights.split(","))):
            name, sep, value = (s.strip() for s in item.partition("="))
            if not sep or name not in weights:
                raise ValueError(f"BaseRecipe.task_weights: expected 'task=weight' with a task among "
                                 f"{list(self.held_in)}, got {item!r}")
            weights[name] = float(value)
        return weights

    def hashed_fields(self) -> dict:
        """The fields the cache key hashes: all but ``estimate_seconds``."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.compare}


def default_recipe(smoke: bool) -> BaseRecipe:
    """The full recipe, or the smoke stand-in."""
    return BaseRecipe.smoke() if smoke else BaseRecipe()
