"""``minillm base``: the course base (``minillm.course``), built once and cached.

    minillm base build     build it if the cache lacks it (says how long first), print its folder
    minillm base path      print its folder (built or not)
    minillm base card      print its model card (README.md); error if it is not built yet

The cache folder is ``$MINILLM_CACHE``, else ``$XDG_CACHE_HOME/minillm``, else ``~/.cache/minillm``.
``--smoke`` (or ``MINILLM_SMOKE=1``) means the seconds-fast stand-in, which has its own cache key.
The build computes on the recipe's thread count (its bytes are promised per thread count), so this
command has no ``--threads``. Ctrl-C keeps what is done; the same command continues it.
"""
from __future__ import annotations

from ..course import base_path, ensure_base, is_built


def add_parser(subparsers):
    """The ``base`` sub-command: ``build``, ``path`` or ``card``."""
    p = subparsers.add_parser("base", help="build (once) and locate the course base, a pretrained, "
                              "instruction-tuned T5 the lessons start from")
    p.add_argument("action", choices=("build", "path", "card"),
                   help="build: build it unless cached, then print its folder; path: print its folder; "
                        "card: print its model card")
    p.add_argument("--smoke", action="store_true", default=None,
                   help="the seconds-fast stand-in (default: MINILLM_SMOKE decides)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.set_defaults(func=run_base)
    return p


def run_base(args) -> int:
    """Run ``minillm base ACTION``; a missing base for ``card`` is an error (exit code 2)."""
    if args.action == "build":
        print(ensure_base(smoke=args.smoke, progress=args.progress))
        return 0
    folder = base_path(smoke=args.smoke)
    if args.action == "path":
        print(folder)
        return 0
    if not is_built(folder):
        raise FileNotFoundError(f"the course base is not built yet ({folder}); run: minillm base build")
    print((folder / "README.md").read_text(encoding="utf-8"), end="")
    return 0
