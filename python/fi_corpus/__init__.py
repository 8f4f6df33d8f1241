"""Read FI Scale corpus files (Docs/contract.md §5) with h5py."""
from ._version import __version__
from .corpus import Corpus, Row, open  # noqa: A004 - fi_corpus.open(path) is the public name

__all__ = ["__version__", "Corpus", "Row", "open"]
