"""One corpus file, ``<storage>/<partition_key>/corpus.h5`` (Docs/contract.md §5), read with h5py.

Three lines::

    import fi_corpus
    with fi_corpus.open("storage/site_a/corpus.h5") as corpus:
        rows = list(corpus)            # or: for row in corpus: row.json()

Works on a file that a worker is writing right now (SWMR) or that a crashed worker left: only
whole rows are returned (see :meth:`Corpus.refresh`). Needs h5py and numpy; pandas and pyarrow
only for :meth:`Corpus.to_pandas` and :meth:`Corpus.to_arrow`.
"""
from __future__ import annotations

import builtins
import json
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence

import h5py
import numpy as np

from .errors import CorpusBeingCreatedError, CorpusError, NotACorpusError

__all__ = ["Row", "Columns", "Corpus", "open", "ROW_COLUMNS", "EPOCH_COLUMN"]

#: The row columns every corpus file has.
ROW_COLUMNS = ("consultation_id", "stream_id", "received_at_ms", "payload_end")
#: The optional row column: the lease epoch of the writer that stored each row. Files written
#: before it existed lack it; their rows read as epoch 0. When present it counts among the row
#: columns for the reading rule (n = the shortest of them).
EPOCH_COLUMN = "epoch"
_DTYPES = {
    "consultation_id": np.dtype("S128"),
    "stream_id": np.dtype("S41"),
    "received_at_ms": np.dtype("<i8"),
    "epoch": np.dtype("<u8"),
    "payload_end": np.dtype("<u8"),
    "payload": np.dtype("u1"),
}
_STREAM_ID = re.compile(rb"[0-9]{1,20}-[0-9]{1,20}")

#: Rows per block when a reader streams a range (bounded memory).
BLOCK_ROWS = 65536
#: Payload bytes per block when a reader streams a range.
BLOCK_BYTES = 64 << 20
#: From this many payload bytes on, a whole-range DataFrame/Arrow read converts the id columns
#: while another thread reads the payload.
OVERLAP_MIN_BYTES = 8 << 20


@dataclass(frozen=True)
class Row:
    """One stored event."""

    consultation_id: str
    stream_id: str
    received_at_ms: int
    payload: bytes  # the event JSON, byte for byte as queued
    epoch: int = 0  # the lease epoch of the writer that stored it (0: no fencing, or an older file)

    def text(self) -> str:
        return self.payload.decode("utf-8")

    def json(self):
        return json.loads(self.payload)


def _stream_key(stream_id):
    if isinstance(stream_id, bytes):
        stream_id = stream_id.decode("ascii")
    ms, seq = stream_id.split("-", 1)
    return int(ms), int(seq)


