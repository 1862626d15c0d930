"""``minillm pretrain``: T5's span-corruption objective on the built-in corpus or a text file."""
from __future__ import annotations

import argparse

from ..data import Batcher, pretraining_corpus, span_corruption_pairs
from ..training.trainer import Trainer
from .folders import UsageError, run_started
from .options import (add_common_arguments, add_model_arguments, add_resume_arguments, add_training_arguments,
                      finite_float)
from .smoke import apply_smoke
from .train import (begin_writing, check_resume_fits, check_start, finish, model_and_tokenizer, read_texts,
                    training_arguments)


def add_parser(subparsers) -> argparse.ArgumentParser:
    """The ``pretrain`` sub-command and its flags."""
    p = subparsers.add_parser("pretrain", help="span-corruption pretraining on the built-in corpus or a text file")
    add_common_arguments(p, "runs/pretrain")
    p.add_argument("--text", metavar="FILE", help="plain text, one document per line (default: built-in corpus)")
    p.add_argument("--num-documents", type=int, default=5000, help="built-in corpus size (default: 5000)")
    p.add_argument("--chunk-length", type=int, default=64, help="tokens per pretraining example (default: 64)")
    p.add_argument("--noise-density", type=finite_float, default=0.15, help="fraction of tokens hidden (default: 0.15)")
    p.add_argument("--mean-span-length", type=finite_float, default=3.0, help="average hidden span (default: 3)")
    add_resume_arguments(p)
    add_model_arguments(p)
    add_training_arguments(p, max_steps=300, learning_rate=2e-3, warmup_steps=30, eval_every=100, save_every=100,
                           max_source_length=128)
    p.set_defaults(func=pretrain)
    return p


def pretrain(args) -> int:
    """``minillm pretrain``: T5's span-corruption objective on plain text."""
    apply_smoke(args)
    check_start(args)
    texts = read_texts(args.text) if args.text else pretraining_corpus(args.num_documents, seed=args.seed)
    model, tokenizer = model_and_tokenizer(args, lambda: texts)
    if tokenizer.num_sentinels == 0:
        raise UsageError("the tokenizer has no sentinel tokens (<extra_id_N>), which span corruption needs")
    pairs = span_corruption_pairs(texts, tokenizer, args.chunk_length, args.noise_density,
                                  args.mean_span_length, seed=args.seed)
    if len(pairs) < 2:
        raise UsageError(f"only {len(pairs)} pretraining examples: give more text")
    n_eval = max(1, len(pairs) // 20)  # 5% held out for the eval loss
    train = Batcher(pairs[n_eval:], args.batch_size, shuffle=True, seed=args.seed, pad_id=tokenizer.pad_token_id)
    held_out = Batcher(pairs[:n_eval], args.eval_batch_size, shuffle=False, pad_id=tokenizer.pad_token_id)
    check_resume_fits(args, model)
    begin_writing(args)
    print(f"pretraining on {len(pairs) - n_eval} span-corruption examples of {args.chunk_length} tokens")
    trainer = Trainer(model, tokenizer, training_arguments(args, args.out, metric_for_best="eval_loss"),
                      train, eval_data=held_out)
    run_started(args.out)
    return finish(args, trainer.train(resume_from=args.resume))
