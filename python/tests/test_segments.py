"""Partition directories of segment files (Docs/contract.md §5, layout 2) written by the Swift code:
rows read across segments, a reader following a writer across rolls, layout 1's corpus.h5 as the
first segment, and a consultation erased by ``fi-worker corpus erase``."""
import subprocess

import h5py
import pytest

import fi_corpus

from conftest import check_crash_row, crash_consultation_id, crash_stream_id, require_binary

SEGMENTS = ["segments=65536"]  # a roll every few dozen rows


def name_of(stream_id: str) -> str:
    ms, seq = stream_id.split("-")
    return f"segment-{int(ms):020d}-{int(seq):020d}.h5"


def test_rows_across_segments(tmp_path, crash_writers):
    root = tmp_path / "store"
    w = crash_writers(root / "site_seg", tmp_path / "ack", 3, extra=SEGMENTS)
    acked = w.wait_acked_rows(800)
    w.kill()
    store = fi_corpus.open_store(root)
    assert store.partition_keys() == ["site_seg"]
    segments = store.segments("site_seg")
    assert len(segments) >= 5, segments
    rows = list(store.rows("site_seg"))
    assert len(rows) >= acked and store.row_counts() == {"site_seg": len(rows)}
    for i, row in enumerate(rows):
        check_crash_row(row, i)
    start = 0
    for segment in segments:
        assert segment.file == name_of(crash_stream_id(start)), "named after the first stream id it holds"
        start += segment.rows
    # The killed writer records closed segments in the background: some may not be recorded yet
    # (they are read all the same, and the next writer records them). Recorded ones come first.
    closed = [s for s in segments if s.closed]
    assert closed and segments[:len(closed)] == closed and all(len(s.sha256) == 64 for s in closed)
    for segment in closed:  # a closed segment is a finished file
        with h5py.File(segment.path, "r") as f:
            assert len(f["events/stream_id"]) == segment.rows
    with store.open("site_seg") as p:
        assert [r.stream_id for r in p.after(crash_stream_id(100), limit=300)] == \
            [crash_stream_id(i) for i in range(101, 401)]
        assert p.columns(95, 405).row_index.tolist() == list(range(95, 405))
    got = store.consultation("consultation-4", site_id="seg")
    assert [r.stream_id for r in got] == [crash_stream_id(i) for i in range(len(rows)) if i % 13 == 4]
    with fi_corpus.open(root / "site_seg") as p:
        assert len(p) == len(rows)
    info = store.info("site_seg")[0]
    assert (info.status, info.rows, info.segments) == ("ok", len(rows), len(segments))


def test_follow_across_rolls(tmp_path, crash_writers):
    root = tmp_path / "store"
    w = crash_writers(root / "site_live", tmp_path / "ack", 5, extra=SEGMENTS)
    w.wait_acked_rows(1)
    store = fi_corpus.open_store(root)
    rows = list(store.follow("site_live", max_rows=2000, timeout=90, poll_interval=0.01))
    segments_seen = len(store.segments("site_live"))
    w.kill()
    assert len(rows) == 2000
    for i, row in enumerate(rows):
        check_crash_row(row, i)
    assert segments_seen >= 10, "the follower crossed many rolls"


def test_layout_1_file_is_the_first_segment(tmp_path, crash_writers):
    root = tmp_path / "store"
    part = root / "site_old"
    old = crash_writers(part / "corpus.h5", tmp_path / "ack1", 7)  # layout 1: one file
    old.wait_acked_rows(300)
    old.kill()
    new = crash_writers(part, tmp_path / "ack2", 8, extra=SEGMENTS)  # the same partition, layout 2
    acked = new.wait_acked_rows(900)
    new.kill()
    store = fi_corpus.open_store(root)
    segments = store.segments("site_old")
    assert segments[0].file == "corpus.h5" and segments[0].rows >= 300
    rows = list(store.rows("site_old"))
    assert len(rows) >= acked
    for i, row in enumerate(rows):
        check_crash_row(row, i)


def test_erased_consultation_is_gone(tmp_path, crash_writers):
    root = tmp_path / "store"
    w = crash_writers(root / "site_era", tmp_path / "ack", 9, extra=SEGMENTS)
    w.wait_acked_rows(600)
    w.kill()
    before = list(fi_corpus.open_store(root).rows("site_era"))
    erase = subprocess.run([require_binary("fi-worker"), "corpus", "erase", "--storage", str(root),
                            "--consultation", "consultation-3", "--site-id", "era"],
                           capture_output=True, text=True, timeout=120)
    assert erase.returncode == 0, erase.stderr
    store = fi_corpus.open_store(root)
    assert store.consultation("consultation-3", site_id="era") == []
    after = list(store.rows("site_era"))
    assert after == [r for r in before if r.consultation_id != "consultation-3"]
    assert len(after) < len(before)
    assert all(r.consultation_id == crash_consultation_id(int(r.stream_id.split("-")[0]) - 1_700_000_000_000) for r in after)
    audit = (root / "site_era" / "audit.log").read_text()
    assert "erase_done" in audit and "consultation-3" not in audit