@dataclass
class Columns:
    """A block of rows as numpy arrays, in stream order.

    ``payload`` is the rows' payload bytes concatenated; row i's bytes are
    ``payload[payload_offsets[i]:payload_offsets[i + 1]]`` (``payload_offsets[0] == 0``) — the
    layout of an Arrow binary column. ``row_index`` is each row's position in its file.
    ``epoch`` is each row's lease epoch (uint64; zeros for a file without the column, and when
    not given).
    """

    consultation_id: np.ndarray  # S128, NUL padding stripped on item access
    stream_id: np.ndarray  # S41
    received_at_ms: np.ndarray  # int64
    payload_offsets: np.ndarray  # int64, len(rows) + 1
    payload: np.ndarray  # uint8
    row_index: np.ndarray  # int64
    epoch: Optional[np.ndarray] = None  # uint64

    def __post_init__(self) -> None:
        if self.epoch is None:
            self.epoch = np.zeros(len(self.received_at_ms), dtype=np.uint64)

    def __len__(self) -> int:
        return len(self.received_at_ms)

    def payload_at(self, i: int) -> bytes:
        return self.payload[self.payload_offsets[i]:self.payload_offsets[i + 1]].tobytes()

    def rows(self) -> List[Row]:
        data = self.payload.tobytes()
        offs = self.payload_offsets.tolist()
        cids = self.consultation_id.tolist()
        sids = self.stream_id.tolist()
        times = self.received_at_ms.tolist()
        epochs = self.epoch.tolist()
        return [Row(cids[i].decode("utf-8"), sids[i].decode("ascii"), times[i], data[offs[i]:offs[i + 1]], epochs[i])
                for i in range(len(times))]

    def take(self, positions: np.ndarray) -> "Columns":
        """The rows at ``positions`` (increasing indices into this block)."""
        positions = np.asarray(positions, dtype=np.int64)
        starts = self.payload_offsets[positions]
        ends = self.payload_offsets[positions + 1]
        offsets = np.zeros(len(positions) + 1, dtype=np.int64)
        np.cumsum(ends - starts, out=offsets[1:])
        if len(positions) == len(self) or len(positions) == 0 or \
                (len(positions) and positions[-1] - positions[0] + 1 == len(positions)):
            payload = self.payload[starts[0]:ends[-1]] if len(positions) else self.payload[:0]
        else:
            # Runs of consecutive rows are copied as one slice each.
            breaks = np.flatnonzero(np.diff(positions) != 1) + 1
            run_first = np.concatenate(([0], breaks))
            run_last = np.concatenate((breaks, [len(positions)])) - 1
            payload = np.concatenate([self.payload[starts[a]:ends[b]]
                                      for a, b in zip(run_first.tolist(), run_last.tolist())])
        return Columns(self.consultation_id[positions], self.stream_id[positions],
                       self.received_at_ms[positions], offsets, payload, self.row_index[positions],
                       self.epoch[positions])

    @staticmethod
    def empty() -> "Columns":
        return Columns(np.empty(0, "S128"), np.empty(0, "S41"), np.empty(0, np.int64),
                       np.zeros(1, np.int64), np.empty(0, np.uint8), np.empty(0, np.int64), np.empty(0, np.uint64))

    @staticmethod
    def concat(blocks: Sequence["Columns"]) -> "Columns":
        blocks = [b for b in blocks if len(b)]
        if not blocks:
            return Columns.empty()
        if len(blocks) == 1:
            return blocks[0]
        shift = np.cumsum([0] + [len(b.payload) for b in blocks[:-1]])
        offsets = np.concatenate([np.zeros(1, np.int64)] +
                                 [b.payload_offsets[1:] + s for b, s in zip(blocks, shift)])
        return Columns(np.concatenate([b.consultation_id for b in blocks]),
                       np.concatenate([b.stream_id for b in blocks]),
                       np.concatenate([b.received_at_ms for b in blocks]),
                       offsets,
                       np.concatenate([b.payload for b in blocks]),
                       np.concatenate([b.row_index for b in blocks]),
                       np.concatenate([b.epoch for b in blocks]))


def _has_locking_arg() -> bool:
    # h5py >= 3.5 accepts locking=; older versions take HDF5_USE_FILE_LOCKING from the environment.
    try:
        major, minor = (int(x) for x in h5py.__version__.split(".")[:2])
        return (major, minor) >= (3, 5)
    except ValueError:
        return False


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def superblock_open_for_write(path: str) -> Optional[bool]:
    """Whether the superblock (v2/v3, as FIStorage writes) says a writer has the file open.

    ``None`` when it cannot tell (not HDF5, an older superblock, unreadable). A writer killed
    without closing leaves the flag set too, so this alone does not mean a live writer.
    """
    try:
        with builtins.open(path, "rb") as fh:
            head = fh.read(12)
    except OSError:
        return None
    if len(head) < 12 or head[:8] != _HDF5_SIGNATURE or head[8] < 2:
        return None
    return bool(head[11] & 0x05)  # bit 0: open for write, bit 2: open for SWMR write


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= 300 else text[:297] + "..."


