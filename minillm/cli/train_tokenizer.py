"""``minillm train-tokenizer``: learn a BPE/Unigram vocabulary with T5's special ids."""
from __future__ import annotations

import argparse

from ..data import Tokenizer, build_mixture, pretraining_corpus
from ..training.interrupt import interrupt_after
from .folders import lock_run_dir, write_run_config
from .options import add_common_arguments
from .smoke import apply_smoke, smoke_mode
from .train import read_texts


def add_parser(subparsers) -> argparse.ArgumentParser:
    """The ``train-tokenizer`` sub-command and its flags."""
    p = subparsers.add_parser("train-tokenizer", help="train a BPE/Unigram tokenizer with T5's special ids")
    add_common_arguments(p, "runs/tokenizer")
    p.add_argument("--input", nargs="*", default=[], metavar="FILE",
                   help="text files (one document per line) or .jsonl/.csv prompt/completion files; "
                        "default: the built-in corpus and task mixture")
    p.add_argument("--vocab-size", type=int, default=1000, help="ids in total, sentinels included (default: 1000)")
    p.add_argument("--model-type", choices=("bpe", "unigram"), default="bpe", help="(default: bpe)")
    p.add_argument("--num-sentinels", type=int, default=100, help="<extra_id_N> tokens (default: 100)")
    p.set_defaults(func=train_tokenizer)
    return p


def train_tokenizer(args) -> int:
    """``minillm train-tokenizer``: learn a vocabulary, save tokenizer.json, show an example."""
    apply_smoke(args)
    lock_run_dir(args.out)  # held until the command ends: a second writer of --out is refused
    if args.input:
        texts = [t for path in args.input for t in read_texts(path)]
    else:
        n = 100 if smoke_mode() else 2000
        texts = pretraining_corpus(n) + [t for r in build_mixture(examples_per_task=n // 5)
                                         for t in (r.prompt, r.completion)]
    with interrupt_after("the tokenizer's training"):  # the library would not see Ctrl-C
        tokenizer = Tokenizer.train(texts, vocab_size=args.vocab_size, model=args.model_type,
                                    num_sentinels=args.num_sentinels)
    path = tokenizer.save(args.out)
    write_run_config(args, args.out)
    print(f"{tokenizer} trained on {len(texts)} texts; saved {path}")
    print(f"example: {texts[0][:60]!r} -> {tokenizer.tokenize(texts[0][:60])}")
    return 0
