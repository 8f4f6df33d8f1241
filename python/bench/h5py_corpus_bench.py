"""h5py reference for `fi-bench storage`: appends the corpus layout of Docs/contract.md §5
(libver latest, SWMR write, same chunking, fill time never) in batches with the
same durability as FIStorage — H5Fflush(GLOBAL) per batch, then fdatasync of the file.

    /usr/bin/python3 python/bench/h5py_corpus_bench.py OUT.h5 [-n 100000] [--batch 256]
        [--payload-bytes 1024] [--no-fsync] [--row-chunk 8192] [--payload-chunk 1048576]

Prints one `RESULT impl=h5py …` line.
"""
import argparse
import os
import time

import h5py
import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("-n", type=int, default=100_000)
ap.add_argument("--batch", type=int, default=256)
ap.add_argument("--payload-bytes", type=int, default=1024)
ap.add_argument("--no-fsync", action="store_true")
ap.add_argument("--row-chunk", type=int, default=8192)
ap.add_argument("--payload-chunk", type=int, default=1 << 20)
args = ap.parse_args()

BASE = 1_700_000_000_000
payload = b'{"x":"' + b"a" * (args.payload_bytes - 8) + b'"}'
# Inputs prepared up front, as for the Swift side: one record = (cid, sid, t, payload).
records = [("0f0e0d0c-0b0a-4908-8706-050403020100", f"{BASE + i}-0", i, payload) for i in range(args.n)]

if os.path.exists(args.out):
    os.unlink(args.out)
f = h5py.File(args.out, "w", libver="latest")
g = f.create_group("events")


def make(name, dtype, chunk):
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_chunk((chunk,))
    dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
    space = h5py.h5s.create_simple((0,), (h5py.h5s.UNLIMITED,))
    tid = h5py.h5t.py_create(dtype, logical=True)
    if dtype.kind == "S":
        tid = h5py.h5t.C_S1.copy()
        tid.set_size(dtype.itemsize)
        tid.set_strpad(h5py.h5t.STR_NULLPAD)
        tid.set_cset(h5py.h5t.CSET_UTF8 if name == "consultation_id" else h5py.h5t.CSET_ASCII)
    dsid = h5py.h5d.create(g.id, name.encode(), tid, space, dcpl=dcpl)
    return h5py.Dataset(dsid)


cid = make("consultation_id", np.dtype("S128"), args.row_chunk)
sid = make("stream_id", np.dtype("S41"), args.row_chunk)
rat = make("received_at_ms", np.dtype("<i8"), args.row_chunk)
pend = make("payload_end", np.dtype("<u8"), args.row_chunk)
pay = make("payload", np.dtype("u1"), args.payload_chunk)
f.swmr_mode = True
fd = f.id.get_vfd_handle()

def write(ds, start, values):
    # Low-level write with the file type as memory type: numpy "S" is ASCII, and
    # HDF5 has no ASCII -> UTF-8 string conversion for consultation_id.
    fspace = ds.id.get_space()
    fspace.select_hyperslab((start,), (len(values),))
    ds.id.write(h5py.h5s.create_simple((len(values),)), fspace, values, mtype=ds.id.get_type())


rows = 0
nbytes = 0
cpu0 = time.process_time()
t0 = time.perf_counter()
for lo in range(0, args.n, args.batch):
    batch = records[lo:lo + args.batch]
    k = len(batch)
    blob = b"".join(r[3] for r in batch)
    ends = nbytes + np.cumsum(np.fromiter((len(r[3]) for r in batch), dtype=np.uint64, count=k), dtype=np.uint64)
    pay.resize((nbytes + len(blob),))
    write(pay, nbytes, np.frombuffer(blob, dtype=np.uint8))
    for ds, values in ((cid, np.array([r[0].encode() for r in batch], dtype="S128")),
                       (sid, np.array([r[1].encode() for r in batch], dtype="S41")),
                       (rat, np.fromiter((r[2] for r in batch), dtype=np.int64, count=k)),
                       (pend, ends)):
        ds.resize((rows + k,))
        write(ds, rows, values)
    f.flush()
    if not args.no_fsync:
        os.fdatasync(fd)  # the same call FIStorage makes
    rows += k
    nbytes += len(blob)
dt = time.perf_counter() - t0
cpu = time.process_time() - cpu0
f.close()
size = os.path.getsize(args.out)
print(f"RESULT bench=storage impl=h5py batch={args.batch} fsync={'no' if args.no_fsync else 'yes'} "
      f"compression=none events={rows} seconds={dt:.3f} events_per_s={rows / dt:.0f} cpu_us_per_event={cpu / rows * 1e6:.2f} "
      f"file_mb={size / 1e6:.1f}", flush=True)