def _open_h5(path: str, swmr: bool):
    """``(h5py.File, swmr)``: read-only, SWMR unless the file is already open in this process
    without it (HDF5 shares one handle per file in a process, and the flags must agree)."""
    if not os.path.exists(path):
        if os.path.exists(path + ".creating"):
            raise CorpusBeingCreatedError(
                f"{path} is being created by another process (only {os.path.basename(path)}.creating "
                "exists yet); try again in a moment")
        raise NotACorpusError(f"{path} does not exist")
    if os.path.isdir(path):
        raise NotACorpusError(f"{path} is a directory, not a corpus file")
    try:
        try:
            if _has_locking_arg():
                return h5py.File(path, "r", swmr=swmr, locking=False), swmr
            return h5py.File(path, "r", swmr=swmr), swmr
        except OSError as err:
            if "already open" not in str(err) or "not the same" not in str(err):
                raise
        # Open in this process already (e.g. a plain h5py.File): share that handle's flags.
        for kwargs in ({}, {"locking": False} if _has_locking_arg() else None,
                       {"swmr": True}, {"swmr": True, "locking": False} if _has_locking_arg() else None):
            if kwargs is None:
                continue
            try:
                return h5py.File(path, "r", **kwargs), bool(kwargs.get("swmr"))
            except OSError:
                continue
        raise CorpusError(f"{path} is already open in this process with other flags; close that "
                          "h5py.File first, or open it with swmr=True, locking=False")
    except FileNotFoundError:
        raise NotACorpusError(f"{path} does not exist") from None
    except PermissionError as err:
        raise CorpusError(f"{path}: permission denied ({_one_line(err)})") from None
    except OSError as err:
        text = str(err)
        if "signature" in text or "not an HDF5" in text or "file format" in text.lower():
            raise NotACorpusError(f"{path} is not an HDF5 file, so not a corpus file") from None
        if "already open for write" in text or "unable to lock" in text or \
                "file is already open" in text or "SWMR" in text:
            raise CorpusBeingCreatedError(
                f"{path} is being created or written by another process without SWMR, so it cannot be "
                "read yet; try again in a moment") from None
        raise CorpusError(f"{path}: cannot open with h5py: {_one_line(err)}") from None


class _Handle:
    """One open corpus file and its datasets, shared by every :class:`Corpus` on that file
    in this process (see :func:`_acquire`). ``cols`` holds the row columns: the four of
    ``ROW_COLUMNS``, and ``epoch`` when the file has it."""

    def __init__(self, path: str, swmr: bool):
        self.path = path
        self.file, self.swmr = _open_h5(path, swmr)
        self.refs = 0
        try:
            self._bind()
        except BaseException:
            self.file.close()
            raise

    def _bind(self) -> None:
        events = self.file.get("events")
        missing = [n for n in (*ROW_COLUMNS, "payload")
                   if events is None or not isinstance(events.get(n), h5py.Dataset)]
        if missing:
            if superblock_open_for_write(self.path):
                raise CorpusBeingCreatedError(
                    f"{self.path} is being created by another process (no complete /events group "
                    "yet); try again in a moment")
            what = "no /events group" if events is None else "no /events/" + ", /events/".join(missing)
            raise NotACorpusError(f"{self.path} is not an FI corpus file ({what})")
        self.cols = {name: events[name] for name in ROW_COLUMNS}
        if isinstance(events.get(EPOCH_COLUMN), h5py.Dataset):
            self.cols[EPOCH_COLUMN] = events[EPOCH_COLUMN]
        self.payload = events["payload"]
        for name, ds in (*self.cols.items(), ("payload", self.payload)):
            if ds.ndim != 1 or ds.dtype != _DTYPES[name]:
                raise NotACorpusError(
                    f"{self.path} is not an FI corpus file (/events/{name} is {ds.dtype}, "
                    f"{ds.ndim}-D; the contract says {_DTYPES[name]}, 1-D)")


_HANDLES: Dict[str, _Handle] = {}
_HANDLES_LOCK = threading.Lock()  # guards _HANDLES and refs; never held across an h5py call
_DEFERRED: List[_Handle] = []  # released by Corpus.__del__, closed at the next acquire/release


