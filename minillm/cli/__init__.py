"""The ``minillm`` command: ``main.py`` builds the parsers, one module per command group runs them."""
