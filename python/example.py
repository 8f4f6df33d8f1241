"""Load a corpus in three lines, then a few things a data person does with it.

    /usr/bin/python3 python/example.py storage/p0007/corpus.h5
"""
import sys
from collections import Counter

import fi_corpus

path = sys.argv[1] if len(sys.argv) > 1 else "corpus.h5"

with fi_corpus.open(path) as corpus:
    rows = list(corpus)

print(f"{len(rows)} events, {len({r.consultation_id for r in rows})} consultations")
for row in rows[:3]:
    print(row.stream_id, row.consultation_id, row.received_at_ms, row.text()[:80])
busiest = Counter(r.consultation_id for r in rows).most_common(1)
if busiest:
    print("busiest consultation:", busiest[0][0], busiest[0][1], "events")
