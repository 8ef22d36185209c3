"""``python -m tileindex``: the command line."""

from tileindex.cli import entry

entry()
