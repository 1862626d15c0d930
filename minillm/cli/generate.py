"""``minillm generate``: answer prompts from the command line, or each line typed on stdin."""
from __future__ import annotations

import argparse
import sys

from .. import backend
from .folders import load_model
from .options import add_common_arguments, finite_float
from .smoke import apply_smoke


def add_parser(subparsers) -> argparse.ArgumentParser:
    """The ``generate`` sub-command and its flags (their ranges: ``options.RANGES``)."""
    p = subparsers.add_parser("generate", help="generate text from a prompt, or interactively from stdin")
    add_common_arguments(p, None)
    p.add_argument("--model", required=True, metavar="DIR", help="run directory or Hugging Face folder")
    p.add_argument("--tokenizer", metavar="PATH", help="tokenizer.json (default: the model's)")
    p.add_argument("--prompt", action="append", help="a prompt (repeatable); none: read prompts from stdin")
    p.add_argument("--max-new-tokens", type=int, default=64, help="tokens generated at most (default: 64)")
    p.add_argument("--num-beams", type=int, default=1, help="beam search when > 1")
    p.add_argument("--do-sample", action="store_true", help="sample instead of greedy decoding")
    p.add_argument("--temperature", type=finite_float, default=1.0, help="divides the logits before sampling "
                   "(default: 1)")
    p.add_argument("--top-k", type=int, default=0, help="sample among the k likeliest tokens; 0: all (default: 0)")
    p.add_argument("--top-p", type=finite_float, default=1.0, help="sample among the likeliest tokens whose "
                   "probabilities sum to p (default: 1)")
    p.add_argument("--seed", type=int, default=0, help="seeds sampling (default: 0)")
    p.set_defaults(func=generate)
    return p


def generate(args) -> int:
    """``minillm generate``: answer --prompt(s), or each line typed on stdin.

    The settings (beams >= 1, top-p in (0, 1], top-k >= 0, lengths >= 1, temperature > 0) are
    checked by the parser (``options.RANGES``) before the model is loaded.
    """
    apply_smoke(args)
    model, tokenizer = load_model(args.model, args.tokenizer)

    def answer(prompt: str) -> str:
        encoded = tokenizer.batch_encode([prompt.replace("\\n", "\n")])
        tokens = model.generate(encoded["input_ids"], encoded["attention_mask"], max_new_tokens=args.max_new_tokens,
                                num_beams=args.num_beams, do_sample=args.do_sample, temperature=args.temperature,
                                top_k=args.top_k, top_p=args.top_p, seed=args.seed)
        return tokenizer.decode(backend.to_device(tokens, "cpu")[0, 1:]).strip()

    if args.prompt:
        for prompt in args.prompt:
            print(answer(prompt))
        return 0
    interactive = sys.stdin.isatty()
    if interactive:
        print("Type a prompt and press Enter (write \\n for a line break; Ctrl-D or an empty line quits).")
    while True:
        if interactive:
            print("> ", end="", flush=True)
        line = sys.stdin.readline()
        if not line or not line.strip():
            return 0
        print(answer(line.rstrip("\n")), flush=True)
