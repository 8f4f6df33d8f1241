"""The fi-corpus command, run as a subprocess, on the fi-server store and on a live Swift writer."""
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import fi_corpus

from conftest import check_crash_row
from test_reader import hold_open, release, rows_for, write_corpus


def fi_corpus_cmd():
    script = Path(sys.executable).with_name("fi-corpus")
    if script.exists():
        return [str(script)]  # the installed console script
    found = shutil.which("fi-corpus")
    return [found] if found else [sys.executable, "-m", "fi_corpus"]


def run(*args, timeout=120, check=None):
    proc = subprocess.run(fi_corpus_cmd() + [str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout)
    if check is not None:
        assert proc.returncode == check, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    return proc


def one_line_error(proc, status, *words):
    assert proc.returncode == status, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("fi-corpus: "), lines[0]
    assert "Traceback" not in proc.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


def test_version_and_help():
    assert run("--version", check=0).stdout.strip() == f"fi-corpus {fi_corpus.__version__}"
    out = run("--help", check=0).stdout
    for cmd in ("ls", "cat", "export", "follow"):
        assert cmd in out


def test_ls(server_store):
    store = fi_corpus.open_store(server_store.root)
    out = run("ls", server_store.root, check=0).stdout.splitlines()
    assert out[0].split()[:2] == ["PARTITION", "ROWS"]
    table = {line.split()[0]: int(line.split()[1].replace(",", "")) for line in out[1:]}
    counts = store.row_counts()
    assert table.pop("total") == sum(counts.values())
    assert table == counts
    as_json = json.loads(run("ls", server_store.root, "--json", check=0).stdout)
    assert {p["key"]: p["rows"] for p in as_json} == counts
    assert all(p["status"] == "ok" for p in as_json)


def test_cat(server_store):
    store = fi_corpus.open_store(server_store.root)
    for cid, site in (("c-a-3", "a"), ("c-b-0", "b"), ("h4.visit:0", None), ("h5.visit:1", None)):
        args = ["cat", server_store.root, "--consultation", cid] + (["--site-id", site] if site else [])
        lines = run(*args, check=0).stdout.splitlines()
        want = store.consultation(cid, site)
        assert len(lines) == len(want) > 0
        key = store.partition_for(cid, site)
        for line, row in zip(lines, want):
            got = json.loads(line)
            assert got == {"partition": key, "consultation_id": cid, "stream_id": row.stream_id,
                           "received_at_ms": row.received_at_ms, "epoch": row.epoch, "event": json.loads(row.payload)}
        only = run(*args, "--payload-only", check=0).stdout.splitlines()
        assert [o.encode() for o in only] == [r.payload for r in want]
    one_line_error(run("cat", server_store.root, "--consultation", "c-zz"), 1, "no events", "c-zz")
    one_line_error(run("cat", server_store.root, "--consultation", "c/1"), 1, "consultation_id")
    one_line_error(run("cat", server_store.root, "--consultation", "c-a-1", "--site-id", "x.y"), 1, "site_id")
    one_line_error(run("cat", server_store.root, "--consultation", "c-a-1", "--site-id", "nosite"), 1,
                   "partition site_nosite does not exist")
    one_line_error(run("cat", server_store.root), 2, "--consultation")


def expected_rows(store, keys):
    out = []
    for k in keys:
        out += [(k, r) for r in store.rows(k)]
    return out


@pytest.mark.parametrize("partition", [None, "site_b"])
def test_export_jsonl_and_csv(server_store, tmp_path, partition):
    store = fi_corpus.open_store(server_store.root)
    keys = [partition] if partition else store.partition_keys()
    want = expected_rows(store, keys)
    part = ["--partition", partition] if partition else []
    out = tmp_path / "e.jsonl"
    run("export", server_store.root, *part, "--format", "jsonl", "-o", out, check=0)
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(want)
    for line, (k, r) in zip(lines, want):
        assert json.loads(line) == {"partition": k, "consultation_id": r.consultation_id,
                                    "stream_id": r.stream_id, "received_at_ms": r.received_at_ms,
                                    "epoch": r.epoch, "event": json.loads(r.payload)}
    out = tmp_path / "e.csv"
    run("export", server_store.root, *part, "--format", "csv", "-o", out, check=0)
    with open(out, newline="", encoding="utf-8") as fh:
        table = list(csv.reader(fh))
    assert table[0] == ["partition", "consultation_id", "stream_id", "received_at_ms", "epoch", "payload"]
    assert table[1:] == [[k, r.consultation_id, r.stream_id, str(r.received_at_ms), str(r.epoch), r.payload.decode()]
                         for k, r in want]
    assert not list(tmp_path.glob("*.partial"))


@pytest.mark.parametrize("partition", [None, "site_a"])
def test_export_parquet(server_store, tmp_path, partition):
    pq = pytest.importorskip("pyarrow.parquet")
    store = fi_corpus.open_store(server_store.root)
    keys = [partition] if partition else store.partition_keys()
    want = expected_rows(store, keys)
    out = tmp_path / "e.parquet"
    part = ["--partition", partition] if partition else []
    proc = run("export", server_store.root, *part, "--format", "parquet", "-o", out, "--progress", check=0)
    assert "100.0%" in proc.stderr and f"exported {len(want):,} rows" in proc.stderr
    table = pq.read_table(out)
    assert table.schema.names == ["partition", "consultation_id", "stream_id", "received_at_ms", "epoch", "payload"]
    assert table.to_pylist() == [{"partition": k, "consultation_id": r.consultation_id, "stream_id": r.stream_id,
                                  "received_at_ms": r.received_at_ms, "epoch": r.epoch, "payload": r.payload.decode()}
                                 for k, r in want]
    binary = tmp_path / "b.parquet"
    run("export", server_store.root, *part, "--format", "parquet", "--payload-type", "binary",
        "--compression", "none", "-o", binary, "-q", check=0)
    assert pq.read_table(binary).column("payload").to_pylist() == [r.payload for _, r in want]


def test_export_time_window(server_store, tmp_path):
    store = fi_corpus.open_store(server_store.root)
    rows = list(store.rows("site_a"))
    lo = sorted(r.received_at_ms for r in rows)[len(rows) // 2]
    out = tmp_path / "w.jsonl"
    run("export", server_store.root, "--partition", "site_a", "--format", "jsonl", "--start-ms", lo,
        "-o", out, check=0)
    got = [json.loads(x)["stream_id"] for x in out.read_text().splitlines()]
    assert got == [r.stream_id for r in rows if r.received_at_ms >= lo]


def test_errors_are_one_line(server_store, tmp_path):
    nothing = tmp_path / "nothing"
    one_line_error(run("ls", nothing), 1, "does not exist")
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("hi")
    one_line_error(run("ls", tmp_path / "plain"), 1, "not a corpus store")
    one_line_error(run("export", tmp_path / "plain", "--format", "csv", "-o", tmp_path / "x.csv"), 1,
                   "not a corpus store")
    one_line_error(run("ls", tmp_path / "plain" / "notes.txt"), 1, "not a directory")
    one_line_error(run("ls", server_store.root / "site_a"), 1, "the store is its parent")
    one_line_error(run("export", server_store.root, "--partition", "site_nope", "--format", "jsonl",
                       "-o", tmp_path / "x.jsonl"), 1, "partition site_nope does not exist", "site_a")
    assert not (tmp_path / "x.jsonl").exists()
    one_line_error(run("follow", server_store.root, "partition_99", "--timeout", "1"), 1,
                   "partition partition_99 does not exist")
    one_line_error(run("export", server_store.root, "--partition", "../etc", "--format", "jsonl",
                       "-o", tmp_path / "x.jsonl"), 1, "not a partition key")
    one_line_error(run("export", server_store.root, "--format", "xml", "-o", tmp_path / "x"), 2, "xml")
    one_line_error(run("follow", server_store.root), 2)
    one_line_error(run("nosuchcommand"), 2)
    # A partition file that is not HDF5.
    bad = tmp_path / "badstore"
    (bad / "site_x").mkdir(parents=True)
    (bad / "site_x" / "corpus.h5").write_bytes(b"garbage" * 10)
    one_line_error(run("export", bad, "--partition", "site_x", "--format", "jsonl", "-o", tmp_path / "y"), 1,
                   "not an HDF5 file")
    assert "not a corpus" in run("ls", bad, check=0).stdout


def test_file_another_process_is_creating(tmp_path):
    root = tmp_path / "store"
    write_corpus(str(root / "site_a" / "corpus.h5"), rows_for(4))
    (root / "site_b").mkdir()
    (root / "site_b" / "corpus.h5.creating").write_bytes(b"")
    proc = hold_open(root / "site_c" / "corpus.h5")
    try:
        for key in ("site_b", "site_c"):
            one_line_error(run("export", root, "--partition", key, "--format", "jsonl", "-o", tmp_path / "o"),
                           1, "being created", key)
            one_line_error(run("export", root, "--format", "csv", "-o", tmp_path / "o"), 1, "being created")
        ls = run("ls", root, check=0).stdout
        assert "being created" in ls and "site_a" in ls
    finally:
        release(proc)
    assert not (tmp_path / "o").exists()


def test_follow_a_live_swift_writer(tmp_path, crash_writers):
    root = tmp_path / "store"
    w = crash_writers(root / "site_live" / "corpus.h5", tmp_path / "ack", 5)
    w.wait_acked_rows(1)
    t0 = time.monotonic()
    proc = run("follow", root, "site_live", "--from-start", "--max-rows", 3000, "--timeout", 60, "--poll", 0.05,
               timeout=90, check=0)
    assert time.monotonic() - t0 < 90
    lines = proc.stdout.splitlines()
    assert len(lines) == 3000
    for i, line in enumerate(lines):
        got = json.loads(line)
        row = fi_corpus.Row(got["consultation_id"], got["stream_id"], got["received_at_ms"],
                            json.dumps(got["event"], ensure_ascii=False, separators=(",", ":")).encode())
        check_crash_row(row, i)
    # --last N begins with the last N rows present; --idle-timeout ends it once the writer is gone.
    w.kill()
    with fi_corpus.open_store(root).open("site_live") as c:
        n = len(c)
    proc = run("follow", root, "site_live", "--last", 5, "--idle-timeout", 0.5, check=0)
    assert [json.loads(x)["event"]["i"] for x in proc.stdout.splitlines()] == list(range(n - 5, n))


def test_prefetch_passes_items_errors_and_stops_early():
    from fi_corpus.cli import prefetch
    assert list(prefetch(iter(range(100)), depth=2)) == list(range(100))

    def failing():
        yield 1
        raise ValueError("boom")

    it = prefetch(failing())
    assert next(it) == 1
    with pytest.raises(ValueError, match="boom"):
        next(it)
    produced = []

    def endless():
        for i in range(10_000):
            produced.append(i)
            yield i

    it = prefetch(endless(), depth=2)
    assert [next(it) for _ in range(3)] == [0, 1, 2]
    it.close()  # the consumer stops: the producer stops too
    assert len(produced) < 10


def test_prefetch_consumer_leaving_after_the_end_does_not_wait():
    from fi_corpus.cli import prefetch
    it = prefetch(iter(range(5)), depth=1)
    assert next(it) == 0
    time.sleep(0.3)  # the producer is now waiting to hand over more, or the end
    t0 = time.monotonic()
    it.close()
    assert time.monotonic() - t0 < 2
