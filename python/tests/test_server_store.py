"""A store written by the real fi-server (embedded mode): what was answered 202 is what reads back."""
import json
from collections import defaultdict

import h5py
import pytest

import fi_corpus

from conftest import HASH_CONSULTATIONS, SITE_EVENTS


def by_partition(sent):
    out = defaultdict(list)
    for s in sent:
        out[s["partition"]].append(s)
    for rows in out.values():
        rows.sort(key=lambda s: tuple(int(x) for x in s["message_id"].split("-")))
    return out


def test_partitions_and_row_counts(server_store):
    store = fi_corpus.open_store(server_store.root)
    want = by_partition(server_store.sent)
    assert store.partitions == 3
    assert set(store.partition_keys()) == set(want)
    assert {"site_a", "site_b", "site_c_3"} <= set(want)
    assert any(k.startswith("partition_") for k in want)
    assert store.row_counts() == {k: len(v) for k, v in want.items()}
    assert sum(store.row_counts().values()) == sum(SITE_EVENTS.values()) + 3 * HASH_CONSULTATIONS
    for info in store.info():
        assert info.status == "ok"
        assert info.payload_bytes == sum(len(s["body"]) for s in want[info.key])


def test_every_row_is_what_was_accepted(server_store):
    store = fi_corpus.open_store(server_store.root)
    for key, sent in by_partition(server_store.sent).items():
        rows = list(store.rows(key))
        assert [r.stream_id for r in rows] == [s["message_id"] for s in sent]
        assert [r.payload for r in rows] == [s["body"] for s in sent]
        assert [r.consultation_id for r in rows] == [s["consultation_id"] for s in sent]
        assert all(r.received_at_ms > 1_600_000_000_000 for r in rows)
        # The server's own routing equals the Python port of the partition function.
        for s in sent:
            assert fi_corpus.partition_key(s["consultation_id"], s["site_id"], 3) == key == s["partition"]


def test_closed_files_open_with_plain_h5py(server_store):
    store = fi_corpus.open_store(server_store.root)
    for key in store.partition_keys():
        rows = 0
        for segment in store.segments(key):
            assert segment.file.startswith("segment-") and segment.file.endswith(".h5")
            with h5py.File(segment.path, "r") as f:
                rows += len(f["events/stream_id"])
        assert rows == store.row_counts()[key]


def test_consultation_lookup(server_store):
    store = fi_corpus.open_store(server_store.root)
    consultations = defaultdict(list)
    for s in server_store.sent:
        consultations[(s["consultation_id"], s["site_id"])].append(s)
    assert len(consultations) > 20
    for (cid, site), sent in consultations.items():
        got = store.consultation(cid, site_id=site)
        assert [r.stream_id for r in got] == sorted((s["message_id"] for s in sent),
                                                    key=lambda m: tuple(map(int, m.split("-"))))
        assert sorted(r.payload for r in got) == sorted(s["body"] for s in sent)
        assert all(r.consultation_id == cid for r in got)
    # Same id, other site: another partition, other events (or none).
    assert store.consultation("c-a-0", site_id="b") == []
    with pytest.raises(fi_corpus.PartitionNotFoundError):
        store.consultation("c-a-0", site_id="nosuchsite")


def test_frames_match_rows(server_store):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    store = fi_corpus.open_store(server_store.root)
    df = store.to_pandas("site_a")
    rows = list(store.rows("site_a"))
    assert df.stream_id.tolist() == [r.stream_id for r in rows]
    assert df.payload.tolist() == [r.payload for r in rows]
    js = store.to_pandas("site_a", payload="json")
    assert js["metadata.site_id"].tolist() == ["a"] * len(rows)
    assert js["text"].tolist() == [json.loads(r.payload)["text"] for r in rows]
    everything = store.to_pandas()
    assert len(everything) == len(server_store.sent)
    assert everything.groupby("partition", observed=True).size().to_dict() == store.row_counts()
    table = store.to_arrow()
    assert table.num_rows == len(server_store.sent)
    assert sorted(table.column("payload").to_pylist()) == sorted(s["body"] for s in server_store.sent)
    assert isinstance(everything, pd.DataFrame)


def test_time_window(server_store):
    store = fi_corpus.open_store(server_store.root)
    rows = list(store.rows("site_a"))
    times = sorted(r.received_at_ms for r in rows)
    lo, hi = times[len(times) // 4], times[3 * len(times) // 4]
    want = [r for r in rows if lo <= r.received_at_ms < hi]
    assert want
    assert list(store.rows("site_a", start_ms=lo, end_ms=hi)) == want
    assert store.columns("site_a", start_ms=lo, end_ms=hi).stream_id.tolist() == \
        [r.stream_id.encode() for r in want]
