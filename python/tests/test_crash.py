"""Files the Swift writer (FIStorageCrashWriter, FIStorage's CorpusWriter) is writing, or left torn
when it was killed with SIGKILL: whole rows only, every acknowledged row, content byte for byte;
follow() across a live writer and a writer restart."""
import threading
import time

import pytest

import fi_corpus

from conftest import have, check_crash_row, crash_stream_id, raw_lengths, read_acks, tear_tail, whole_rows


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
    if have("pandas", "pyarrow"):
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


@pytest.mark.parametrize("reopen_after", [60.0, 0.5])
def test_follow_survives_writer_restarts_and_a_torn_tail(tmp_path, crash_writers, reopen_after):
    """kill -9 the writer, start it again on the same file (it recovers the torn tail and goes
    on), three times, while follow() runs in another thread: one unbroken, exact sequence of rows.
    Random kills rarely land inside a flush, so after the first kill the tail is torn by hand
    (half of the next row written, as a crash inside a batch leaves it).

    Before a reader reopened the file on a writer restart, this scenario without idle reopens
    (reopen_after=60) yielded, in about one run in four, rows whose payload came from one chunk
    earlier (a stale chunk index); reopen_after=0.5 reopens during each restart's pause."""
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
                                    reopen_after=reopen_after):
                got.append(row)
        except BaseException as err:  # noqa: BLE001 - reported by the test thread
            errors.append(err)

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    restarts = torn_tails = 0
    for seed in (22, 23, 24):
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
            assert whole_rows(corpus) == whole >= killed_at
            time.sleep(0.3)  # follow() polls the torn file
            torn_tails += 1
        w = crash_writers(corpus, ack, seed, seed % 2 == 0)
        w.wait_acked_rows(killed_at + 500, timeout=60)
    w.kill()
    final_ack = read_acks(ack)[-1][0]
    final = whole_rows(corpus)
    assert final >= final_ack
    deadline = time.monotonic() + 60
    while len(got) < final and time.monotonic() < deadline and t.is_alive():
        time.sleep(0.05)
    stop.set()
    t.join(timeout=30)
    assert not errors, errors
    assert restarts == 3 and torn_tails == 1
    assert len(got) == final, f"followed {len(got)} rows, the file has {final}"
    check_all(got)


def test_a_handle_kept_open_across_writer_restarts(tmp_path, crash_writers):
    """One Corpus kept open and refreshed while the writer is killed and restarted twice: it
    reopens itself on each restart, and every row it reads is exact."""
    root = tmp_path / "store"
    corpus = root / "site_k" / "corpus.h5"
    ack = tmp_path / "ack"
    w = crash_writers(corpus, ack, 31, False)
    w.wait_acked_rows(300)
    with fi_corpus.open(corpus) as c:
        seen = 0
        for seed in (32, 33):
            w.wait_acked_rows(read_acks(ack)[-1][0] + 400, timeout=60)
            w.kill()
            killed_at = read_acks(ack)[-1][0]
            w = crash_writers(corpus, ack, seed, False)
            t_end = time.monotonic() + 3
            while time.monotonic() < t_end:  # read the new rows as they come, 3 s
                n = c.refresh()
                check_all(list(c.rows(seen, n)), seen)
                seen = n
                time.sleep(0.01)
            assert seen > killed_at
        w.kill()
        time.sleep(0.1)
        n = c.refresh()
        check_all(list(c.rows(seen, n)), seen)
        assert n == whole_rows(corpus) >= read_acks(ack)[-1][0]


def test_follow_while_the_same_process_reads_the_file(tmp_path, crash_writers):
    """follow() in one thread while the main thread opens and reads the same partition (as a
    dashboard does), and the writer (no fsync, fsync, no fsync) is killed and restarted twice.
    Three rounds. When each Corpus had its own HDF5 handle, about one round in five yielded rows
    whose payload came from one chunk earlier: two handles on one file in one process left the
    follower's chunk index stale. Now all share one handle (fi_corpus.corpus._acquire)."""
    for round_ in range(3):
        root = tmp_path / f"store{round_}"
        corpus = root / "site_q" / "corpus.h5"
        ack = tmp_path / f"ack{round_}"
        w = crash_writers(corpus, ack, 21, False)
        w.wait_acked_rows(200)
        store = fi_corpus.open_store(root)
        got, errors, stop = [], [], threading.Event()

        def consume():
            try:
                for row in store.follow("site_q", poll_interval=0.02, timeout=90, stop=stop.is_set,
                                        reopen_after=1e9):
                    got.append(row)
            except BaseException as err:  # noqa: BLE001 - reported by the test thread
                errors.append(err)

        t = threading.Thread(target=consume, daemon=True)
        t.start()
        for seed in (22, 23):
            w.wait_acked_rows(read_acks(ack)[-1][0] + 300, timeout=60)
            assert store.row_counts()["site_q"] > 0  # the same file, opened again in this process
            w.kill()
            killed_at = read_acks(ack)[-1][0]
            time.sleep(0.3)
            w = crash_writers(corpus, ack, seed, seed % 2 == 0)
            w.wait_acked_rows(killed_at + 500, timeout=60)
            with store.open("site_q") as c:
                check_all(list(c.rows(max(0, len(c) - 50))), max(0, len(c) - 50))
        w.kill()
        with store.open("site_q") as c:
            final = len(c)
        deadline = time.monotonic() + 30
        while len(got) < final and time.monotonic() < deadline and t.is_alive():
            time.sleep(0.05)
        stop.set()
        t.join(timeout=30)
        assert not errors, errors
        assert final == whole_rows(corpus)
        assert len(got) == final, (round_, len(got), final)
        check_all(got)
