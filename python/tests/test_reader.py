"""The reader on files written here with h5py in the corpus layout: reading rule, columns, frames,
time windows, lookups and the clear errors. (The Swift-written corpora are in the other tests.)"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

import fi_corpus
from fi_corpus.corpus import Columns

from conftest import have
from h5writer import CorpusFileWriter, _write, write_corpus

BASE = 1_700_000_000_000


def sid(i):
    return f"{BASE + i}-{i % 3}"


def cid(i):
    return f"c-{i % 11}"


def payload(i):
    return ('{"i":%d,"metadata":{"site_id":"a"},"text":"é€%s"}' % (i, "z" * (i % 50))).encode()


def received(i):
    # Nearly sorted, as a server's receive time is: small steps back now and then.
    return 1_000_000 + 10 * i - (7 if i % 17 == 5 else 0)


def rows_for(n):
    return [(cid(i), sid(i), received(i), payload(i)) for i in range(n)]


@pytest.fixture
def corpus_path(tmp_path):
    path = tmp_path / "store" / "site_a" / "corpus.h5"
    write_corpus(str(path), rows_for(2000), batch=300)
    return path


def check_row(row, i):
    assert (row.consultation_id, row.stream_id, row.received_at_ms, row.payload) == \
        (cid(i), sid(i), received(i), payload(i)), i


def test_legacy_api(corpus_path):
    with fi_corpus.open(str(corpus_path)) as corpus:
        rows = list(corpus)
        assert len(rows) == len(corpus) == 2000
        for i, r in enumerate(rows):
            check_row(r, i)
        assert rows[3].json()["i"] == 3 and rows[3].text().startswith('{"i":3')
        assert [r.stream_id for r in corpus.by_consultation(cid(5))] == [sid(i) for i in range(5, 2000, 11)]
        assert [r.stream_id for r in corpus.after(sid(99), limit=3)] == [sid(100), sid(101), sid(102)]
        assert corpus.row(1999).stream_id == sid(1999)
        assert corpus.after(sid(1999)) == []
        assert len(corpus.after(None)) == 2000
        with pytest.raises(IndexError):
            corpus.row(2000)


def test_columns_and_blocks(corpus_path):
    with fi_corpus.open(corpus_path) as c:
        cols = c.columns()
        assert len(cols) == 2000 and cols.payload_offsets[0] == 0
        assert cols.payload_at(7) == payload(7)
        assert cols.received_at_ms.dtype == np.int64
        # Small blocks by rows and by bytes give the same rows.
        for block_rows, block_bytes in ((1, 1 << 20), (97, 1 << 20), (5000, 300), (5000, 1)):
            blocks = list(c.iter_columns(block_rows=block_rows, block_bytes=block_bytes))
            assert max(len(b) for b in blocks) <= block_rows
            joined = Columns.concat(blocks)
            assert joined.stream_id.tolist() == cols.stream_id.tolist()
            assert joined.payload.tobytes() == cols.payload.tobytes()
            assert joined.payload_offsets.tolist() == cols.payload_offsets.tolist()
        part = c.columns(-10, None)
        assert part.row_index.tolist() == list(range(1990, 2000))
        assert part.rows()[0].stream_id == sid(1990)
        assert len(c.columns(5, 5)) == 0 and len(c.columns(1500, 10)) == 0


@pytest.mark.parametrize("lo,hi", [(None, None), (1_000_000, 1_000_050), (1_005_000, 1_012_345),
                                   (None, 1_000_100), (1_019_000, None), (0, 1), (2_000_000, None)])
def test_time_windows(corpus_path, lo, hi):
    want = [i for i in range(2000) if (lo is None or received(i) >= lo) and (hi is None or received(i) < hi)]
    with fi_corpus.open(corpus_path) as c:
        for block_rows in (64, 65536):
            blocks = list(c.iter_columns(start_ms=lo, end_ms=hi, block_rows=block_rows, block_bytes=5000))
            assert all(len(b) for b in blocks)  # no empty blocks (an export would write blank lines)
            got = Columns.concat(blocks)
            assert got.row_index.tolist() == want
            for r, i in zip(got.rows(), want):
                check_row(r, i)
        assert [r.stream_id for r in c.rows(start_ms=lo, end_ms=hi)] == [sid(i) for i in want]
        assert c.window(lo, hi).row_index.tolist() == want


def test_window_on_unsorted_times(tmp_path):
    """received_at_ms out of order (a late row): the window is a filter, not a range."""
    path = tmp_path / "u" / "corpus.h5"
    times = [50, 10, 30, 20, 40, 10, 60, 5, 35, 70]
    write_corpus(str(path), [(cid(i), sid(i), t, payload(i)) for i, t in enumerate(times)])
    with fi_corpus.open(path) as c:
        for block_rows in (1, 2, 3, 100):
            blocks = list(c.iter_columns(start_ms=20, end_ms=45, block_rows=block_rows, block_bytes=40))
            assert all(len(b) for b in blocks)
            got = Columns.concat(blocks)
            assert got.row_index.tolist() == [2, 3, 4, 8]
            assert got.received_at_ms.tolist() == [30, 20, 40, 35]
            assert [got.payload_at(k) for k in range(4)] == [payload(i) for i in (2, 3, 4, 8)]
        assert c.received_range() == (5, 70)


def test_take_dense_and_sparse(tmp_path):
    path = tmp_path / "t" / "corpus.h5"
    big = [(cid(i), sid(i), i, payload(i) * (40 if i % 2 else 1)) for i in range(3000)]
    write_corpus(str(path), big, batch=500)
    with fi_corpus.open(path) as c:
        for positions in ([0], [2999], [5, 6, 7, 9], list(range(0, 3000, 997)), list(range(0, 3000, 3)),
                          [1, 2999], []):
            got = c.take(positions)
            assert got.row_index.tolist() == positions
            assert [got.payload_at(k) for k in range(len(positions))] == [big[i][3] for i in positions]
            assert got.stream_id.tolist() == [big[i][1].encode() for i in positions]
        # block_bytes small: every group goes through point selections.
        got = c.take([3, 400, 401, 402, 2500], block_bytes=10)
        assert [got.payload_at(k) for k in range(5)] == [big[i][3] for i in (3, 400, 401, 402, 2500)]
        with pytest.raises(IndexError):
            c.take([3000])


def test_frames(corpus_path):
    pd = pytest.importorskip("pandas")
    pa = pytest.importorskip("pyarrow")
    with fi_corpus.open(corpus_path, partition="site_a") as c:
        df = c.to_pandas()
        assert list(df.columns) == ["consultation_id", "stream_id", "received_at_ms", "epoch", "payload"]
        assert len(df) == 2000
        assert df.payload[17] == payload(17) and isinstance(df.payload[17], bytes)
        assert df.consultation_id[17] == cid(17) and df.stream_id[17] == sid(17)
        assert df.received_at_ms.dtype == np.int64 and df.received_at_ms[17] == received(17)
        dn = c.to_pandas(dtype_backend="numpy")
        assert dn.payload.tolist() == df.payload.tolist()
        assert dn.consultation_id.tolist() == df.consultation_id.tolist()
        text = c.to_pandas(payload="text")
        assert text.payload[3] == payload(3).decode()
        js = c.to_pandas(payload="json")
        assert "payload" not in js.columns
        assert js["i"].tolist() == list(range(2000))
        assert set(js["metadata.site_id"]) == {"a"}
        assert js["text"][2] == "é€zz"
        picked = c.to_pandas(payload="json", json_fields=["text", "i", "nothing"])
        assert list(picked.columns)[-3:] == ["text", "i", "nothing"]
        win = c.to_pandas(start_ms=1_000_100, end_ms=1_000_200)
        assert win.stream_id.tolist() == [sid(i) for i in range(2000) if 1_000_100 <= received(i) < 1_000_200]
        with_part = c.to_pandas(partition_column=True, payload="none")
        assert list(with_part.columns) == ["partition", "consultation_id", "stream_id", "received_at_ms", "epoch"]
        assert set(with_part.partition) == {"site_a"}
        t = c.to_arrow()
        assert t.schema.names == ["consultation_id", "stream_id", "received_at_ms", "epoch", "payload"]
        assert t.column("payload").type == pa.large_binary()
        assert t.column("payload")[5].as_py() == payload(5)
        assert t.column("consultation_id").type == pa.string()
        assert c.to_arrow(payload="string").column("payload")[5].as_py() == payload(5).decode()
        assert c.to_arrow(partition_column=True).column("partition")[0].as_py() == "site_a"


def test_frames_with_the_payload_read_in_another_thread(corpus_path, monkeypatch):
    pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    with fi_corpus.open(corpus_path) as c:
        plain_df, plain_t = c.to_pandas(), c.to_arrow()
        monkeypatch.setattr(fi_corpus.corpus, "OVERLAP_MIN_BYTES", 0)
        df, t = c.to_pandas(), c.to_arrow()
        assert df.equals(plain_df) and t.equals(plain_t)
        assert df.payload.tolist() == [payload(i) for i in range(2000)]
        assert c.to_pandas(100, 300).stream_id.tolist() == [sid(i) for i in range(100, 300)]


def test_json_field_named_like_a_row_column(tmp_path):
    pytest.importorskip("pandas")
    path = tmp_path / "j" / "corpus.h5"
    write_corpus(str(path), [("c-1", sid(0), 1, b'{"consultation_id":"other","x":1}'),
                             ("c-1", sid(1), 2, b'{"x":2}')])
    with fi_corpus.open(path) as c:
        df = c.to_pandas(payload="json")
    assert df["consultation_id"].tolist() == ["c-1", "c-1"]
    assert df["event.consultation_id"].tolist()[0] == "other"
    assert df["x"].tolist() == [1, 2]


def test_empty_rows_and_empty_file(tmp_path):
    path = tmp_path / "e" / "corpus.h5"
    write_corpus(str(path), [("c-1", sid(0), 1, b""), ("c-1", sid(1), 2, b"{}"), ("c-2", sid(2), 3, b"")])
    with fi_corpus.open(path) as c:
        assert [r.payload for r in c] == [b"", b"{}", b""]
        assert c.take([0, 2]).rows()[1].payload == b""
    empty = tmp_path / "z" / "corpus.h5"
    CorpusFileWriter(str(empty)).close()
    with fi_corpus.open(empty) as c:
        assert len(c) == 0 and list(c) == [] and c.received_range() is None
        assert len(c.columns()) == 0
        if have("pandas", "pyarrow"):
            assert len(c.to_pandas()) == 0


def _torn(path, n_rows, cut):
    """Write n_rows whole rows, then tear the file the way a crash can."""
    w = CorpusFileWriter(str(path))
    w.append(rows_for(n_rows))
    f = w.file
    e = f["events"]
    if cut == "row-columns":
        # One more row in some columns only (HDF5 published their growth first).
        e["consultation_id"].resize((n_rows + 1,))
        e["stream_id"].resize((n_rows + 1,))
    elif cut == "payload-short":
        # payload_end grew, payload did not.
        for name in ("consultation_id", "stream_id", "received_at_ms", "payload_end"):
            e[name].resize((n_rows + 2,))
        _write(e["consultation_id"], n_rows, np.array([b"c-x", b"c-y"], dtype="S128"))
        _write(e["stream_id"], n_rows, np.array([sid(n_rows).encode(), sid(n_rows + 1).encode()], dtype="S41"))
        e["received_at_ms"][n_rows:] = [1, 2]
        end = int(e["payload_end"][n_rows - 1])
        e["payload_end"][n_rows:] = [end + 10, end + 20]
        e["payload"].resize((end + 15,))
        e["payload"][end:end + 15] = np.frombuffer(b"x" * 15, np.uint8)
    elif cut == "unwritten-cells":
        # Extents published, cells never written (fill time never: they read back as zeros).
        for name in ("consultation_id", "stream_id", "received_at_ms", "payload_end"):
            e[name].resize((n_rows + 3,))
        e["payload_end"][n_rows:] = [0, 0, 0]
    f.flush()
    f.close()


@pytest.mark.parametrize("cut", ["row-columns", "payload-short", "unwritten-cells"])
def test_reading_rule_returns_whole_rows_only(tmp_path, cut):
    path = tmp_path / "torn" / "corpus.h5"
    _torn(path, 123, cut)
    # payload-short: row 123's bytes are all there (whole), row 124's are cut.
    whole = 124 if cut == "payload-short" else 123
    with fi_corpus.open(path) as c:
        assert len(c) == whole
        rows = list(c)
        for i, r in enumerate(rows[:123]):
            check_row(r, i)
        if cut == "payload-short":
            assert rows[123] == fi_corpus.Row("c-x", sid(123), 1, b"x" * 10)
        if have("pandas", "pyarrow"):
            assert len(c.to_pandas()) == whole


def test_store_open_errors(tmp_path):
    with pytest.raises(fi_corpus.NotACorpusError, match="does not exist"):
        fi_corpus.open_store(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(fi_corpus.NotACorpusError, match="not a corpus store"):
        fi_corpus.open_store(tmp_path / "empty")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(fi_corpus.NotACorpusError, match="not a directory"):
        fi_corpus.open_store(tmp_path / "file.txt")
    write_corpus(str(tmp_path / "s" / "site_a" / "corpus.h5"), rows_for(3))
    with pytest.raises(fi_corpus.NotACorpusError, match="the store is its parent"):
        fi_corpus.open_store(tmp_path / "s" / "site_a")
    with pytest.raises(fi_corpus.NotACorpusError, match="fi_corpus.open"):
        fi_corpus.open_store(tmp_path / "s" / "site_a" / "corpus.h5")


def test_corpus_file_errors(tmp_path):
    garbage = tmp_path / "g" / "corpus.h5"
    garbage.parent.mkdir()
    garbage.write_bytes(b"not hdf5 at all" * 100)
    with pytest.raises(fi_corpus.NotACorpusError, match="not an HDF5 file"):
        fi_corpus.open(garbage)
    other = tmp_path / "o" / "corpus.h5"
    other.parent.mkdir()
    with h5py.File(other, "w", libver="latest") as f:
        f.create_dataset("x", data=[1, 2])
    with pytest.raises(fi_corpus.NotACorpusError, match=r"no /events group"):
        fi_corpus.open(other)
    wrong = tmp_path / "w" / "corpus.h5"
    wrong.parent.mkdir()
    with h5py.File(wrong, "w", libver="latest") as f:
        g = f.create_group("events")
        for name in ("consultation_id", "stream_id", "received_at_ms", "payload_end", "payload"):
            g.create_dataset(name, data=np.zeros(3, np.float32))
    with pytest.raises(fi_corpus.NotACorpusError, match="the contract says"):
        fi_corpus.open(wrong)
    with pytest.raises(fi_corpus.NotACorpusError, match="does not exist"):
        fi_corpus.open(tmp_path / "none" / "corpus.h5")


HOLDER = r"""
import sys, h5py
f = h5py.File(sys.argv[1], "w", libver="latest")   # no SWMR: readers cannot open it yet
f.flush()
print("ready", flush=True)
sys.stdin.read()
f.close()
"""


def hold_open(path: Path):
    """A process that creates ``path`` with h5py and keeps it open for writing, without SWMR."""
    path.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"ready"
    return proc


def release(proc):
    proc.stdin.close()
    proc.wait(timeout=30)
    proc.stdout.close()


def test_file_another_process_is_creating(tmp_path):
    root = tmp_path / "store"
    write_corpus(str(root / "site_a" / "corpus.h5"), rows_for(5))
    # 1. FIStorage creates under corpus.h5.creating and renames: only the .creating file exists.
    (root / "site_b").mkdir()
    (root / "site_b" / "corpus.h5.creating").write_bytes(b"")
    # 2. Another program holds corpus.h5 open for writing without SWMR.
    proc = hold_open(root / "site_c" / "corpus.h5")
    try:
        store = fi_corpus.open_store(root)
        assert store.partition_keys() == ["site_a", "site_b", "site_c"]
        assert {i.key: i.status for i in store.info()} == \
            {"site_a": "ok", "site_b": "being created", "site_c": "being created"}
        assert store.row_counts() == {"site_a": 5, "site_b": 0, "site_c": 0}
        for key in ("site_b", "site_c"):
            with pytest.raises(fi_corpus.CorpusBeingCreatedError, match="another process") as err:
                store.open(key)
            assert "\n" not in str(err.value)
    finally:
        release(proc)
    # Closed, it is an HDF5 file without /events: not a corpus (no writer has it any more).
    with pytest.raises(fi_corpus.NotACorpusError, match="no /events group"):
        fi_corpus.open(root / "site_c" / "corpus.h5")
    assert {i.key: i.status for i in fi_corpus.open_store(root).info()}["site_c"] == "not a corpus"


def test_store_partitions_and_consultation(tmp_path):
    root = tmp_path / "store"
    ids = [f"visit-{k}" for k in range(40)]
    by_key = {}
    for k, c_id in enumerate(ids):
        key = fi_corpus.partition_key(c_id, None, 5)
        by_key.setdefault(key, []).append((c_id, sid(k), k, b'{"k":%d}' % k))
    by_key.setdefault("site_a", []).append(("visit-0", sid(100), 100, b'{"site":1}'))
    for key, rows in by_key.items():
        write_corpus(str(root / key / "corpus.h5"), rows)
    (root / "not_a_partition").mkdir()
    (root / "site_d.bak").mkdir()
    store = fi_corpus.open_store(root, partitions=5)
    keys = store.partition_keys()
    assert keys == sorted(keys, key=lambda k: (k.startswith("site_"), int(k[10:]) if k.startswith("partition_") else 0, k))
    assert "not_a_partition" not in keys and keys[-1] == "site_a"
    assert sum(store.row_counts().values()) == 41
    assert store.consultation("visit-7")[0].payload == b'{"k":7}'
    assert [r.payload for r in store.consultation("visit-0", site_id="a")] == [b'{"site":1}']
    assert store.consultation("visit-0", site_id="")[0].payload == b'{"k":0}'
    assert store.consultation("visit-999") == [] or True  # its partition may or may not exist
    with pytest.raises(fi_corpus.PartitionNotFoundError, match="site_zz does not exist"):
        store.consultation("visit-0", site_id="zz")
    with pytest.raises(fi_corpus.InvalidIdentifierError):
        store.consultation("visit/0")
    with pytest.raises(fi_corpus.InvalidIdentifierError):
        store.consultation("visit-0", site_id="../etc")
    with pytest.raises(fi_corpus.InvalidIdentifierError):
        store.open("../site_a")
    # N is inferred from partition_<n> directories when not given (at least the default 3).
    inferred = fi_corpus.open_store(root)
    numbers = [int(k.split("_")[1]) for k in keys if k.startswith("partition_")]
    assert inferred.partitions == max([3] + [n + 1 for n in numbers])
    # The whole store at once.
    if have("pandas", "pyarrow"):
        df = store.to_pandas()
        assert len(df) == 41 and set(df.partition) == set(keys)
        assert store.to_arrow().num_rows == 41


APPENDER = r"""
import sys
sys.path.insert(0, sys.argv[2])
from h5writer import CorpusFileWriter
from test_reader import rows_for
w = CorpusFileWriter(sys.argv[1])
n = 0
for line in sys.stdin:
    k = int(line)
    w.append(rows_for(n + k)[n:])
    w.flush()
    n += k
    print("ok", flush=True)
