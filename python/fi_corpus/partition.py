"""The partition function of Docs/contract.md §1, ported from FIPartitioning.

- ``site_id`` present and non-empty → ``site_<site_id>``;
- otherwise ``partition_<n>`` with ``n = int(md5(utf8(consultation_id)).hexdigest(), 16) % N``
  (the 128-bit digest read as one big-endian unsigned integer), ``N = 3`` by default.

The hash itself accepts any string (the reference vectors include empty and non-ASCII ids);
:func:`validate_consultation_id` is the gate the HTTP layer puts in front of it.
"""
from __future__ import annotations

import hashlib
import re
from typing import Optional

from .errors import InvalidIdentifierError

__all__ = [
    "DEFAULT_PARTITIONS",
    "MAX_PARTITIONS",
    "partition_key",
    "partition_number",
    "validate_site_id",
    "validate_consultation_id",
    "validate_partition_key",
    "parse_partition_key",
]

DEFAULT_PARTITIONS = 3
MAX_PARTITIONS = 1 << 20  # FIPartitioning.Partitioner.maximumPartitions
SITE_ID_MAX = 64
CONSULTATION_ID_MAX = 128

_SITE_CHARS = re.compile(r"[A-Za-z0-9_-]*")
_CONSULTATION_CHARS = re.compile(r"[A-Za-z0-9._:-]*")
_PARTITION_KEY = re.compile(r"(?:site_([A-Za-z0-9_-]{1,64})|partition_(0|[1-9][0-9]{0,6}))")


def _first_bad(text: str, allowed: "re.Pattern[str]") -> int:
    """Byte offset of the first character ``allowed`` does not match (as the Swift messages say)."""
    good = allowed.match(text).end()
    return len(text[:good].encode("utf-8"))


def validate_site_id(site_id: str) -> str:
    """Return ``site_id`` if it is 1–64 characters of ``A–Z a–z 0–9 _ -``, else raise
    :class:`InvalidIdentifierError` saying what is wrong (the wording of FIPartitioning.SiteID)."""
    if not isinstance(site_id, str):
        raise InvalidIdentifierError(f"site_id must be a string, not {type(site_id).__name__}")
    size = len(site_id.encode("utf-8"))
    if size == 0:
        raise InvalidIdentifierError("site_id must not be empty")
    if size > SITE_ID_MAX:
        raise InvalidIdentifierError(
            f"site_id is {size} bytes long; at most {SITE_ID_MAX} characters are allowed")
    if _SITE_CHARS.fullmatch(site_id) is None:
        raise InvalidIdentifierError(
            f"site_id has a character other than A-Z a-z 0-9 _ - at byte {_first_bad(site_id, _SITE_CHARS)}")
    return site_id


def validate_consultation_id(consultation_id: str) -> str:
    """Return ``consultation_id`` if the HTTP layer would accept it: 1–128 characters of
    ``A–Z a–z 0–9 . _ - :``, the first one alphanumeric; else raise :class:`InvalidIdentifierError`."""
    if not isinstance(consultation_id, str):
        raise InvalidIdentifierError(
            f"consultation_id must be a string, not {type(consultation_id).__name__}")
    size = len(consultation_id.encode("utf-8"))
    if size == 0:
        raise InvalidIdentifierError("consultation_id must not be empty")
    if size > CONSULTATION_ID_MAX:
        raise InvalidIdentifierError(
            f"consultation_id is {size} bytes long; at most {CONSULTATION_ID_MAX} characters are allowed")
    if not (consultation_id[0].isascii() and consultation_id[0].isalnum()):
        raise InvalidIdentifierError("consultation_id must start with a letter or digit")
    if _CONSULTATION_CHARS.fullmatch(consultation_id) is None:
        raise InvalidIdentifierError(
            "consultation_id has a character other than A-Z a-z 0-9 . _ - : at byte "
            f"{_first_bad(consultation_id, _CONSULTATION_CHARS)}")
    return consultation_id


def _check_partitions(partitions: int) -> int:
    if isinstance(partitions, bool) or not isinstance(partitions, int):
        raise InvalidIdentifierError(f"the number of partitions must be an integer, not {partitions!r}")
    if not 1 <= partitions <= MAX_PARTITIONS:
        raise InvalidIdentifierError(
            f"the number of partitions must be from 1 to {MAX_PARTITIONS}, not {partitions}")
    return partitions


def partition_number(consultation_id: str, partitions: int = DEFAULT_PARTITIONS) -> int:
    """``int(md5(utf8(consultation_id)).hexdigest(), 16) % partitions`` — any string is hashed."""
    if not isinstance(consultation_id, str):
        raise InvalidIdentifierError(
            f"consultation_id must be a string, not {type(consultation_id).__name__}")
    digest = hashlib.md5(consultation_id.encode("utf-8"), usedforsecurity=False).digest()
    return int.from_bytes(digest, "big") % _check_partitions(partitions)


def partition_key(consultation_id: str, site_id: Optional[str] = None,
                  partitions: int = DEFAULT_PARTITIONS, *, validate: bool = False) -> str:
    """The partition key of an event: ``site_<site_id>`` or ``partition_<n>``.

    ``site_id`` ``None`` or ``""`` means no site (as an absent, ``null`` or empty ``metadata.site_id``
    does over HTTP). A non-empty site id is always validated: it becomes part of a path.
    ``validate=True`` also applies the HTTP layer's consultation id rule.
    """
    if validate:
        validate_consultation_id(consultation_id)
    if site_id is not None and site_id != "":
        return "site_" + validate_site_id(site_id)
    return f"partition_{partition_number(consultation_id, partitions)}"


def parse_partition_key(key: str):
    """``("site", site_id)`` or ``("partition", n)`` for a valid key; ``None`` otherwise."""
    if not isinstance(key, str):
        return None
    m = _PARTITION_KEY.fullmatch(key)
    if m is None:
        return None
    if m.group(1) is not None:
        return ("site", m.group(1))
    return ("partition", int(m.group(2)))


def validate_partition_key(key: str) -> str:
    """Return ``key`` if it is ``site_<valid site id>`` or ``partition_<n>``, else raise."""
    if parse_partition_key(key) is None:
        raise InvalidIdentifierError(
            f"{key!r} is not a partition key (site_<site_id> or partition_<n>)")
    return key
