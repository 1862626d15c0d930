"""``python -m minillm ...``: the same as the ``minillm`` command (see ``minillm/cli.py``)."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
