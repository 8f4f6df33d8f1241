"""One partition's directory of segment files (Docs/contract.md §5, layout 2), read as one corpus.

::

    <storage>/<partition>/
        corpus.h5                  layout 1's single file, if the partition is that old: the first segment
        segment-<ms>-<seq>.h5      one segment, named after the first stream id it held (zero-padded)
        manifest.json              the closed segments (rows, id range, SHA-256) and the high-water mark

The newest segment(s) not in the manifest are being written (or were closed a moment ago); the
others are closed and never change — except that an erasure may replace one whole, and retention
may delete one. :class:`Partition` reads every segment in order, follows the writer across rolls
(:meth:`Partition.refresh`), and offers the :class:`~fi_corpus.corpus.Corpus` reading API over the
whole partition. Positions (``start``/``stop``) count rows across segments, as they are now: use
stream ids (:meth:`Partition.after`) to keep a place that survives retention and erasure.
"""
from __future__ import annotations

import json
import os
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .corpus import BLOCK_BYTES, BLOCK_ROWS, Columns, Corpus, Row, _stream_key
from .errors import CorpusBeingCreatedError, CorpusError, NotACorpusError

__all__ = ["Partition", "SegmentInfo", "LEGACY_FILE", "MANIFEST_FILE", "segment_files", "read_manifest",
           "is_partition_directory"]

LEGACY_FILE = "corpus.h5"
MANIFEST_FILE = "manifest.json"
_SEGMENT = re.compile(r"segment-[0-9]{20}-[0-9]{20}\.h5")

#: Closed segments kept open between reads (their files are opened again when needed).
OPEN_CLOSED_SEGMENTS = 8


def is_segment(name: str) -> bool:
    return name == LEGACY_FILE or _SEGMENT.fullmatch(name) is not None


def _order(names: Sequence[str]) -> List[str]:
    """Segment order: ``corpus.h5`` (always the oldest) first, then by name (= first stream id)."""
    return sorted(names, key=lambda n: (n != LEGACY_FILE, n))


def read_manifest(directory) -> Optional[dict]:
    """The partition's ``manifest.json``, or ``None`` when no segment was closed yet."""
    path = os.path.join(os.fspath(directory), MANIFEST_FILE)
    try:
        with open(path, "rb") as fh:
            manifest = json.loads(fh.read())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise NotACorpusError(f"{path} is not a readable manifest: {err}") from None
    if not isinstance(manifest, dict) or manifest.get("layout") != 2:
        raise NotACorpusError(f"{path} is not a layout 2 manifest (Docs/contract.md §5)")
    return manifest


def segment_files(directory) -> List[str]:
    """The readable segment files of a partition directory, in order (not those being deleted)."""
    directory = os.fspath(directory)
    manifest = read_manifest(directory) or {}
    deleting = set(manifest.get("deleting", []))
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return [n for n in _order([n for n in names if is_segment(n)]) if n not in deleting]


def is_partition_directory(path) -> bool:
    """Whether ``path`` holds a corpus: a segment, a manifest, or one being created."""
    try:
        names = os.listdir(path)
    except OSError:
        return False
    return any(is_segment(n) or n == MANIFEST_FILE or (n.endswith(".creating") and is_segment(n[:-9]))
               for n in names)


@dataclass(frozen=True)
class SegmentInfo:
    """One segment as the manifest and the directory show it."""

    file: str
    path: str
    closed: bool  # recorded in manifest.json: it will not be appended to again
    rows: int  # whole rows (read from the file)
    first_stream_id: Optional[str]
    last_stream_id: Optional[str]
    sha256: Optional[str]  # closed segments only
    file_bytes: int


class _Segment:
    __slots__ = ("name", "path", "ident", "closed", "rows", "first", "last", "payload_bytes", "corpus", "entry",
                 "creating")

    def __init__(self, name: str, path: str, ident):
        self.name, self.path, self.ident = name, path, ident
        self.closed = False
        self.rows = 0
        self.first: Optional[str] = None
        self.last: Optional[str] = None
        self.payload_bytes = 0
        self.corpus: Optional[Corpus] = None
        self.entry: Optional[dict] = None
        self.creating: Optional[CorpusBeingCreatedError] = None  # a writer is still setting it up