w.close()
"""


def test_follow_h5py_writer(tmp_path):
    """follow() on a file an h5py SWMR writer (another process) appends to; the Swift writer is in
    test_crash.py."""
    root = tmp_path / "store"
    tests_dir = str(Path(__file__).resolve().parent)
    proc = subprocess.Popen([sys.executable, "-c", APPENDER, str(root / "site_a" / "corpus.h5"), tests_dir],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def append(k):
        proc.stdin.write(f"{k}\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "ok"

    try:
        append(10)
        store = fi_corpus.open_store(root)
        it = store.follow("site_a", poll_interval=0.01, timeout=30)
        got = [next(it) for _ in range(10)]
        for k in range(1, 6):
            append(7)
            got += [next(it) for _ in range(7)]
        it.close()
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
        proc.stdout.close()
    for i, r in enumerate(got):
        check_row(r, i)
    # start / after / max_rows / idle_timeout
    assert [r.stream_id for r in store.follow("site_a", start=-3, idle_timeout=0.2, poll_interval=0.05)] == \
        [sid(i) for i in range(42, 45)]
    assert [r.stream_id for r in store.follow("site_a", after=sid(40), max_rows=2)] == [sid(41), sid(42)]
    t0 = time.monotonic()
    assert list(store.follow("site_a", start=45, timeout=0.3, poll_interval=0.05)) == []
    assert time.monotonic() - t0 < 5
    with pytest.raises(ValueError):
        next(store.follow("site_a", poll_interval=0))
    with pytest.raises(fi_corpus.PartitionNotFoundError):
        next(store.follow("site_b", timeout=1))


def test_corpora_on_one_file_share_one_handle_and_a_forked_child_opens_its_own(corpus_path):
    import multiprocessing
    from fi_corpus import corpus as fc
    a = fi_corpus.open(corpus_path)
    b = fi_corpus.open(str(corpus_path))
    assert a._h is b._h and a._h.refs == 2
    a.close()
    assert b._h.refs == 1 and len(b) == 2000 and b.row(5).stream_id == sid(5)
    c = fi_corpus.open(corpus_path)
    del c  # dropped without close(): released at the next open or close
    if hasattr(os, "fork"):
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(1) as pool:
            assert pool.apply(_rows_in_child, (str(corpus_path),)) == (2000, sid(1999))
    b.close()
    d = fi_corpus.open(corpus_path)
    d.close()
    assert os.path.realpath(corpus_path) not in fc._HANDLES


def _rows_in_child(path):
    with fi_corpus.open(path) as c:
        return len(c), c.row(len(c) - 1).stream_id
