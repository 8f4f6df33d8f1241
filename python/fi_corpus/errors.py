"""Errors with one-line messages (the command line prints ``str(error)`` as is)."""
from __future__ import annotations

__all__ = [
    "CorpusError",
    "NotACorpusError",
    "PartitionNotFoundError",
    "CorpusBeingCreatedError",
    "InvalidIdentifierError",
]


class CorpusError(Exception):
    """Base class of every error this package raises on purpose."""


class NotACorpusError(CorpusError):
    """The path is not a corpus store, or the file is not an FI corpus file."""


class PartitionNotFoundError(CorpusError, KeyError):
    """The store has no such partition."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class CorpusBeingCreatedError(CorpusError):
    """Another process is creating the file, or holds it open for writing without SWMR."""


class InvalidIdentifierError(CorpusError, ValueError):
    """A site id, consultation id or partition key that the contract does not allow."""
