"""Read an FI Scale corpus (``corpus.h5``, CONTRACT §5) with h5py.

Three lines::

    import fi_corpus
    with fi_corpus.open("storage/p0007/corpus.h5") as corpus:
        rows = list(corpus)            # or: for row in corpus: row.json()

Works on a file that a worker is writing right now (SWMR) or that was left by a
crashed worker: only whole rows are returned (see ``Corpus.refresh``).
Needs h5py and numpy (Debian: ``apt install python3-h5py``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterator, List, Optional

import h5py
import numpy as np

__all__ = ["Row", "Corpus", "open"]

ROW_COLUMNS = ("consultation_id", "stream_id", "received_at_ms", "payload_end")


@dataclass(frozen=True)
class Row:
    """One stored event."""

    consultation_id: str
    stream_id: str
    received_at_ms: int
    payload: bytes  # the event JSON, byte for byte as queued

    def text(self) -> str:
        return self.payload.decode("utf-8")

    def json(self):
        return json.loads(self.payload)


def _stream_key(stream_id: str):
    ms, seq = stream_id.split("-", 1)
    return int(ms), int(seq)


class Corpus:
    """A corpus file opened read-only (SWMR, so a live writer is fine)."""

    def __init__(self, path, swmr: bool = True):
        self.path = str(path)
        self._file = h5py.File(self.path, "r", swmr=swmr, locking=False) if _has_locking_arg() \
            else h5py.File(self.path, "r", swmr=swmr)
        events = self._file["events"]
        self._cols = {name: events[name] for name in ROW_COLUMNS}
        self._payload = events["payload"]
        self._swmr = swmr
        self._n = 0
        self.refresh()

    # -- size -----------------------------------------------------------------
    def refresh(self) -> int:
        """Pick up rows appended since; return the number of whole rows.

        n = the shortest of the four row columns, lowered while
        payload_end[n-1] > len(payload): HDF5 may publish one dataset's growth
        before another's.
        """
        if self._swmr:
            for ds in (*self._cols.values(), self._payload):
                ds.refresh()
        n = min(len(ds) for ds in self._cols.values())
        size = len(self._payload)
        ends = self._cols["payload_end"]
        while n > 0 and int(ends[n - 1]) > size:
            n -= 1
        self._n = n
        return n

    def __len__(self) -> int:
        return self._n

    # -- reading --------------------------------------------------------------
    def rows(self, start: int = 0, stop: Optional[int] = None, block: int = 65536) -> Iterator[Row]:
        """Rows [start, stop) in stream order, read in blocks."""
        stop = self._n if stop is None else max(0, min(stop, self._n))
        start = max(0, start)
        while start < stop:
            end = min(stop, start + block)
            yield from self._block(start, end)
            start = end

    __iter__ = rows

    def _block(self, lo: int, hi: int) -> List[Row]:
        if hi <= lo:
            return []
        cids = self._cols["consultation_id"][lo:hi]
        sids = self._cols["stream_id"][lo:hi]
        times = self._cols["received_at_ms"][lo:hi]
        ends = self._cols["payload_end"][lo:hi].astype(np.int64)
        first = int(self._cols["payload_end"][lo - 1]) if lo > 0 else 0
        data = self._payload[first:int(ends[-1])].tobytes()
        out, prev = [], first
        for i in range(hi - lo):
            end = int(ends[i])
            out.append(Row(cids[i].decode("utf-8"), sids[i].decode("ascii"), int(times[i]),
                           data[prev - first:end - first]))
            prev = end
        return out

    def row(self, i: int) -> Row:
        if not 0 <= i < self._n:
            raise IndexError(i)
        return self._block(i, i + 1)[0]

    def after(self, stream_id: Optional[str], limit: Optional[int] = None) -> List[Row]:
        """Rows whose stream id is above ``stream_id`` (binary search)."""
        lo, hi = 0, self._n
        if stream_id is not None:
            key = _stream_key(stream_id)
            sids = self._cols["stream_id"]
            while lo < hi:
                mid = (lo + hi) // 2
                if _stream_key(sids[mid].decode("ascii")) <= key:
                    lo = mid + 1
                else:
                    hi = mid
        stop = self._n if limit is None else min(self._n, lo + limit)
        return list(self.rows(lo, stop))

    def by_consultation(self, consultation_id: str, block: int = 262144) -> List[Row]:
        """Every row of one consultation (a vectorised scan of consultation_id)."""
        want = consultation_id.encode("utf-8")
        col = self._cols["consultation_id"]
        out = []
        for lo in range(0, self._n, block):
            hi = min(self._n, lo + block)
            for i in np.nonzero(col[lo:hi] == want)[0]:
                out.append(self._block(lo + int(i), lo + int(i) + 1)[0])
        return out

    # -- lifecycle ------------------------------------------------------------
    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "Corpus":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _has_locking_arg() -> bool:
    # h5py >= 3.5 accepts locking=; older versions take HDF5_USE_FILE_LOCKING from the environment.
    try:
        major, minor = (int(x) for x in h5py.__version__.split(".")[:2])
        return (major, minor) >= (3, 5)
    except ValueError:
        return False


def open(path, swmr: bool = True) -> Corpus:  # noqa: A001 - mirrors h5py.File / builtins.open
    """Open a corpus for reading. ``swmr=True`` works for live, crashed and closed files."""
    return Corpus(path, swmr=swmr)