def _ident(path: str):
    st = os.stat(path)
    return st.st_dev, st.st_ino


class Partition:
    """Every segment of one partition directory, read as one corpus (SWMR: a live writer is fine).

    ``len(partition)`` is the number of whole rows when it was opened or last refreshed. The reading
    API is :class:`~fi_corpus.corpus.Corpus`'s; :attr:`segments` lists the files.
    """

    def __init__(self, directory, partition: Optional[str] = None, swmr: bool = True):
        self.path = os.fspath(directory)
        self.partition = partition
        self._swmr = swmr
        if not os.path.isdir(self.path):
            raise NotACorpusError(f"{self.path} does not exist" if not os.path.exists(self.path)
                                  else f"{self.path} is not a partition directory")
        self._segments: List[_Segment] = []
        self._open_closed: "OrderedDict[str, None]" = OrderedDict()
        self._state = None
        self._n = 0
        self.refresh()
        if not self._segments:
            creating = [n for n in sorted(os.listdir(self.path)) if n.endswith(".creating") and is_segment(n[:-9])]
            if creating:
                raise CorpusBeingCreatedError(
                    f"{os.path.join(self.path, creating[0][:-9])} is being created by another process (only "
                    f"{creating[0]} exists yet); try again in a moment")
            if not is_partition_directory(self.path):
                raise NotACorpusError(f"{self.path} holds no corpus segments")
        elif all(seg.creating is not None for seg in self._segments):
            error = self._segments[0].creating
            self.close()
            raise error

    # -- segments -----------------------------------------------------------------------------
    def _corpus(self, seg: _Segment) -> Corpus:
        if seg.corpus is None:
            seg.corpus = Corpus(seg.path, swmr=self._swmr, partition=self.partition)
        if seg.closed:
            self._open_closed.pop(seg.name, None)
            self._open_closed[seg.name] = None
            while len(self._open_closed) > OPEN_CLOSED_SEGMENTS:
                name, _ = self._open_closed.popitem(last=False)
                for other in self._segments:
                    if other.name == name and other.corpus is not None and other is not seg:
                        other.corpus.close()
                        other.corpus = None
        return seg.corpus

    def _measure(self, seg: _Segment, refresh: bool) -> None:
        c = self._corpus(seg)
        seg.rows = c.refresh() if refresh else len(c)
        seg.payload_bytes = c.payload_bytes
        if seg.rows:
            sids = c._cols["stream_id"]
            seg.first = bytes(sids[0]).decode("ascii")
            seg.last = bytes(sids[seg.rows - 1]).decode("ascii")
        else:
            seg.first = seg.last = None

    def refresh(self) -> int:
        """Pick up rows appended since, and segments opened, closed, deleted or rewritten since;
        return the number of whole rows."""
        for attempt in range(4):
            try:
                self._refresh_once()
                break
            except (FileNotFoundError, CorpusBeingCreatedError, NotACorpusError, OSError):
                # A segment went away (retention) or was replaced (erasure) between the listing
                # and its opening: look again.
                self._state = None
                if attempt == 3:
                    raise
        self._n = sum(s.rows for s in self._segments)
        return self._n

    def _refresh_once(self) -> None:
        try:
            mst = os.stat(os.path.join(self.path, MANIFEST_FILE))
            mkey = (mst.st_ino, mst.st_size, mst.st_mtime_ns)
        except FileNotFoundError:
            mkey = None
        names = sorted(os.listdir(self.path))
        state = (mkey, tuple(names))
        if state != self._state:
            manifest = read_manifest(self.path) or {}
            listed = {e["file"]: e for e in manifest.get("segments", [])}
            deleting = set(manifest.get("deleting", []))
            old = {s.name: s for s in self._segments}
            segments: List[_Segment] = []
            for name in _order([n for n in names if is_segment(n) and n not in deleting]):
                path = os.path.join(self.path, name)
                try:
                    ident = _ident(path)
                except FileNotFoundError:
                    continue
                seg = old.pop(name, None)
                if seg is None or seg.ident != ident:
                    if seg is not None and seg.corpus is not None:
                        seg.corpus.close()
                    seg = _Segment(name, path, ident)
                    seg.closed = name in listed
                    seg.entry = listed.get(name)
                    try:
                        self._measure(seg, refresh=False)
                        seg.creating = None
                    except CorpusBeingCreatedError as err:
                        if seg.closed:
                            raise
                        seg.rows, seg.creating = 0, err  # a writer is still setting it up: empty for now
                elif name in listed and not seg.closed:
                    self._measure(seg, refresh=True)  # closed since the last look: its final rows
                    seg.closed, seg.entry = True, listed[name]
                segments.append(seg)
            for seg in old.values():
                if seg.corpus is not None:
                    seg.corpus.close()
            self._open_closed = OrderedDict((k, None) for k in self._open_closed if any(
                s.name == k and s.closed for s in segments))
            self._segments = segments
            self._state = state
        for seg in self._segments:
            if not seg.closed:
                try:
                    self._measure(seg, refresh=True)
                    seg.creating = None
                except CorpusBeingCreatedError as err:
                    seg.rows, seg.creating = 0, err

    @property
    def segments(self) -> List[SegmentInfo]:
        """The segments, oldest first (as of the last refresh)."""
        out = []
        for s in self._segments:
            try:
                size = os.path.getsize(s.path)
            except OSError:
                size = 0
            out.append(SegmentInfo(s.name, s.path, s.closed, s.rows, s.first, s.last,
                                   (s.entry or {}).get("sha256"), size))
        return out

    def __len__(self) -> int:
        return self._n

    @property
    def payload_bytes(self) -> int:
        return sum(s.payload_bytes for s in self._segments)

    @property
    def file_bytes(self) -> int:
        return sum(i.file_bytes for i in self.segments)

    # -- positions ----------------------------------------------------------------------------
    def _bounds(self, start: Optional[int], stop: Optional[int]):
        n = self._n
        start = 0 if start is None else (max(0, n + start) if start < 0 else min(start, n))
        stop = n if stop is None else (max(0, n + stop) if stop < 0 else min(stop, n))
        return start, max(start, stop)

    def _spans(self, lo: int, hi: int) -> Iterator[Tuple[_Segment, int, int, int]]:
        """(segment, offset, local lo, local hi) for every segment overlapping rows [lo, hi)."""
        offset = 0
        for seg in self._segments:
            a, b = max(lo, offset), min(hi, offset + seg.rows)
            if a < b:
                yield seg, offset, a - offset, b - offset
            offset += seg.rows

    @staticmethod
    def _shift(cols: Columns, offset: int) -> Columns:
        if offset:
            cols.row_index = cols.row_index + offset
        return cols

    # -- reading ------------------------------------------------------------------------------
    def iter_columns(self, start: Optional[int] = None, stop: Optional[int] = None, *,
                     start_ms: Optional[int] = None, end_ms: Optional[int] = None,
                     block_rows: int = BLOCK_ROWS, block_bytes: int = BLOCK_BYTES) -> Iterator[Columns]:
        """Rows [start, stop) as :class:`Columns` blocks, in stream order, segment after segment;
        ``row_index`` counts across segments. See :meth:`Corpus.iter_columns`."""
        lo, hi = self._bounds(start, stop)
        for seg, offset, a, b in list(self._spans(lo, hi)):
            for cols in self._corpus(seg).iter_columns(a, b, start_ms=start_ms, end_ms=end_ms,
                                                        block_rows=block_rows, block_bytes=block_bytes):
                yield self._shift(cols, offset)

    def columns(self, start: Optional[int] = None, stop: Optional[int] = None, *,
                start_ms: Optional[int] = None, end_ms: Optional[int] = None) -> Columns:
        lo, hi = self._bounds(start, stop)
        spans = list(self._spans(lo, hi))
        if len(spans) == 1 and start_ms is None and end_ms is None:
            seg, offset, a, b = spans[0]
            return self._shift(self._corpus(seg).columns(a, b), offset)
        return Columns.concat([self._shift(self._corpus(seg).columns(a, b, start_ms=start_ms, end_ms=end_ms), offset)
                               for seg, offset, a, b in spans])

    def window(self, start_ms: Optional[int], end_ms: Optional[int]) -> Columns:
        return self.columns(start_ms=start_ms, end_ms=end_ms)

    def received_range(self):
        out = None
        for seg in self._segments:
            if seg.rows:
                rng = self._corpus(seg).received_range()
                if rng is not None:
                    out = rng if out is None else (min(out[0], rng[0]), max(out[1], rng[1]))
        return out

    def to_arrow(self, start: Optional[int] = None, stop: Optional[int] = None, *,
                 start_ms: Optional[int] = None, end_ms: Optional[int] = None,
                 payload: str = "binary", partition_column: bool = False):
        """See :meth:`Corpus.to_arrow`."""
        from .frames import _need, columns_to_arrow
        _need("pyarrow", "arrow")
        spans = list(self._spans(*self._bounds(start, stop)))
        if len(spans) == 1:
            seg, _, a, b = spans[0]
            return self._corpus(seg).to_arrow(a, b, start_ms=start_ms, end_ms=end_ms, payload=payload,
                                              partition_column=partition_column)
        return columns_to_arrow(self.columns(start, stop, start_ms=start_ms, end_ms=end_ms), payload=payload,
                                partition=self.partition if partition_column else None)

    def to_pandas(self, start: Optional[int] = None, stop: Optional[int] = None, *,
                  start_ms: Optional[int] = None, end_ms: Optional[int] = None,
                  payload: str = "bytes", json_fields: Optional[Sequence[str]] = None,
                  dtype_backend: Optional[str] = None, partition_column: bool = False):
        """See :meth:`Corpus.to_pandas`."""
        from .frames import _need, columns_to_pandas, have_pyarrow
        _need("pandas", "pandas")
        spans = list(self._spans(*self._bounds(start, stop)))
        if len(spans) == 1:
            seg, _, a, b = spans[0]
            return self._corpus(seg).to_pandas(a, b, start_ms=start_ms, end_ms=end_ms, payload=payload,
                                               json_fields=json_fields, dtype_backend=dtype_backend,
                                               partition_column=partition_column)
        if dtype_backend is None:
            dtype_backend = "pyarrow" if have_pyarrow() else "numpy"
        return columns_to_pandas(self.columns(start, stop, start_ms=start_ms, end_ms=end_ms), payload=payload,
                                 json_fields=json_fields, dtype_backend=dtype_backend,
                                 partition=self.partition if partition_column else None)

    def rows(self, start: int = 0, stop: Optional[int] = None, block: int = BLOCK_ROWS, *,
             start_ms: Optional[int] = None, end_ms: Optional[int] = None) -> Iterator[Row]:
        """Rows [start, stop) in stream order, across segments."""
        for cols in self.iter_columns(start, stop, start_ms=start_ms, end_ms=end_ms, block_rows=block):
            yield from cols.rows()

    __iter__ = rows

    def row(self, i: int) -> Row:
        if not 0 <= i < self._n:
            raise IndexError(i)
        return next(self.rows(i, i + 1))

    def index_after(self, stream_id: Optional[str]) -> int:
        """The position of the first row whose stream id is above ``stream_id``."""
        if stream_id is None:
            return 0
        key = _stream_key(stream_id)
        offset = 0
        for seg in self._segments:
            if seg.rows and seg.last is not None and _stream_key(seg.last) > key:
                return offset + self._corpus(seg).index_after(stream_id)
            offset += seg.rows
        return offset

    def after(self, stream_id: Optional[str], limit: Optional[int] = None) -> List[Row]:
        """Rows whose stream id is above ``stream_id`` (across segments)."""
        lo = self.index_after(stream_id)
        stop = self._n if limit is None else min(self._n, lo + limit)
        return list(self.rows(lo, stop))

    def by_consultation(self, consultation_id: str, block: int = 262144) -> List[Row]:
        """Every row of one consultation, in stream order (each segment's consultation_id scanned)."""
        out: List[Row] = []
        for seg in self._segments:
            if seg.rows:
                out += self._corpus(seg).by_consultation(consultation_id, block)
        return out

    # -- lifecycle ----------------------------------------------------------------------------
    def close(self) -> None:
        for seg in self._segments:
            if seg.corpus is not None:
                seg.corpus.close()
                seg.corpus = None

    def __enter__(self) -> "Partition":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<fi_corpus.Partition {self.path!r} segments={len(self._segments)} rows={self._n}>"
