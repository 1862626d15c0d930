"""``python -m minillm ...``: the same as the ``minillm`` command (see ``minillm/cli/main.py``)."""
import sys

from .cli.main import main

if __name__ == "__main__":
    sys.exit(main())