def _acquire(path: str, swmr: bool) -> _Handle:
    """The process's one SWMR handle on ``path`` (opened on first use, counted).

    Two HDF5 handles on one file in one process share HDF5's state of that file, and a SWMR
    reader's refresh then stops being reliable: in our tests a follow() running while the same
    process opened and closed the file again read rows whose payload came from one chunk
    earlier (the chunk index it used was stale). So every Corpus on a file shares one handle
    and one set of datasets; a refresh by any of them refreshes them for all.
    """
    _close_deferred()
    if not swmr:
        h = _Handle(path, False)
        h.refs = 1
        return h
    key = os.path.realpath(path)
    with _HANDLES_LOCK:
        h = _HANDLES.get(key)
        if h is not None:
            h.refs += 1
            return h
    fresh = _Handle(path, True)  # opened outside the lock (h5py has its own)
    with _HANDLES_LOCK:
        h = _HANDLES.get(key)
        if h is None:
            h = fresh
            if h.swmr:  # a non-SWMR fallback (file already open without SWMR) is not shared
                _HANDLES[key] = h
            fresh = None
        h.refs += 1
    if fresh is not None:  # another thread opened it meanwhile
        fresh.file.close()
    return h


def _release(h: _Handle) -> None:
    with _HANDLES_LOCK:
        h.refs -= 1
        if h.refs > 0:
            return
        key = os.path.realpath(h.path)
        if _HANDLES.get(key) is h:
            del _HANDLES[key]
    if h.file.id.valid:
        h.file.close()
    _close_deferred()


def _forget_handles_in_child() -> None:
    # A forked child must not use the parent's HDF5 handles: it opens its own.
    global _HANDLES_LOCK
    _HANDLES.clear()
    _DEFERRED.clear()
    _HANDLES_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_handles_in_child)


def _close_deferred() -> None:
    while _DEFERRED:
        try:
            h = _DEFERRED.pop()
        except IndexError:
            return
        _release(h)


