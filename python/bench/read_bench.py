"""Read benchmark for fi-corpus (issue: a 1,000,000-row partition into a DataFrame at >= 0.8x the
speed of h5py reading the same datasets raw; Parquet export of it).

    python python/bench/read_bench.py --build /tmp/fi-read-bench [-n 1000000] [--payload-bytes 1024]
    python python/bench/read_bench.py --corpus STORE/site_a/corpus.h5

--build writes <dir>/site_bench/corpus.h5 with h5py in the corpus layout (Docs/contract.md §5: same
types, chunking, libver; python/tests/h5writer.py) unless it is there already: 10,000 consultations
x 100 events, UUID-style ids, events of about --payload-bytes of JSON. Then, with the file in the
page cache (one untimed read first), --repeat interleaved rounds of:

  raw        h5py: File(path, "r", swmr=True)["events/<name>"][:] for all five datasets
  dataframe  fi_corpus.open(path).to_pandas()   (Arrow-backed columns, payload as bytes)

then once each: the DataFrame with dtype_backend="numpy" (object columns of str/bytes), and
`fi-corpus export --format parquet` of the partition (zstd). Prints one `RESULT bench=read …` line
with the medians (wall clock, and CPU seconds of the process, all threads); ratio = raw / dataframe
wall time (>= 0.8 is the target).
"""
import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import h5py
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import fi_corpus  # noqa: E402
from fi_corpus import cli  # noqa: E402

NAMES = ("consultation_id", "stream_id", "received_at_ms", "payload_end", "payload")


def build(path: Path, n: int, payload_bytes: int) -> None:
    from h5writer import CorpusFileWriter, synthetic_payloads
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("corpus.h5.building")
    t0 = time.perf_counter()
    block = 100_000
    base = 1_767_225_600_000  # 2026-01-01T00:00:00Z
    with CorpusFileWriter(str(tmp)) as w:
        for lo in range(0, n, block):
            k = min(block, n - lo)
            idx = np.arange(lo, lo + k)
            cids = np.array([f"{i % 10000:08x}-0b0a-4908-8706-{i % 10000:012x}".encode() for i in idx], dtype="S128")
            ms = base + idx * 3  # ~333 events/s
            sids = np.array([f"{m}-{i % 2}".encode() for m, i in zip(ms.tolist(), idx.tolist())], dtype="S41")
            lengths, blob = synthetic_payloads(k, payload_bytes, site="bench", seed=lo)
            w.append_arrays(cids, sids, ms, lengths, blob)
            w.flush()
    os.replace(tmp, path)
    print(f"built {path}: {n:,} rows, {path.stat().st_size / 1e6:,.0f} MB in {time.perf_counter() - t0:.1f} s",
          flush=True)


def read_raw(path: str):
    with h5py.File(path, "r", swmr=True, locking=False) as f:
        e = f["events"]
        return {name: e[name][:] for name in NAMES}


def read_frame(path: str, **kw):
    with fi_corpus.open(path) as c:
        return c.to_pandas(**kw)


CPU = {}


def timed(fn, *args, **kw):
    """Wall seconds and the result; CPU seconds of this process (all threads) go to CPU[fn]."""
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn(*args, **kw)
    wall = time.perf_counter() - t0
    CPU.setdefault((fn.__name__, tuple(sorted(kw.items()))), []).append(time.process_time() - c0)
    return wall, out


def main() -> int:
    ap = argparse.ArgumentParser()
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--build", metavar="DIR", help="build (once) and use DIR/site_bench/corpus.h5")
    src.add_argument("--corpus", metavar="FILE", help="an existing corpus.h5 (its directory is the partition)")
    ap.add_argument("-n", type=int, default=1_000_000)
    ap.add_argument("--payload-bytes", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=3, help="interleaved raw/dataframe rounds (default 3)")
    ap.add_argument("--no-parquet", action="store_true")
    args = ap.parse_args()

    path = Path(args.corpus) if args.corpus else Path(args.build) / "site_bench" / "corpus.h5"
    if args.build and not path.exists():
        build(path, args.n, args.payload_bytes)
    path_s = str(path)
    with fi_corpus.open(path_s) as c:
        rows, payload_bytes = len(c), c.payload_bytes
    print(f"corpus {path_s}: {rows:,} rows, payload {payload_bytes / 1e6:,.0f} MB, "
          f"file {path.stat().st_size / 1e6:,.0f} MB", flush=True)

    read_raw(path_s)  # page cache warm; the timed reads measure h5py/HDF5 and our conversions
    with fi_corpus.open(path_s) as c:  # pandas and pyarrow imported before the first timed read
        c.to_pandas(0, 1000)
    raw_t, df_t = [], []
    for r in range(args.repeat):
        t, raw = timed(read_raw, path_s)
        raw_t.append(t)
        del raw
        t, df = timed(read_frame, path_s)
        df_t.append(t)
        assert len(df) == rows
        if r == 0:
            assert df.payload.iloc[-1] == fi_corpus.open(path_s).row(rows - 1).payload
        del df
        print(f"round {r + 1}: raw h5py {raw_t[-1]:.3f} s, DataFrame {df_t[-1]:.3f} s "
              f"(ratio {raw_t[-1] / df_t[-1]:.2f}; CPU {CPU[('read_raw', ())][-1]:.3f} / "
              f"{CPU[('read_frame', ())][-1]:.3f} s)", flush=True)
    numpy_t, df = timed(read_frame, path_s, dtype_backend="numpy")
    del df
    print(f"DataFrame, numpy object columns: {numpy_t:.3f} s", flush=True)

    parquet_t = parquet_mb = float("nan")
    if not args.no_parquet:
        out = path.parent.parent / "bench-export.parquet"
        store_root, key = str(path.parent.parent), path.parent.name
        t0 = time.perf_counter()
        status = cli.main(["export", store_root, "--partition", key, "--format", "parquet", "-o", str(out),
                           "--no-progress", "-q"])
        parquet_t = time.perf_counter() - t0
        assert status == 0
        parquet_mb = out.stat().st_size / 1e6
        import pyarrow.parquet as pq
        assert pq.ParquetFile(out).metadata.num_rows == rows
        print(f"parquet export (zstd): {parquet_t:.2f} s, {parquet_mb:,.0f} MB", flush=True)
        out.unlink()

    raw_m, df_m = statistics.median(raw_t), statistics.median(df_t)
    raw_cpu = statistics.median(CPU[("read_raw", ())])
    df_cpu = statistics.median(CPU[("read_frame", ())])
    print(f"RESULT bench=read rows={rows} payload_mb={payload_bytes / 1e6:.0f} raw_h5py_s={raw_m:.3f} "
          f"dataframe_s={df_m:.3f} ratio_raw_over_dataframe={raw_m / df_m:.2f} "
          f"raw_cpu_s={raw_cpu:.3f} dataframe_cpu_s={df_cpu:.3f} "
          f"dataframe_numpy_objects_s={numpy_t:.3f} parquet_export_s={parquet_t:.2f} parquet_mb={parquet_mb:.0f} "
          f"h5py={h5py.__version__} hdf5={h5py.version.hdf5_version} repeat={args.repeat}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
