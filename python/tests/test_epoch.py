"""The ``epoch`` row column (Docs/contract.md §5): the lease epoch of the writer that stored each row.
Optional — a file without it reads as epoch 0 — and, when present, one of the row columns of the
reading rule. Read here from files written with h5py, and from partitions the Swift writer wrote
with fencing epochs (FIStorageCrashWriter ``epoch=N``)."""
import json
import subprocess

import h5py
import numpy as np
import pytest

import fi_corpus

from conftest import (check_crash_row, crash_consultation_id, crash_payload, crash_stream_id, have,
                      require_binary)
from h5writer import CorpusFileWriter, write_corpus
from test_cli import run

BASE = 1_700_000_000_000


def sid(i):
    return f"{BASE + i}-0"


def rows_with_epochs(n, epoch_of):
    return [(f"c-{i % 7}", sid(i), 1000 + i, b'{"i":%d}' % i, epoch_of(i)) for i in range(n)]


def epoch_of(i):
    return 3 if i < 40 else 2 ** 63 + 5  # uint64 beyond int64


def test_epoch_everywhere_rows_and_columns_are_returned(tmp_path):
    path = tmp_path / "s" / "site_a" / "corpus.h5"
    write_corpus(str(path), rows_with_epochs(100, epoch_of), batch=30, epoch_column=True)
    want = [epoch_of(i) for i in range(100)]
    with fi_corpus.open(path, partition="site_a") as c:
        assert c.has_epoch
        assert [r.epoch for r in c] == want
        cols = c.columns()
        assert cols.epoch.dtype == np.uint64 and cols.epoch.tolist() == want
        assert [b.epoch.tolist() for b in c.iter_columns(block_rows=17)] == [want[i:i + 17] for i in range(0, 100, 17)]
        assert c.take([1, 39, 40, 99]).epoch.tolist() == [want[i] for i in (1, 39, 40, 99)]
        assert c.take([2, 97], block_bytes=1).epoch.tolist() == [want[2], want[97]]  # point selections
        assert [r.epoch for r in c.by_consultation("c-3")] == [want[i] for i in range(100) if i % 7 == 3]
        assert [r.epoch for r in c.after(sid(38), limit=3)] == want[39:42]
        assert c.row(40) == fi_corpus.Row("c-5", sid(40), 1040, b'{"i":40}', 2 ** 63 + 5)
        assert fi_corpus.Columns.concat([c.columns(0, 10), c.columns(90, 100)]).epoch.tolist() == want[:10] + want[90:]
        if have("pandas", "pyarrow"):
            import pyarrow as pa
            for backend in ("pyarrow", "numpy"):
                df = c.to_pandas(dtype_backend=backend)
                assert list(df.columns) == ["consultation_id", "stream_id", "received_at_ms", "epoch", "payload"]
                assert df.epoch.dtype == np.uint64 and df.epoch.tolist() == want
            table = c.to_arrow(partition_column=True)
            assert table.schema.names == ["partition", "consultation_id", "stream_id", "received_at_ms", "epoch", "payload"]
            assert table.column("epoch").type == pa.uint64() and table.column("epoch").to_pylist() == want


def test_a_file_without_the_column_reads_as_epoch_0(tmp_path):
    path = tmp_path / "old" / "corpus.h5"
    write_corpus(str(path), [r[:4] for r in rows_with_epochs(50, epoch_of)])
    with fi_corpus.open(path) as c:
        assert not c.has_epoch
        assert len(c) == 50 and {r.epoch for r in c} == {0}
        assert c.columns().epoch.dtype == np.uint64 and not c.columns().epoch.any()
        assert c.take([3, 49], block_bytes=1).epoch.tolist() == [0, 0]
        if have("pandas", "pyarrow"):
            import pyarrow as pa
            assert c.to_pandas().epoch.tolist() == [0] * 50
            assert c.to_arrow().column("epoch").type == pa.uint64()


def test_the_epoch_column_counts_in_the_reading_rule(tmp_path):
    """A file whose epoch column HDF5 had not extended yet when the writer died (or is still
    writing): those rows are not whole."""
    path = tmp_path / "torn" / "corpus.h5"
    w = CorpusFileWriter(str(path), epoch_column=True)
    w.append(rows_with_epochs(60, epoch_of))
    w.epoch.resize((55,))
    w.close()
    with fi_corpus.open(path) as c:
        assert len(c) == 55
        assert [r.epoch for r in c] == [epoch_of(i) for i in range(55)]
    with h5py.File(path, "r+") as f:
        f["events/epoch"].resize((60,))
        f["events/epoch"][55:] = np.array([epoch_of(i) for i in range(55, 60)], dtype=np.uint64)
    with fi_corpus.open(path) as c:
        assert len(c) == 60 and c.row(59).epoch == epoch_of(59)


def test_rows_of_fenced_swift_writers(tmp_path, crash_writers):
    """Lease 7 writes, lease 6 is refused (exit 6, "fenced"), lease 9 writes on; a layout 1 file
    written before the column existed is the first segment and reads as epoch 0."""
    exe = require_binary("FIStorageCrashWriter")
    root = tmp_path / "store"
    part = root / "site_fence"
    write_corpus(str(part / "corpus.h5"),
                 [(crash_consultation_id(i), crash_stream_id(i), i, crash_payload(i)) for i in range(30)], swmr=False)
    first = crash_writers(part, tmp_path / "ack7", 3, extra=["segments=65536", "epoch=7"])
    rows7 = first.wait_acked_rows(200)
    first.kill()
    assert (part / "fence").read_text() == "7\n"
    refused = subprocess.run([exe, str(part), str(tmp_path / "ack6"), "4", "segments=65536", "epoch=6"],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 6 and "fenced" in refused.stderr, refused.stderr
    second = crash_writers(part, tmp_path / "ack9", 5, extra=["segments=65536", "epoch=9"])
    second.wait_acked_rows(rows7 + 200)
    second.kill()
    assert (part / "fence").read_text() == "9\n"

    store = fi_corpus.open_store(root)
    rows = list(store.rows("site_fence"))
    for i, row in enumerate(rows):
        check_crash_row(row, i)
    epochs = [r.epoch for r in rows]
    assert epochs[:30] == [0] * 30, "corpus.h5 has no epoch column"
    assert set(epochs[30:rows7]) == {7}, "writer 7's acknowledged rows"
    assert set(epochs[30:]) == {7, 9} and epochs[30:] == sorted(epochs[30:]), "then writer 9's, never 7 after 9"
    segments = store.segments("site_fence")
    assert segments[0].file == "corpus.h5" and segments[0].rows == 30, \
        "the old file was closed at open instead of written on"
    assert segments[1].file == "segment-%020d-%020d.h5" % tuple(int(x) for x in crash_stream_id(30).split("-"))
    assert [r.epoch for r in store.consultation("consultation-4", site_id="fence")] == \
        [e for r, e in zip(rows, epochs) if r.consultation_id == "consultation-4"]
    out = tmp_path / "e.jsonl"
    cli = run("export", root, "--partition", "site_fence", "--format", "jsonl", "-o", out, "-q")
    assert cli.returncode == 0, cli.stderr
    assert [json.loads(line)["epoch"] for line in out.read_text().splitlines()] == epochs
    if have("pandas", "pyarrow"):
        assert store.to_pandas("site_fence").epoch.tolist() == epochs
