"""``python -m fi_corpus …`` is the ``fi-corpus`` command."""
from .cli import entry_point

entry_point()
