"""``minillm generate``: answer prompts from the command line, or each line typed on stdin."""
from __future__ import annotations

import sys

from .. import backend
from .folders import load_model
from .smoke import apply_smoke


def generate(args) -> int:
    """``minillm generate``: answer --prompt(s), or each line typed on stdin.

    The settings (beams >= 1, top-p in (0, 1], top-k >= 0, lengths >= 1, temperature > 0) are
    checked by the parser (``main.RANGES``) before the model is loaded.
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
