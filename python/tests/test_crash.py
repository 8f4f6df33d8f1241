"""Files the Swift writer (FIStorageCrashWriter, FIStorage's CorpusWriter) is writing, or left torn
when it was killed with SIGKILL: whole rows only, every acknowledged row, content byte for byte;
follow() across a live writer and a writer restart."""
import threading
import time

import pytest

import fi_corpus

from conftest import check_crash_row, crash_stream_id, raw_lengths, read_acks, tear_tail


def check_all(rows, start=0):
    for k, r in enumerate(rows):
        check_crash_row(r, start + k)


@pytest.mark.parametrize("seed,fsync,min_acked", [(1, True, 3000), (2, False, 400), (3, True, 1)])
def test_killed_writer_leaves_a_readable_file(tmp_path, crash_writers, seed, fsync, min_acked):
    root = tmp_path / "store"
    corpus = root / "site_crash" / "corpus.h5"
    ack = tmp_path / "ack"
    w = crash_writers(corpus, ack, seed, fsync)
    w.wait_acked_rows(min_acked)
    time.sleep(0.05 * seed)  # land the kill somewhere in the next batches
    w.kill()
    acked = read_acks(ack)[-1]
    store = fi_corpus.open_store(root)
    with store.open("site_crash") as c:
        n = len(c)
        assert n >= acked[0], f"{n} rows read, {acked[0]} acknowledged"
        rows = list(c)
        assert len(rows) == n
        check_all(rows)
        # The last acknowledged row is there, at its place.
        assert rows[acked[0] - 1].stream_id == acked[1]
        cols = c.columns()
        assert cols.stream_id[-1].decode() == crash_stream_id(n - 1)
        assert int(cols.payload_offsets[-1]) == c.payload_bytes
    assert store.row_counts() == {"site_crash": n}
    if pytest.importorskip("pandas") and pytest.importorskip("pyarrow"):
        df = store.to_pandas("site_crash")
        assert len(df) == n and df.stream_id.iloc[-1] == crash_stream_id(n - 1)
        assert df.payload.iloc[n // 2] == rows[n // 2].payload
    cons = store.consultation("consultation-5", site_id="crash")
    assert [r.received_at_ms for r in cons] == list(range(5, n, 13))


def test_reading_while_the_writer_appends(tmp_path, crash_writers):
    """Repeated reads of a live file: the row count never goes back, every row read is whole."""
    root = tmp_path / "store"
    corpus = root / "site_live" / "corpus.h5"
    w = crash_writers(corpus, tmp_path / "ack", 7)
    w.wait_acked_rows(1)
    store = fi_corpus.open_store(root)
    seen = []
    t_end = time.monotonic() + 3.0
    with store.open("site_live") as c:
        last = 0
        while time.monotonic() < t_end and len(seen) < 500:
            n = c.refresh()
            assert n >= last
            seen.append(n)
            # The newest rows, read the moment they appear, are whole and correct.
            lo = max(last, n - 300)
            check_all(list(c.rows(lo, n)), lo)
            last = n
            time.sleep(0.01)
        assert last > seen[0], "the writer appended nothing in 3 s"
    # A fresh open of the live file (as a dashboard would), with the frames too.
    with store.open("site_live") as c2:
        rows = list(c2)
        check_all(rows)
    w.kill()
    assert len(rows) >= last


def test_follow_a_live_writer(tmp_path, crash_writers):
    root = tmp_path / "store"
    corpus = root / "site_f" / "corpus.h5"
    w = crash_writers(corpus, tmp_path / "ack", 11)
    w.wait_acked_rows(1)
    store = fi_corpus.open_store(root)
    got = []
    t0 = time.monotonic()
    for row in store.follow("site_f", poll_interval=0.05, timeout=60, max_rows=20000):
        got.append(row)
    assert time.monotonic() - t0 < 60
    assert len(got) == 20000, "bounded: 20,000 rows within 60 s"
    w.kill()
    check_all(got)  # consecutive stream ids from row 0: none repeated, none skipped, all whole


def test_follow_survives_a_writer_restart_and_a_torn_tail(tmp_path, crash_writers):
    """kill -9 the writer, start it again on the same file (it recovers the torn tail and goes
    on), twice, while follow() runs in another thread: one unbroken, exact sequence of rows.
    Random kills rarely land inside a flush, so after the first kill the tail is torn by hand
    (half of the next row written, as a crash inside a batch leaves it)."""
    root = tmp_path / "store"
    corpus = root / "site_r" / "corpus.h5"
    ack = tmp_path / "ack"
    w = crash_writers(corpus, ack, 21, False)  # no fsync: tiny batches, kills land inside flushes
    w.wait_acked_rows(200)
    store = fi_corpus.open_store(root)
    got = []
    errors = []
    stop = threading.Event()

    def consume():
        try:
            for row in store.follow("site_r", poll_interval=0.02, timeout=120, stop=stop.is_set,
                                    reopen_after=0.5):
                got.append(row)
        except BaseException as err:  # noqa: BLE001 - reported by the test thread
            errors.append(err)

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    restarts = torn_tails = 0
    for seed in (22, 23):
        target = read_acks(ack)[-1][0] + 300
        w.wait_acked_rows(target, timeout=60)
        w.kill()
        restarts += 1
        killed_at = read_acks(ack)[-1][0]
        time.sleep(0.3)  # follow() polls the dead writer's file
        if seed == 22:
            whole = tear_tail(corpus)
            lens = raw_lengths(corpus)
            assert lens[:2] == (whole + 1, whole + 1) and lens[2:4] == (whole, whole), lens
            assert lens[4] > lens[5], lens  # payload longer than the last payload_end
            with store.open("site_r") as c:
                assert len(c) == whole >= killed_at
            time.sleep(0.3)  # follow() polls the torn file
            torn_tails += 1
        w = crash_writers(corpus, ack, seed, seed % 2 == 0)
        w.wait_acked_rows(killed_at + 500, timeout=60)
    w.kill()
    final_ack = read_acks(ack)[-1][0]
    with store.open("site_r") as c:
        final = len(c)
    assert final >= final_ack
    deadline = time.monotonic() + 60
    while len(got) < final and time.monotonic() < deadline and t.is_alive():
        time.sleep(0.05)
    stop.set()
    t.join(timeout=30)
    assert not errors, errors
    assert restarts == 2 and torn_tails == 1
    assert len(got) == final, f"followed {len(got)} rows, the file has {final}"
    check_all(got)
