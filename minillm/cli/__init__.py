"""The ``minillm`` command: ``main.py`` lists the commands, one module per command declares its flags
and runs it (see ``main.py``'s docstring)."""
