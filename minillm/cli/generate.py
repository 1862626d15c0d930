"""``minillm generate``: answer prompts from the command line, or each line typed on stdin.

The decoding settings are a ``GenerationConfig``: the model folder's ``generation_config.json``
(when it has one), then each flag given on the command line. A request whose memory estimate
does not fit is refused before the model runs; an answer that reached ``--max-new-tokens``
without ``</s>`` is printed, and a line on stderr says that it was cut.
"""
from __future__ import annotations

import argparse
import sys

from .. import backend
from ..generation import resolve_config
from ..generation_config import GenerationConfig
from .folders import load_model
from .options import add_common_arguments, finite_float
from .smoke import apply_smoke

_CLI_MAX_NEW_TOKENS = 64  # the command's own default when the folder has no generation_config.json
_FROM_FOLDER = "default: the model's generation_config.json, else {}"


def _early_stopping(text: str):
    values = {"true": True, "false": False, "never": "never"}
    if text.lower() not in values:
        raise argparse.ArgumentTypeError(f"expected true, false or never, got {text!r}")
    return values[text.lower()]


def add_parser(subparsers) -> argparse.ArgumentParser:
    """The ``generate`` sub-command and its flags (their ranges: ``options.RANGES``)."""
    p = subparsers.add_parser("generate", help="generate text from a prompt, or interactively from stdin")
    add_common_arguments(p, None)
    p.add_argument("--model", required=True, metavar="DIR", help="run directory or Hugging Face folder")
    p.add_argument("--tokenizer", metavar="PATH", help="tokenizer.json (default: the model's)")
    p.add_argument("--prompt", action="append", help="a prompt (repeatable); none: read prompts from stdin")
    d = GenerationConfig()
    p.add_argument("--max-new-tokens", type=int, help="tokens generated at most (" +
                   _FROM_FOLDER.format(_CLI_MAX_NEW_TOKENS) + ")")
    p.add_argument("--num-beams", type=int, help=f"beam search when > 1 ({_FROM_FOLDER.format(d.num_beams)})")
    p.add_argument("--num-return-sequences", type=int, help="answers per prompt, best first (at most "
                   f"--num-beams; or independent draws with --do-sample) ({_FROM_FOLDER.format(1)})")
    p.add_argument("--length-penalty", type=finite_float, help="beam search scores sum(log p) / length ** "
                   f"this ({_FROM_FOLDER.format(d.length_penalty)})")
    p.add_argument("--early-stopping", type=_early_stopping, metavar="{true,false,never}",
                   help="beam search stops when --num-beams answers have ended (true), when a heuristic says none "
                        "can improve (false), or only when none can (never) (" + _FROM_FOLDER.format("false") + ")")
    p.add_argument("--do-sample", action=argparse.BooleanOptionalAction, default=None,
                   help=f"sample instead of greedy decoding ({_FROM_FOLDER.format('no')})")
    p.add_argument("--temperature", type=finite_float, help=f"divides the logits before sampling "
                   f"({_FROM_FOLDER.format(d.temperature)})")
    p.add_argument("--top-k", type=int, help="sample among the k likeliest tokens; 0: all "
                   f"({_FROM_FOLDER.format(d.top_k)})")
    p.add_argument("--top-p", type=finite_float, help="sample among the likeliest tokens whose probabilities "
                   f"sum to p ({_FROM_FOLDER.format(d.top_p)})")
    p.add_argument("--output-scores", action="store_true", help="print each answer's score before it "
                   "(beam search: sum(log p) / length ** length_penalty)")
    p.add_argument("--seed", type=int, default=0, help="seeds sampling (default: 0)")
    p.set_defaults(func=generate)
    return p


def generation_config(args, model) -> GenerationConfig:
    """The folder's settings (or the defaults), with every flag that was given applied on top."""
    names = ("max_new_tokens", "num_beams", "num_return_sequences", "length_penalty", "early_stopping",
             "do_sample", "temperature", "top_k", "top_p")
    flags = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    if getattr(model, "generation_config", None) is None:
        flags.setdefault("max_new_tokens", _CLI_MAX_NEW_TOKENS)
    flags.update(return_dict_in_generate=True, output_scores=args.output_scores)
    return resolve_config(model, **flags)


def decode_prompt(raw, where: str) -> str:
    """``raw`` (bytes, or text whose undecodable bytes came in as surrogates) as UTF-8 text.

    Raises:
        ValueError: naming ``where`` and the first byte that is not UTF-8.
    """
    data = raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogateescape")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{where} is not valid UTF-8 (byte 0x{data[err.start]:02x} at offset {err.start}); "
                         "give prompts in UTF-8") from None


def _answers(model, tokenizer, prompt: str, config: GenerationConfig, seed: int) -> list[tuple]:
    """(text, score or None, cut) for each returned sequence of one prompt."""
    encoded = tokenizer.batch_encode([prompt.replace("\\n", "\n")])
    out = model.generate(encoded["input_ids"], encoded["attention_mask"], generation_config=config, seed=seed)
    tokens = backend.to_device(out.sequences, "cpu")
    scores = None if out.sequences_scores is None else backend.to_device(out.sequences_scores, "cpu")
    results = []
    for i, row in enumerate(tokens):
        cut = not (row[1:] == config.eos_token_id).any()
        results.append((tokenizer.decode(row[1:]).strip(), None if scores is None else float(scores[i]), cut))
    return results


def _print_answers(answers, config: GenerationConfig, where: str, show_scores: bool) -> None:
    for text, score, cut in answers:
        print(f"{score:.4f}\t{text}" if show_scores and score is not None else text, flush=True)
        if cut:
            print(f"minillm generate: {where}: the answer was cut at --max-new-tokens {config.max_new_tokens} "
                  "before </s>", file=sys.stderr, flush=True)


def _stdin_lines():
    """Raw lines of stdin: bytes when it has a binary buffer, else text."""
    stream = getattr(sys.stdin, "buffer", sys.stdin)
    while True:
        line = stream.readline()
        if not line:
            return
        yield line


def generate(args) -> int:
    """``minillm generate``: answer --prompt(s), or each line typed on stdin.

    The ranges of the settings are checked by the parser (``options.RANGES``) and by
    ``GenerationConfig`` before the model runs.
    """
    apply_smoke(args)
    model, tokenizer = load_model(args.model, args.tokenizer)
    config = generation_config(args, model)
    if args.prompt:
        prompts = [decode_prompt(p, f"--prompt {i + 1}") for i, p in enumerate(args.prompt)]
        for i, prompt in enumerate(prompts):
            _print_answers(_answers(model, tokenizer, prompt, config, args.seed), config, f"prompt {i + 1}",
                           args.output_scores)
        return 0
    interactive = sys.stdin.isatty()
    if interactive:
        print("Type a prompt and press Enter (write \\n for a line break; Ctrl-D or an empty line quits).")
        print("> ", end="", flush=True)
    for number, raw in enumerate(_stdin_lines(), start=1):
        try:
            line = decode_prompt(raw, f"stdin line {number}").rstrip("\r\n")
        except ValueError as err:
            if not interactive:
                raise
            print(f"minillm generate: {err}", file=sys.stderr)
            print("> ", end="", flush=True)
            continue
        if not line.strip():
            return 0
        _print_answers(_answers(model, tokenizer, line, config, args.seed), config, f"stdin line {number}",
                       args.output_scores)
        if interactive:
            print("> ", end="", flush=True)
    return 0
