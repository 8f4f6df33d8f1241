"""The whole store: ``<storage>/<partition_key>/`` for every partition, each a directory of segment
files (Docs/contract.md §1, §5; layout 1's single ``corpus.h5`` reads as its first segment).

::

    store = fi_corpus.open_store("storage")
    store.row_counts()                         # {"partition_0": 1200, "site_a": 5400, ...}
    df = store.to_pandas("site_a")             # or store.to_arrow(...), store.columns(...)
    events = store.consultation("c-42", site_id="a")
    for row in store.follow("site_a"):         # rows as a writer appends them
        ...
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from .corpus import BLOCK_BYTES, BLOCK_ROWS, Columns, Row, _stream_key
from .errors import (CorpusBeingCreatedError, CorpusError, NotACorpusError,
                     PartitionNotFoundError)
from .segments import Partition, SegmentInfo, is_partition_directory
from .partition import (DEFAULT_PARTITIONS, parse_partition_key, partition_key,
                        validate_consultation_id, validate_partition_key)

__all__ = ["Store", "PartitionInfo", "open_store", "CORPUS_FILE"]

#: Layout 1's single file; in layout 2 a partition is a directory of segments (``Store.segments``).
CORPUS_FILE = "corpus.h5"


@dataclass(frozen=True)
class PartitionInfo:
    """One partition as :meth:`Store.info` sees it."""

    key: str
    path: str  # the partition directory
    status: str  # "ok", "being created" (cannot be read yet) or "not a corpus"
    rows: int
    payload_bytes: int
    file_bytes: int  # all segment files together
    first_received_at_ms: Optional[int]
    last_received_at_ms: Optional[int]
    segments: int = 0


def _sort_key(key: str):
    kind, value = parse_partition_key(key)
    return (0, value, "") if kind == "partition" else (1, 0, value)


class Store:
    """A corpus store rooted at ``root`` (the fi-server / fi-worker ``--storage`` directory).

    ``partitions`` is the number of hash partitions N the server ran with (``--partitions``);
    it is what :meth:`consultation` needs to find a consultation without a site. ``None``
    takes the contract's default, 3, or more if the store has ``partition_<n>`` with n >= 3.
    """

    def __init__(self, root, partitions: Optional[int] = None):
        self.root = os.fspath(root)
        if not os.path.exists(self.root):
            raise NotACorpusError(f"{self.root} does not exist")
        if not os.path.isdir(self.root):
            hint = " (a corpus file: open it with fi_corpus.open)" \
                if os.path.basename(self.root) == CORPUS_FILE else ""
            raise NotACorpusError(f"{self.root} is not a corpus store: not a directory{hint}")
        keys = self.partition_keys()
        if not keys:
            if is_partition_directory(self.root):
                raise NotACorpusError(
                    f"{self.root} is not a corpus store but one partition's directory; "
                    f"the store is its parent, {os.path.dirname(os.path.abspath(self.root))}")
            raise NotACorpusError(
                f"{self.root} is not a corpus store: no <partition>/ with corpus segments in it "
                "(partitions are named site_<site_id> or partition_<n>)")
        if partitions is None:
            numbers = [v for kind, v in map(parse_partition_key, keys) if kind == "partition"]
            partitions = max([DEFAULT_PARTITIONS] + [n + 1 for n in numbers])
        partition_key("x", None, partitions)  # validates N
        self.partitions = partitions

    # -- partitions -------------------------------------------------------------
    def partition_keys(self) -> List[str]:
        """Partition keys present now, ``partition_<n>`` by number first, then ``site_<id>``."""
        keys = []
        try:
            entries = list(os.scandir(self.root))
        except OSError as err:
            raise CorpusError(f"{self.root}: cannot list ({err.strerror})") from None
        for entry in entries:
            if parse_partition_key(entry.name) is None or not entry.is_dir():
                continue
            if is_partition_directory(entry.path):
                keys.append(entry.name)
        return sorted(keys, key=_sort_key)

    keys = partition_keys

    def __iter__(self):
        return iter(self.partition_keys())

    def __contains__(self, key) -> bool:
        return key in self.partition_keys()

    def __len__(self) -> int:
        return len(self.partition_keys())

    def path(self, key: str) -> str:
        """The directory of a partition that exists, else :class:`PartitionNotFoundError`."""
        validate_partition_key(key)
        path = os.path.join(self.root, key)
        if not is_partition_directory(path):
            known = self.partition_keys()
            listed = ", ".join(known[:12]) + (", ..." if len(known) > 12 else "")
            raise PartitionNotFoundError(
                f"partition {key} does not exist in {self.root} (partitions: {listed or 'none'})")
        return path

    def open(self, key: str) -> Partition:
        """Open one partition: every segment, read as one corpus (close it, or use ``with``)."""
        return Partition(self.path(key), partition=key)

    partition = open

    def segments(self, key: str) -> List[SegmentInfo]:
        """A partition's segment files, oldest first: closed ones (in manifest.json), then the one
        being written."""
        with self.open(key) as p:
            return p.segments

    def info(self, key: Optional[str] = None) -> List[PartitionInfo]:
        """Rows, bytes and received_at_ms range of every partition (or of one)."""
        out = []
        for k in ([key] if key is not None else self.partition_keys()):
            path = self.path(k)
            try:
                with Partition(path, partition=k) as p:
                    rng = p.received_range()
                    status = "ok" if p.segments or len(p) else "being created"
                    out.append(PartitionInfo(k, path, status, len(p), p.payload_bytes,
                                             p.file_bytes, *(rng or (None, None)), segments=len(p.segments)))
            except (CorpusBeingCreatedError, NotACorpusError) as err:
                size = sum(e.stat().st_size for e in os.scandir(path) if e.is_file())
                status = "being created" if isinstance(err, CorpusBeingCreatedError) else "not a corpus"
                out.append(PartitionInfo(k, path, status, 0, 0, size, None, None))
        return out

    def row_counts(self) -> Dict[str, int]:
        """``{partition key: whole rows}`` (a partition being created counts 0)."""
        return {i.key: i.rows for i in self.info()}

    # -- reading ----------------------------------------------------------------
    def rows(self, key: str, start: int = 0, stop: Optional[int] = None, *,
             start_ms: Optional[int] = None, end_ms: Optional[int] = None) -> Iterator[Row]:
        with self.open(key) as c:
            yield from c.rows(start, stop, start_ms=start_ms, end_ms=end_ms)

    def columns(self, key: str, start: Optional[int] = None, stop: Optional[int] = None, *,
                start_ms: Optional[int] = None, end_ms: Optional[int] = None) -> Columns:
        with self.open(key) as c:
            return c.columns(start, stop, start_ms=start_ms, end_ms=end_ms)

    def iter_columns(self, keys: Optional[Sequence[str]] = None, *, start_ms: Optional[int] = None,
                     end_ms: Optional[int] = None, block_rows: int = BLOCK_ROWS,
                     block_bytes: int = BLOCK_BYTES) -> Iterator[Tuple[str, Columns]]:
        """``(key, Columns)`` blocks over partitions (all by default), bounded memory.

        Each partition is read up to its whole rows when it is opened."""
        for key in (self.partition_keys() if keys is None else list(keys)):
            with self.open(key) as c:
                for cols in c.iter_columns(start_ms=start_ms, end_ms=end_ms,
                                           block_rows=block_rows, block_bytes=block_bytes):
                    yield key, cols

    def to_arrow(self, key: Optional[str] = None, *, start_ms: Optional[int] = None,
                 end_ms: Optional[int] = None, payload: str = "binary"):
        """One partition as a ``pyarrow.Table``; ``key=None``: every partition, with a
        ``partition`` column."""
        if key is not None:
            with self.open(key) as c:
                return c.to_arrow(start_ms=start_ms, end_ms=end_ms, payload=payload)
        import pyarrow as pa
        from .frames import columns_to_arrow
        tables = []
        for k in self.partition_keys():
            with self.open(k) as c:
                cols = c.columns(start_ms=start_ms, end_ms=end_ms)
            tables.append(columns_to_arrow(cols, payload=payload, partition=k))
        return pa.concat_tables(tables)

    def to_pandas(self, key: Optional[str] = None, *, start_ms: Optional[int] = None,
                  end_ms: Optional[int] = None, payload: str = "bytes",
                  json_fields: Optional[Sequence[str]] = None, dtype_backend: Optional[str] = None):
        """One partition as a ``pandas.DataFrame`` (see :meth:`Corpus.to_pandas`); ``key=None``:
        every partition, with a ``partition`` column."""
        if key is not None:
            with self.open(key) as c:
                return c.to_pandas(start_ms=start_ms, end_ms=end_ms, payload=payload,
                                   json_fields=json_fields, dtype_backend=dtype_backend)
        import pandas as pd
        frames = []
        for k in self.partition_keys():
            with self.open(k) as c:
                frames.append(c.to_pandas(start_ms=start_ms, end_ms=end_ms, payload=payload,
                                          json_fields=json_fields, dtype_backend=dtype_backend,
                                          partition_column=True))
        frame = pd.concat(frames, ignore_index=True)
        frame["partition"] = frame["partition"].astype("category")
        return frame

    # -- one consultation --------------------------------------------------------
    def partition_for(self, consultation_id: str, site_id: Optional[str] = None, *,
                      strict: bool = True) -> str:
        """The partition key the server routes this consultation to (contract §1)."""
        if strict:
            validate_consultation_id(consultation_id)
        return partition_key(consultation_id, site_id, self.partitions)

    def consultation(self, consultation_id: str, site_id: Optional[str] = None, *,
                     strict: bool = True) -> List[Row]:
        """Every stored event of one consultation, in stream order, from the one file the
        partition function names. ``strict`` applies the HTTP layer's id rule (contract §1);
        ``strict=False`` accepts any id, as events queued by other producers may have."""
        key = self.partition_for(consultation_id, site_id, strict=strict)
        with self.open(key) as c:
            return c.by_consultation(consultation_id)

    # -- following a writer ----------------------------------------------------------
    def follow(self, key: str, *, start: int = 0, after: Optional[str] = None,
               poll_interval: float = 0.25, timeout: Optional[float] = None,
               idle_timeout: Optional[float] = None, max_rows: Optional[int] = None,
               stop: Optional[Callable[[], bool]] = None, reopen_after: float = 2.0,
               retry_for: float = 60.0, block_rows: int = 4096) -> Iterator[Row]:
        """Yield rows of one partition as a writer appends them, whole rows only, in order.

        - where to begin: ``start`` (a row position; negative counts from the end, so
          ``start=-10`` begins with the last ten rows) or ``after`` (a stream id: the rows after it).
        - ``poll_interval`` (0.001–60 s): the longest wait between two looks at the file when it
          has no new rows; rows already there are yielded without waiting.
        - when to stop (else it runs until the consumer stops iterating): ``timeout`` seconds in
          all, ``idle_timeout`` seconds without a new row, ``max_rows`` rows, or ``stop()`` true.

        Each look is an SWMR refresh and the reading rule (:meth:`Partition.refresh`), across
        segments: a segment the writer closes is read to its end, then the next one. Progress is
        kept as the last yielded stream id, so a writer restart, a roll, a torn tail cut back by
        the writer's recovery, or segments deleted by retention or rewritten by an erasure are
        followed from the next row after it: no row is yielded twice or skipped. An idle
        partition is reopened every ``reopen_after`` seconds; errors reading it are retried
        (reopening) for up to ``retry_for`` seconds.
        """
        if not 0.001 <= poll_interval <= 60:
            raise ValueError(f"poll_interval must be from 0.001 to 60 seconds, not {poll_interval}")
        if max_rows is not None and max_rows <= 0:
            return
        path = self.path(key)
        t0 = time.monotonic()
        last_row_at = t0
        last_sid: Optional[str] = after
        last_key = _stream_key(after) if after is not None else None
        yielded = 0
        corpus: Optional[Partition] = None
        pos = 0
        opened_at = 0.0
        failing_since: Optional[float] = None
        first_open = True

        def done(now: float) -> bool:
            return ((timeout is not None and now - t0 >= timeout) or
                    (idle_timeout is not None and now - last_row_at >= idle_timeout) or
                    (stop is not None and stop()))

        def nap(now: float) -> None:
            limit = poll_interval
            if timeout is not None:
                limit = min(limit, max(0.0, t0 + timeout - now))
            if idle_timeout is not None:
                limit = min(limit, max(0.0, last_row_at + idle_timeout - now))
            time.sleep(limit)

        try:
            while True:
                now = time.monotonic()
                if done(now):
                    return
                try:
                    if corpus is None:
                        corpus = Partition(path, partition=key)
                        opened_at = time.monotonic()
                        if first_open and last_sid is None:
                            pos = (max(0, len(corpus) + start) if start < 0 else min(start, len(corpus)))
                        elif last_sid is not None:
                            pos = corpus.index_after(last_sid)
                        else:  # reopened before the first row: keep the starting position
                            pos = min(pos, len(corpus))
                        first_open = False
                    n = corpus.refresh()
                    if last_sid is not None:
                        # Positions shift when rows go (retention, erasure, a torn tail cut
                        # back): the place is the stream id.
                        pos = corpus.index_after(last_sid)
                    failing_since = None
                except (CorpusBeingCreatedError, OSError, KeyError, ValueError, RuntimeError,
                        CorpusError) as err:
                    if isinstance(err, NotACorpusError) and first_open:
                        raise
                    if corpus is not None:
                        try:
                            corpus.close()
                        except Exception:  # noqa: BLE001 - the handle is being dropped anyway
                            pass
                        corpus = None
                    now = time.monotonic()
                    failing_since = failing_since or now
                    if now - failing_since > retry_for:
                        raise
                    nap(now)
                    continue
                if n > pos:
                    hi = min(n, pos + block_rows)
                    if max_rows is not None:
                        hi = min(hi, pos + (max_rows - yielded))
                    for row in corpus.rows(pos, hi):
                        k = _stream_key(row.stream_id)
                        if last_key is not None and k <= last_key:
                            continue  # already yielded (never expected: rows are in stream order)
                        last_key, last_sid = k, row.stream_id
                        yielded += 1
                        yield row
                    pos = hi
                    last_row_at = time.monotonic()
                    if max_rows is not None and yielded >= max_rows:
                        return
                    continue
                now = time.monotonic()
                if now - opened_at >= reopen_after and now - last_row_at >= reopen_after:
                    corpus.close()
                    corpus = None
                    continue
                nap(now)
        finally:
            if corpus is not None:
                corpus.close()


def open_store(root, partitions: Optional[int] = None) -> Store:
    """Open the corpus store at ``root`` (the ``--storage`` directory of fi-server / fi-worker)."""
    return Store(root, partitions=partitions)
