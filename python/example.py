"""A store, a partition, or one corpus file: a few things a data person does first.

    python python/example.py storage               # the --storage directory: every partition
    python python/example.py storage/site_a        # one partition
    python python/example.py storage/site_a/corpus.h5

Needs only h5py and numpy (pip install ./python, or Debian's python3-h5py with PYTHONPATH=python).
"""
import os
import sys
from collections import Counter

import fi_corpus

path = sys.argv[1] if len(sys.argv) > 1 else "storage"

if os.path.isfile(path):  # one corpus file
    with fi_corpus.open(path) as corpus:
        parts = {os.path.basename(os.path.dirname(os.path.abspath(path))): list(corpus)}
else:
    if os.path.isfile(os.path.join(path, "corpus.h5")):  # one partition directory
        root, only = os.path.split(os.path.abspath(path))
    else:
        root, only = path, None
    store = fi_corpus.open_store(root)
    print("partitions:", ", ".join(f"{k} ({n} rows)" for k, n in store.row_counts().items()))
    keys = [only] if only else store.partition_keys()
    parts = {k: list(store.rows(k)) for k in keys}

rows = [r for part in parts.values() for r in part]
print(f"{len(rows)} events, {len({r.consultation_id for r in rows})} consultations")
for row in rows[:3]:
    print(row.stream_id, row.consultation_id, row.received_at_ms, row.text()[:80])
busiest = Counter(r.consultation_id for r in rows).most_common(1)
if busiest:
    print("busiest consultation:", busiest[0][0], busiest[0][1], "events")
