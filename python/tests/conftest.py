"""Fixtures: corpora written by the Swift code (fi-server embedded, FIStorageCrashWriter).

The binaries come from ``$FI_BIN_DIR`` (default ``<repo>/.build/debug``). Without them the tests
that need them are skipped, unless ``FI_REQUIRE_SERVICES=1`` (CI), where a missing binary fails.
Every server listens on 127.0.0.1; every process a fixture starts is stopped by it.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import pytest

TESTS = Path(__file__).resolve().parent
PYTHON_DIR = TESTS.parent
REPO = PYTHON_DIR.parent
sys.path.insert(0, str(TESTS))

BASE_MS = 1_700_000_000_000


def have(*modules: str) -> bool:
    """Whether the optional modules are importable (pandas and pyarrow come with the extras; a
    Debian python3-h5py run has neither, and the parts of a test that need them are left out)."""
    import importlib.util
    return all(importlib.util.find_spec(m) is not None for m in modules)


def bin_dir() -> Path:
    return Path(os.environ.get("FI_BIN_DIR") or REPO / ".build" / "debug")


def require_binary(name: str) -> str:
    path = bin_dir() / name
    if path.is_file() and os.access(path, os.X_OK):
        return str(path)
    msg = f"{name} not found in {bin_dir()} (build the Swift package or set FI_BIN_DIR)"
    if os.environ.get("FI_REQUIRE_SERVICES") == "1":
        pytest.fail(msg + "; FI_REQUIRE_SERVICES=1 makes this a failure")
    pytest.skip(msg)


# -- the crash writer's rows (Tests/FIStorageCrashWriter/main.swift) -------------------------------
def crash_stream_id(i: int) -> str:
    return f"{BASE_MS + i}-{i % 5}"


def crash_consultation_id(i: int) -> str:
    return f"consultation-{i % 13}"


def crash_payload(i: int) -> bytes:
    return ('{"i":%d,"text":"é€%s"}' % (i, "x" * ((i * 37) % 1500))).encode("utf-8")


def check_crash_row(row, i: int) -> None:
    assert row.stream_id == crash_stream_id(i), (i, row.stream_id)
    assert row.consultation_id == crash_consultation_id(i), (i, row.consultation_id)
    assert row.received_at_ms == i, (i, row.received_at_ms)
    assert row.payload == crash_payload(i), (i, row.payload[:60])


def read_acks(path: Path) -> List[Tuple[int, str]]:
    """Complete ``ACK <rows> <last stream id>`` lines (a torn last line is ignored)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="ascii", errors="replace").splitlines(keepends=True):
        parts = line.split()
        if line.endswith("\n") and len(parts) == 3 and parts[0] == "ACK":
            out.append((int(parts[1]), parts[2]))
    return out


