"""A small h5py writer of the corpus layout (Docs/contract.md §5, Docs/storage.md), for unit tests
and the benchmark: same types, chunking, libver and SWMR mode as FIStorage. It does not do
FIStorage's durability or recovery; the tests that need the real writer use the Swift binaries."""
from __future__ import annotations

import os
from typing import Iterable, Optional, Sequence, Tuple

import h5py
import numpy as np

ROW_CHUNK = 8192
PAYLOAD_CHUNK = 1 << 20


def _make(group, name: str, dtype: np.dtype, chunk: int) -> h5py.Dataset:
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_chunk((chunk,))
    dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
    space = h5py.h5s.create_simple((0,), (h5py.h5s.UNLIMITED,))
    if dtype.kind == "S":
        tid = h5py.h5t.C_S1.copy()
        tid.set_size(dtype.itemsize)
        tid.set_strpad(h5py.h5t.STR_NULLPAD)
        tid.set_cset(h5py.h5t.CSET_UTF8 if name == "consultation_id" else h5py.h5t.CSET_ASCII)
    else:
        tid = h5py.h5t.py_create(dtype, logical=True)
    dsid = h5py.h5d.create(group.id, name.encode(), tid, space, dcpl=dcpl)
    return h5py.Dataset(dsid)


def _write(ds: h5py.Dataset, start: int, values: np.ndarray) -> None:
    # The file type as memory type: HDF5 has no ASCII -> UTF-8 string conversion.
    fspace = ds.id.get_space()
    fspace.select_hyperslab((start,), (len(values),))
    ds.id.write(h5py.h5s.create_simple((len(values),)), fspace, np.ascontiguousarray(values),
                mtype=ds.id.get_type())


class CorpusFileWriter:
    """Appends rows ``(consultation_id, stream_id, received_at_ms, payload bytes[, epoch])``.

    ``epoch_column=True`` adds the ``epoch`` row column (uint64) as FIStorage does since the
    fence; without it the file is laid out as before (its rows read as epoch 0)."""

    def __init__(self, path: str, swmr: bool = True, row_chunk: int = ROW_CHUNK,
                 payload_chunk: int = PAYLOAD_CHUNK, epoch_column: bool = False):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.file = h5py.File(path, "w", libver="latest")
        g = self.file.create_group("events")
        self.cid = _make(g, "consultation_id", np.dtype("S128"), row_chunk)
        self.sid = _make(g, "stream_id", np.dtype("S41"), row_chunk)
        self.rat = _make(g, "received_at_ms", np.dtype("<i8"), row_chunk)
        self.epoch = _make(g, "epoch", np.dtype("<u8"), row_chunk) if epoch_column else None
        self.pend = _make(g, "payload_end", np.dtype("<u8"), row_chunk)
        self.pay = _make(g, "payload", np.dtype("u1"), payload_chunk)
        if swmr:
            self.file.swmr_mode = True
        self.rows = 0
        self.nbytes = 0

    def append_arrays(self, cids: np.ndarray, sids: np.ndarray, times: np.ndarray,
                      lengths: np.ndarray, blob: np.ndarray, epochs: Optional[np.ndarray] = None) -> None:
        k = len(cids)
        if k == 0:
            return
        ends = self.nbytes + np.cumsum(lengths.astype(np.uint64), dtype=np.uint64)
        self.pay.resize((self.nbytes + len(blob),))
        if len(blob):
            _write(self.pay, self.nbytes, blob)
        columns = [(self.cid, cids.astype("S128")), (self.sid, sids.astype("S41")), (self.rat, times.astype(np.int64))]
        if self.epoch is not None:
            columns.append((self.epoch, np.zeros(k, np.uint64) if epochs is None else epochs.astype(np.uint64)))
        for ds, values in (*columns, (self.pend, ends)):
            ds.resize((self.rows + k,))
            _write(ds, self.rows, values)
        self.rows += k
        self.nbytes += len(blob)

    def append(self, rows: Sequence[Tuple[str, str, int, bytes]]) -> None:
        rows = list(rows)
        if not rows:
            return
        blob = b"".join(r[3] for r in rows)
        self.append_arrays(
            np.array([r[0].encode("utf-8") for r in rows], dtype="S128"),
            np.array([r[1].encode("ascii") for r in rows], dtype="S41"),
            np.array([r[2] for r in rows], dtype=np.int64),
            np.array([len(r[3]) for r in rows], dtype=np.uint64),
            np.frombuffer(blob, dtype=np.uint8),
            np.array([r[4] if len(r) > 4 else 0 for r in rows], dtype=np.uint64))

    def flush(self) -> None:
        self.file.flush()

    def close(self) -> None:
        self.file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def write_corpus(path: str, rows: Iterable[Tuple], batch: int = 1000,
                 swmr: bool = True, epoch_column: bool = False) -> int:
    n = 0
    with CorpusFileWriter(path, swmr=swmr, epoch_column=epoch_column) as w:
        chunk = []
        for r in rows:
            chunk.append(r)
            if len(chunk) >= batch:
                w.append(chunk)
                n += len(chunk)
                chunk = []
        w.append(chunk)
        n += len(chunk)
    return n


_POOL = {}


def _text_pool(seed: int = 7, size: int = 32 << 20) -> bytes:
    """32 MB of word salad from a 4,000-word Zipf vocabulary: compresses like prose (zstd ~3x),
    not like one repeated sentence."""
    if seed not in _POOL:
        rng = np.random.default_rng(seed)
        letters = np.frombuffer(b"etaoinshrdlcumwfgypbvkjxqz", np.uint8)
        weights = 1.0 / np.arange(1, 27)
        weights /= weights.sum()
        words = [bytes(rng.choice(letters, size=int(k), p=weights)) for k in rng.integers(2, 11, size=4000)]
        ranks = 1.0 / np.arange(1, 4001) ** 1.1
        picks = rng.choice(4000, size=size // 6, p=ranks / ranks.sum())
        _POOL[seed] = b" ".join(words[i] for i in picks.tolist())[:size]
    return _POOL[seed]


def synthetic_payloads(n: int, payload_bytes: int, site: Optional[str] = None,
                       seed: int = 1) -> Tuple[np.ndarray, np.ndarray]:
    """``n`` JSON events of about ``payload_bytes`` each (sizes vary +-25 %), as (lengths, flat bytes):
    ``{"metadata":{"site_id":…},"text":"<a slice of word salad>"}``."""
    rng = np.random.default_rng(seed)
    pool = _text_pool()
    meta = b'{"metadata":{"site_id":"%s"},"text":"' % (site or "a").encode()
    sizes = rng.integers(int(payload_bytes * 0.75), int(payload_bytes * 1.25) + 1, size=n)
    starts = rng.integers(0, len(pool) - int(sizes.max()) - 1, size=n)
    parts = []
    lengths = np.empty(n, dtype=np.uint64)
    for i, (size, start) in enumerate(zip(sizes.tolist(), starts.tolist())):
        body = meta + pool[start:start + max(0, size - len(meta) - 2)] + b'"}'
        parts.append(body)
        lengths[i] = len(body)
    return lengths, np.frombuffer(b"".join(parts), dtype=np.uint8)