class Corpus:
    """A corpus file opened read-only (SWMR, so a live writer is fine).

    ``len(corpus)`` is the number of whole rows when it was opened or last refreshed. Corpus
    objects on the same file in one process share one HDF5 handle (see :func:`_acquire`);
    do not open the file with h5py as well while you follow it.
    """

    def __init__(self, path, swmr: bool = True, partition: Optional[str] = None):
        self.path = os.fspath(path)
        self.partition = partition
        self._h: Optional[_Handle] = _acquire(self.path, swmr)
        self._swmr = self._h.swmr
        self._n = 0
        self._indexed_chunks: Dict[str, int] = {}
        try:
            self.refresh()
        except BaseException:
            self.close()
            raise

    @property
    def _file(self) -> h5py.File:
        if self._h is None:
            raise CorpusError(f"{self.path}: the corpus is closed")
        return self._h.file

    @property
    def _cols(self) -> Dict[str, h5py.Dataset]:
        if self._h is None:
            raise CorpusError(f"{self.path}: the corpus is closed")
        return self._h.cols

    @property
    def _payload(self) -> h5py.Dataset:
        if self._h is None:
            raise CorpusError(f"{self.path}: the corpus is closed")
        return self._h.payload

    # -- size -----------------------------------------------------------------
    def refresh(self) -> int:
        """Pick up rows appended since; return the number of whole rows.

        n = the shortest of the row columns (the four, and ``epoch`` when the file has it), lowered
        while payload_end[n-1] > len(payload):
        HDF5 may publish one dataset's growth before another's. As a writer's recovery does, n is
        also lowered while row n-1 has no valid stream id (a cell never written reads as zeros) or
        its payload_end goes backwards.
        """
        if self._swmr:
            for ds in (*self._cols.values(), self._payload):
                ds.refresh()
        n = min(len(ds) for ds in self._cols.values())
        size = len(self._payload)
        ends = self._cols["payload_end"]
        sids = self._cols["stream_id"]
        while n > 0:
            tail = ends[max(0, n - 2):n]
            end = int(tail[-1])
            if end > size or (len(tail) == 2 and int(tail[0]) > end) or \
                    _STREAM_ID.fullmatch(bytes(sids[n - 1])) is None:
                n -= 1
                continue
            break
        if self._swmr:
            n = self._indexed_rows(n)
        self._n = n
        return n

    def _indexed_rows(self, n: int) -> int:
        """Lower n to the rows whose cells and payload bytes lie in chunks this handle's chunk
        index knows.

        A guard: a SWMR reader whose view of the chunk index lags its view of the extents (we saw
        it when a second handle on the file was open in the same process, see :func:`_acquire`)
        gets stale bytes from HDF5 for a chunk it does not know, not an error. Such rows are not
        counted until a refresh shows their chunk. At open only each dataset's last chunk is
        checked; on refresh, the chunks from the one checked last to the end.
        """
        if n == 0 or not hasattr(self._payload.id, "get_chunk_info_by_coord"):
            return n
        for name, ds in self._cols.items():
            n = min(n, self._indexed_prefix(name, ds, n))
        end = int(self._cols["payload_end"][n - 1]) if n else 0
        indexed = self._indexed_prefix("payload", self._payload, end)
        if indexed < end:  # the rows whose bytes end inside the indexed prefix
            lo, hi = 0, n
            ends = self._cols["payload_end"]
            while lo < hi:
                mid = (lo + hi) // 2
                if int(ends[mid]) <= indexed:
                    lo = mid + 1
                else:
                    hi = mid
            n = lo
        return n

    def _indexed_prefix(self, name: str, ds: h5py.Dataset, length: int) -> int:
        if length <= 0:
            return length
        chunk = ds.chunks[0]
        last = (length - 1) // chunk
        # From the chunk checked last (again: a restarted writer may have rewritten it) to the
        # end; at open only the last chunk — a fresh handle's index is current.
        k = max(0, self._indexed_chunks.get(name, last + 1) - 1)
        while k <= last:
            if ds.id.get_chunk_info_by_coord((k * chunk,)).byte_offset is None:
                self._indexed_chunks[name] = k
                return min(length, k * chunk)
            k += 1
        self._indexed_chunks[name] = last + 1
        return length

    def __len__(self) -> int:
        return self._n

    @property
    def payload_bytes(self) -> int:
        """Bytes of payload in the whole rows."""
        return int(self._cols["payload_end"][self._n - 1]) if self._n else 0

    # -- columns (numpy) -----------------------------------------------------
    def _bounds(self, start: Optional[int], stop: Optional[int]):
        n = self._n
        start = 0 if start is None else (max(0, n + start) if start < 0 else min(start, n))
        stop = n if stop is None else (max(0, n + stop) if stop < 0 else min(stop, n))
        return start, max(start, stop)

    def _read(self, lo: int, hi: int, overlap=None):
        """Rows [lo, hi) as columns: one read per dataset.

        With ``overlap`` (a function of the row columns, given a :class:`Columns` whose payload is
        not read yet) returns ``(Columns, overlap(...))``, running ``overlap`` while another thread
        reads the payload: h5py releases the GIL during the read, so e.g. the Arrow conversion of
        the id columns costs no extra time.
        """
        if hi <= lo:
            cols = Columns.empty()
            return (cols, overlap(cols)) if overlap is not None else cols
        ends = self._cols["payload_end"][lo:hi].astype(np.int64, copy=False)
        first = int(self._cols["payload_end"][lo - 1]) if lo > 0 else 0
        offsets = np.empty(hi - lo + 1, dtype=np.int64)
        offsets[0] = 0
        np.subtract(ends, first, out=offsets[1:])
        nbytes = max(0, int(ends[-1]) - first)
        cids = self._cols["consultation_id"][lo:hi]
        sids = self._cols["stream_id"][lo:hi]
        times = self._cols["received_at_ms"][lo:hi]
        epochs = self._epochs(slice(lo, hi), hi - lo)
        positions = np.arange(lo, hi, dtype=np.int64)
        if overlap is None or nbytes < OVERLAP_MIN_BYTES:
            payload = self._payload[first:first + nbytes] if nbytes else np.empty(0, np.uint8)
            cols = Columns(cids, sids, times, offsets, payload, positions, epochs)
            return (cols, overlap(cols)) if overlap is not None else cols
        payload = np.empty(nbytes, dtype=np.uint8)
        with ThreadPoolExecutor(1) as pool:
            reading = pool.submit(self._payload.read_direct, payload, np.s_[first:first + nbytes])
            extra = overlap(Columns(cids, sids, times, offsets, np.empty(0, np.uint8), positions, epochs))
            reading.result()
        return Columns(cids, sids, times, offsets, payload, positions, epochs), extra

    @property
    def has_epoch(self) -> bool:
        """Whether the file has the ``epoch`` column (without it every row reads as epoch 0)."""
        return EPOCH_COLUMN in self._cols

    def _epochs(self, selection, count: int) -> np.ndarray:
        """The ``epoch`` cells at ``selection`` (a slice or a list of positions), zeros without the column."""
        ds = self._cols.get(EPOCH_COLUMN)
        if ds is None:
            return np.zeros(count, dtype=np.uint64)
        return ds[selection].astype(np.uint64, copy=False)

    def _block_stops(self, lo: int, hi: int, block_rows: int, block_bytes: int) -> Iterator[int]:
        """Cut [lo, hi) into blocks of at most block_rows rows and about block_bytes payload."""
        pos = lo
        while pos < hi:
            cand = min(hi, pos + block_rows)
            ends = self._cols["payload_end"][pos:cand].astype(np.int64, copy=False)
            first = int(self._cols["payload_end"][pos - 1]) if pos > 0 else 0
            k = int(np.searchsorted(ends, first + block_bytes, side="right"))
            stop = pos + max(1, min(k, cand - pos))
            yield stop
            pos = stop

    def iter_columns(self, start: Optional[int] = None, stop: Optional[int] = None, *,
                     start_ms: Optional[int] = None, end_ms: Optional[int] = None,
                     block_rows: int = BLOCK_ROWS, block_bytes: int = BLOCK_BYTES) -> Iterator[Columns]:
        """Rows [start, stop) as :class:`Columns` blocks of bounded size, in stream order.

        With ``start_ms`` / ``end_ms``, only rows with ``start_ms <= received_at_ms < end_ms``: the
        ``received_at_ms`` column is scanned in blocks and only blocks holding such rows are read.
        ``received_at_ms`` is the server's receive time and rows are in stream order, so it is
        nearly, not strictly, sorted; nothing here assumes it is sorted.
        """
        lo, hi = self._bounds(start, stop)
        if start_ms is None and end_ms is None:
            pos = lo
            for cut in self._block_stops(lo, hi, block_rows, block_bytes):
                yield self._read(pos, cut)
                pos = cut
            return
        times = self._cols["received_at_ms"]
        for blo in range(lo, hi, block_rows):
            bhi = min(hi, blo + block_rows)
            t = times[blo:bhi]
            mask = np.ones(len(t), dtype=bool)
            if start_ms is not None:
                mask &= t >= start_ms
            if end_ms is not None:
                mask &= t < end_ms
            sel = np.flatnonzero(mask)
            if len(sel) == 0:
                continue
            a, b = blo + int(sel[0]), blo + int(sel[-1]) + 1
            pos = a
            for cut in self._block_stops(a, b, block_rows, block_bytes):
                cols = self._read(pos, cut)
                keep = sel[(sel >= pos - blo) & (sel < cut - blo)] - (pos - blo)
                if len(keep):
                    yield cols if len(keep) == len(cols) else cols.take(keep)
                pos = cut

    def columns(self, start: Optional[int] = None, stop: Optional[int] = None, *,
                start_ms: Optional[int] = None, end_ms: Optional[int] = None) -> Columns:
        """Rows [start, stop) (or a time window) as one :class:`Columns` (whole range in memory)."""
        if start_ms is None and end_ms is None:
            return self._read(*self._bounds(start, stop))
        return Columns.concat(list(self.iter_columns(start, stop, start_ms=start_ms, end_ms=end_ms)))

    def window(self, start_ms: Optional[int], end_ms: Optional[int]) -> Columns:
        """Rows with ``start_ms <= received_at_ms < end_ms`` (either bound may be ``None``)."""
        return self.columns(start_ms=start_ms, end_ms=end_ms)

    def received_range(self):
        """``(min, max)`` of received_at_ms over the whole rows, or ``None`` when empty."""
        if not self._n:
            return None
        lo, hi = None, None
        times = self._cols["received_at_ms"]
        for a in range(0, self._n, 1 << 20):
            t = times[a:min(self._n, a + (1 << 20))]
            lo = int(t.min()) if lo is None else min(lo, int(t.min()))
            hi = int(t.max()) if hi is None else max(hi, int(t.max()))
        return lo, hi

    # -- frames ---------------------------------------------------------------
    def _frame_columns(self, start, stop, start_ms, end_ms, fast: bool):
        """The rows to convert, plus the id columns already converted to Arrow when ``fast``
        (whole ranges: converted while the payload is being read)."""
        from .frames import arrow_id_columns
        if start_ms is None and end_ms is None and fast:
            return self._read(*self._bounds(start, stop), overlap=arrow_id_columns)
        return self.columns(start, stop, start_ms=start_ms, end_ms=end_ms), None

    def to_arrow(self, start: Optional[int] = None, stop: Optional[int] = None, *,
                 start_ms: Optional[int] = None, end_ms: Optional[int] = None,
                 payload: str = "binary", partition_column: bool = False):
        """A ``pyarrow.Table``: consultation_id, stream_id (string), received_at_ms (int64),
        epoch (uint64), payload (large_binary, or large_string with ``payload="string"``)."""
        from .frames import _need, columns_to_arrow
        _need("pyarrow", "arrow")
        cols, ids = self._frame_columns(start, stop, start_ms, end_ms, True)
        return columns_to_arrow(cols, payload=payload, ids=ids,
                                partition=self.partition if partition_column else None)

    def to_pandas(self, start: Optional[int] = None, stop: Optional[int] = None, *,
                  start_ms: Optional[int] = None, end_ms: Optional[int] = None,
                  payload: str = "bytes", json_fields: Optional[Sequence[str]] = None,
                  dtype_backend: Optional[str] = None, partition_column: bool = False):
        """A ``pandas.DataFrame`` of the rows; see :func:`fi_corpus.frames.columns_to_pandas`.

        ``payload``: ``"bytes"`` (default), ``"text"``, ``"json"`` (the events parsed into columns,
        ``metadata.site_id`` style; ``json_fields`` keeps only those) or ``"none"``.
        ``dtype_backend``: ``"pyarrow"`` (default when pyarrow is installed: Arrow-backed columns,
        the fast path) or ``"numpy"`` (object columns of ``str`` and ``bytes``).
        """
        from .frames import _need, columns_to_pandas, have_pyarrow
        _need("pandas", "pandas")
        if dtype_backend is None:
            dtype_backend = "pyarrow" if have_pyarrow() else "numpy"
        cols, ids = self._frame_columns(start, stop, start_ms, end_ms, dtype_backend == "pyarrow")
        return columns_to_pandas(cols, payload=payload, json_fields=json_fields, ids=ids,
                                 dtype_backend=dtype_backend,
                                 partition=self.partition if partition_column else None)

    # -- rows -----------------------------------------------------------------
    def rows(self, start: int = 0, stop: Optional[int] = None, block: int = BLOCK_ROWS, *,
             start_ms: Optional[int] = None, end_ms: Optional[int] = None) -> Iterator[Row]:
        """Rows [start, stop) in stream order, read in blocks."""
        for cols in self.iter_columns(start, stop, start_ms=start_ms, end_ms=end_ms, block_rows=block):
            yield from cols.rows()

    __iter__ = rows

    def row(self, i: int) -> Row:
        if not 0 <= i < self._n:
            raise IndexError(i)
        return self._read(i, i + 1).rows()[0]

    def index_after(self, stream_id: Optional[str]) -> int:
        """The position of the first row whose stream id is above ``stream_id`` (binary search)."""
        lo, hi = 0, self._n
        if stream_id is not None:
            key = _stream_key(stream_id)
            sids = self._cols["stream_id"]
            while lo < hi:
                mid = (lo + hi) // 2
                if _stream_key(bytes(sids[mid])) <= key:
                    lo = mid + 1
                else:
                    hi = mid
        return lo

    def after(self, stream_id: Optional[str], limit: Optional[int] = None) -> List[Row]:
        """Rows whose stream id is above ``stream_id`` (binary search)."""
        lo = self.index_after(stream_id)
        stop = self._n if limit is None else min(self._n, lo + limit)
        return list(self.rows(lo, stop))

    def consultation_positions(self, consultation_id: str, block: int = 262144) -> np.ndarray:
        """Positions of one consultation's rows (a vectorised scan of consultation_id)."""
        want = np.array([consultation_id.encode("utf-8")], dtype="S128")[0]
        col = self._cols["consultation_id"]
        found = [np.flatnonzero(col[lo:min(self._n, lo + block)] == want) + lo
                 for lo in range(0, self._n, block)]
        return np.concatenate(found).astype(np.int64) if found else np.empty(0, np.int64)

    def take(self, positions: Sequence[int], block_rows: int = BLOCK_ROWS,
             block_bytes: int = BLOCK_BYTES) -> Columns:
        """The rows at ``positions`` (increasing), reading only what holds them: a dense group of
        positions reads its span, a sparse one reads just its rows (HDF5 point and range selections)."""
        positions = np.unique(np.asarray(positions, dtype=np.int64))
        if len(positions) and (positions[0] < 0 or positions[-1] >= self._n):
            raise IndexError(f"positions outside 0..<{self._n}")
        out = []
        i = 0
        pend = self._cols["payload_end"]
        while i < len(positions):
            lo = int(positions[i])
            j = int(np.searchsorted(positions, lo + block_rows, side="left"))
            hi = int(positions[j - 1]) + 1
            sel = positions[i:j] - lo
            ends = pend[lo:hi].astype(np.int64, copy=False)
            first = int(pend[lo - 1]) if lo > 0 else 0
            starts = np.concatenate(([first], ends[:-1]))
            span = int(ends[-1]) - first
            wanted = int((ends[sel] - starts[sel]).sum())
            if span <= block_bytes and (span <= max(4 * wanted, 1 << 20) or hi - lo == len(sel)):
                out.append(self._read(lo, hi).take(sel))
            else:
                out.append(self._read_points(positions[i:j], starts[sel], ends[sel]))
            i = j
        return Columns.concat(out)

    def _read_points(self, positions: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> Columns:
        offsets = np.zeros(len(positions) + 1, dtype=np.int64)
        np.cumsum(ends - starts, out=offsets[1:])
        total = int(offsets[-1])
        payload = np.empty(total, dtype=np.uint8)
        if total:
            ds = self._payload
            fspace = ds.id.get_space()
            fspace.select_none()
            # Coalesce touching ranges, then one OR-ed hyperslab per range.
            keep = ends > starts
            s, e = starts[keep], ends[keep]
            brk = np.flatnonzero(s[1:] != e[:-1]) + 1
            for a, b in zip(np.concatenate(([0], brk)).tolist(), np.concatenate((brk, [len(s)])).tolist()):
                fspace.select_hyperslab((int(s[a]),), (int(e[b - 1] - s[a]),), op=h5py.h5s.SELECT_OR)
            ds.id.read(h5py.h5s.create_simple((total,)), fspace, payload)
        idx = positions.tolist()
        return Columns(self._cols["consultation_id"][idx], self._cols["stream_id"][idx],
                       self._cols["received_at_ms"][idx], offsets, payload, positions.copy(),
                       self._epochs(idx, len(idx)))

    def by_consultation(self, consultation_id: str, block: int = 262144) -> List[Row]:
        """Every row of one consultation, in stream order."""
        return self.take(self.consultation_positions(consultation_id, block)).rows()

    # -- lifecycle ------------------------------------------------------------
    def close(self) -> None:
        if self._h is not None:
            h, self._h = self._h, None
            _release(h)

    def __enter__(self) -> "Corpus":
        return self

    def __del__(self) -> None:
        # A Corpus dropped without close(): its handle is released at the next open or close
        # (not here: __del__ may run inside the garbage collector, at any point of any thread).
        h = getattr(self, "_h", None)
        if h is not None:
            self._h = None
            _DEFERRED.append(h)

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<fi_corpus.Corpus {self.path!r} rows={self._n}>"


def open(path, swmr: bool = True, partition: Optional[str] = None):  # noqa: A001
    """Open a corpus for reading: one file (a :class:`Corpus`), or a partition directory of segment
    files (a :class:`~fi_corpus.segments.Partition`, Docs/contract.md §5 layout 2).
    ``swmr=True`` works for live, crashed and closed files."""
    if os.path.isdir(os.fspath(path)):
        from .segments import Partition
        return Partition(path, partition=partition, swmr=swmr)
    return Corpus(path, swmr=swmr, partition=partition)