class CrashWriter:
    """FIStorageCrashWriter appending to ``corpus`` until killed."""

    def __init__(self, exe: str, corpus: Path, ack: Path, seed: int, fsync: bool = True, extra: Sequence[str] = ()):
        corpus.parent.mkdir(parents=True, exist_ok=True)
        args = [exe, str(corpus), str(ack), str(seed)] + ([] if fsync else ["nofsync"]) + list(extra)
        self.ack = ack
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def wait_acked_rows(self, rows: int, timeout: float = 60.0) -> int:
        """Wait (bounded) until the writer acknowledged at least ``rows`` rows."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            acks = read_acks(self.ack)
            if acks and acks[-1][0] >= rows:
                return acks[-1][0]
            if self.proc.poll() is not None:
                raise AssertionError(f"crash writer exited {self.proc.returncode}: "
                                     f"{self.proc.stderr.read().decode(errors='replace')}")
            time.sleep(0.02)
        raise AssertionError(f"crash writer did not acknowledge {rows} rows in {timeout} s")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        if self.proc.stderr:
            self.proc.stderr.close()


@pytest.fixture
def crash_writer_exe() -> str:
    return require_binary("FIStorageCrashWriter")


@pytest.fixture
def crash_writers():
    """Start crash writers with ``start(corpus, ack, seed)``; all are killed at the end.
    ``extra=["segments=65536"]`` makes ``corpus`` a partition directory that rolls every few dozen rows."""
    started: List[CrashWriter] = []

    def start(corpus: Path, ack: Path, seed: int, fsync: bool = True, extra: Sequence[str] = ()) -> CrashWriter:
        w = CrashWriter(require_binary("FIStorageCrashWriter"), corpus, ack, seed, fsync, extra)
        started.append(w)
        return w

    yield start
    for w in started:
        w.kill()


# -- fi-server, embedded -------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server_env() -> Dict[str, str]:
    env = dict(os.environ)
    for k in ("REDIS_URL", "FI_API_TOKENS_FILE"):
        env.pop(k, None)  # embedded mode, open API
    return env


class Server:
    def __init__(self, exe: str, storage: Path, partitions: int = 3):
        self.storage = storage
        self.log = open(storage.parent / f"fi-server-{os.getpid()}-{id(self)}.log", "wb")
        for _ in range(5):
            self.port = free_port()
            self.proc = subprocess.Popen(
                [exe, "--host", "127.0.0.1", "--port", str(self.port), "--storage", str(storage),
                 "--partitions", str(partitions), "--log-level", "warning"],
                stdout=self.log, stderr=subprocess.STDOUT, env=_server_env())
            if self._wait_healthy(30):
                return
            self.stop(expect_zero=False)
        raise AssertionError("fi-server did not become healthy on 127.0.0.1")

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _wait_healthy(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(self.base + "/health", timeout=2) as r:
                    if r.status == 200:
                        return True
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.05)
        return False

    def post(self, consultation_id: str, body: dict, attempts: int = 50) -> dict:
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        for _ in range(attempts):  # bounded: 429 (backlog) is retried after a short pause
            req = urllib.request.Request(f"{self.base}/consultations/{consultation_id}/events", data=data,
                                         method="POST", headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    assert r.status == 202, r.status
                    reply = json.loads(r.read())
                    reply["body"] = data
                    return reply
            except urllib.error.HTTPError as err:
                if err.code == 429:
                    time.sleep(0.1)
                    continue
                raise AssertionError(f"POST {consultation_id}: {err.code} {err.read()[:200]!r}")
        raise AssertionError(f"POST {consultation_id}: still 429 after {attempts} attempts")

    def stop(self, expect_zero: bool = True, timeout: float = 60) -> Optional[int]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
                raise AssertionError("fi-server did not exit within %s s of SIGTERM" % timeout)
        self.log.close()
        if expect_zero:
            assert self.proc.returncode == 0, f"fi-server exited {self.proc.returncode}"
        return self.proc.returncode


@dataclass
class ServerStore:
    root: Path
    sent: List[dict]  # each: consultation_id, site_id, partition, message_id, body (bytes)


SITE_EVENTS = {"a": 40, "b": 25, "c_3": 10}
HASH_CONSULTATIONS = 12  # without a site: partition_<n>


@pytest.fixture(scope="session")
def server_store(tmp_path_factory) -> ServerStore:
    """A store written by fi-server (embedded): events for sites a, b, c_3 and hash partitions,
    all answered 202, then SIGTERM (which persists every accepted event) and exit 0."""
    exe = require_binary("fi-server")
    base = tmp_path_factory.mktemp("server")
    storage = base / "storage"
    server = Server(exe, storage)
    sent = []
    try:
        k = 0
        for site, count in SITE_EVENTS.items():
            for j in range(count):
                cid = f"c-{site}-{j % 7}"
                body = {"metadata": {"site_id": site}, "text": f"note {k} é€ " + "y" * (k % 300), "k": k}
                reply = server.post(cid, body)
                sent.append(dict(reply, consultation_id=cid, site_id=site))
                k += 1
        for j in range(HASH_CONSULTATIONS * 3):
            cid = f"h{j % HASH_CONSULTATIONS}.visit:{j % 2}"
            body = {"text": f"hash event {k}", "k": k} if j % 3 else {"metadata": {"site_id": None}, "text": "", "k": k}
            reply = server.post(cid, body)
            sent.append(dict(reply, consultation_id=cid, site_id=None))
            k += 1
    finally:
        server.stop()
    return ServerStore(storage, sent)


# -- tearing a file by hand ---------------------------------------------------------------------
TEAR = r"""
import sys, h5py, numpy as np
sys.path.insert(0, sys.argv[2])
from h5writer import _write
from conftest import crash_consultation_id, crash_stream_id, crash_payload
with h5py.File(sys.argv[1], "r+", locking=False) as f:
    e = f["events"]
    n = len(e["payload_end"])
    # Row n half written, as a crash between the writes of one batch leaves it: payload bytes
    # and two of its four row columns are there, received_at_ms and payload_end are not. The
    # bytes are not row n's: if the writer's recovery did not cut them, row n would read wrong.
    p = np.frombuffer(b"#" * len(crash_payload(n)), np.uint8)
    end = len(e["payload"])
    e["payload"].resize((end + len(p),))
    _write(e["payload"], end, p)
    for name, value, dtype in (("consultation_id", crash_consultation_id(n), "S128"),
                               ("stream_id", crash_stream_id(n), "S41")):
        e[name].resize((n + 1,))
        _write(e[name], n, np.array([value.encode()], dtype=dtype))
print(n)
"""


RAW_LENGTHS = r"""
import sys, json, h5py
with h5py.File(sys.argv[1], "r", swmr=True, locking=False) as f:
    e = f["events"]
    lens = [len(e[n]) for n in ("consultation_id", "stream_id", "received_at_ms", "payload_end")]
    last = int(e["payload_end"][lens[3] - 1]) if lens[3] else 0
    print(json.dumps(lens + [len(e["payload"]), last]))
"""


def raw_lengths(path) -> Tuple[int, ...]:
    """Lengths of the four row columns and of payload, and payload_end's last value — read in
    another process: a second handle on a file this process has open shares HDF5's state."""
    out = subprocess.run([sys.executable, "-c", RAW_LENGTHS, str(path)], check=True, capture_output=True,
                         text=True, timeout=60)
    return tuple(json.loads(out.stdout))


def whole_rows(path) -> int:
    """Whole rows of a corpus file as a fresh process reads them (see raw_lengths)."""
    out = subprocess.run([sys.executable, "-c", "import sys, fi_corpus; print(len(fi_corpus.open(sys.argv[1])))",
                          str(path)], check=True, capture_output=True, text=True, timeout=60)
    return int(out.stdout)


def tear_tail(path) -> int:
    """Leave a torn last row in a file whose writer was killed: clear the killed writer's status
    flags (h5clear, hdf5-tools), then write half of the next row with h5py in another process.
    Returns the number of whole rows."""
    import shutil
    h5clear = shutil.which("h5clear")
    if h5clear is None:
        msg = "h5clear not found (Debian: hdf5-tools)"
        if os.environ.get("FI_REQUIRE_SERVICES") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    for args in (["-s"], ["--increment=0"]):
        subprocess.run([h5clear, *args, str(path)], check=True, capture_output=True, timeout=60)
    out = subprocess.run([sys.executable, "-c", TEAR, str(path), str(TESTS)], check=True,
                         capture_output=True, text=True, timeout=60)
    return int(out.stdout.strip())
