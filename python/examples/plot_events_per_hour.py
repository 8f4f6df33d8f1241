"""Events per hour per site, from a corpus store, as a PNG — the first picture a data person makes.

    python python/examples/plot_events_per_hour.py STORE -o events-per-hour.png
    python python/examples/plot_events_per_hour.py STORE -o events-per-hour.png \\
        --make-corpus --fi-server .build/debug/fi-server [--events 3000]

Needs fi-corpus with pandas (pip install "./python[pandas]") and matplotlib.

--make-corpus first fills STORE with a real corpus: it starts fi-server embedded (127.0.0.1, a free
port, --storage STORE), POSTs --events events of one simulated clinic day — sites a (a hospital,
busy around the clock), b (a clinic, 08-18) and c (a small clinic with a lunch break), and one in ten
without a site — in time order, then stops it with SIGTERM (every accepted event is persisted).
Each event carries the time it was recorded at the site, ``recorded_at``, in its JSON;
``received_at_ms`` is when fi-server received it, so for a corpus loaded in a few seconds it spans
only those seconds. The upper panel therefore counts events per hour of ``recorded_at`` (parsed
from the payload: ``to_pandas(payload="json")``); the lower one counts what the server received
per second of ``received_at_ms`` during the load.
"""
import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone

import fi_corpus

DAY = datetime(2026, 3, 2, tzinfo=timezone.utc)  # a Monday
SITES = {  # site: (share of events, hourly weights 0..23)
    "a": (0.45, [3, 2, 2, 2, 2, 3, 5, 8, 12, 14, 14, 13, 11, 12, 13, 13, 12, 10, 9, 8, 7, 6, 5, 4]),
    "b": (0.30, [0] * 8 + [9, 14, 15, 13, 10, 12, 14, 13, 11, 6] + [0] * 6),
    "c": (0.15, [0] * 9 + [10, 14, 12, 1, 0, 9, 12, 10, 5] + [0] * 6),
    None: (0.10, [1] * 7 + [3] * 12 + [1] * 5),
}


def simulated_events(n: int, seed: int = 42):
    """(consultation_id, body) in recorded_at order: consultations of 3-12 events, minutes apart."""
    rng = random.Random(seed)
    events = []
    while len(events) < n:
        site = rng.choices(list(SITES), [s[0] for s in SITES.values()])[0]
        hour = rng.choices(range(24), SITES[site][1])[0]
        t = DAY + timedelta(hours=hour, minutes=rng.randrange(60))
        cid = "%08x-%04x-4%03x-8%03x-%012x" % (rng.getrandbits(32), rng.getrandbits(16), rng.getrandbits(12),
                                              rng.getrandbits(12), rng.getrandbits(48))
        for k in range(rng.randint(3, 12)):
            t += timedelta(seconds=rng.randint(20, 240))
            body = {"recorded_at": t.strftime("%Y-%m-%dT%H:%M:%SZ"), "kind": rng.choice(["note", "vitals", "order"]),
                    "text": f"event {k} of consultation " + "x" * rng.randint(50, 900)}
            if site is not None:
                body["metadata"] = {"site_id": site}
            events.append((body["recorded_at"], cid, body))
    events.sort(key=lambda e: e[0])
    return [(cid, body) for _, cid, body in events[:n]]


def make_corpus(store: str, fi_server: str, n: int) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "FI_API_TOKENS_FILE")}
    proc = subprocess.Popen([fi_server, "--host", "127.0.0.1", "--port", str(port), "--storage", store,
                             "--log-level", "warning"], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(base + "/health", timeout=2).close()
                break
            except OSError:
                time.sleep(0.05)
        t0 = time.monotonic()
        for cid, body in simulated_events(n):
            req = urllib.request.Request(f"{base}/consultations/{cid}/events", method="POST",
                                         data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=30) as r:
                assert r.status == 202
        print(f"posted {n} events in {time.monotonic() - t0:.1f} s", file=sys.stderr)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    if code != 0:
        sys.exit(f"fi-server exited {code}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("store")
    ap.add_argument("-o", "--output", default="events-per-hour.png")
    ap.add_argument("--make-corpus", action="store_true")
    ap.add_argument("--fi-server", default=".build/debug/fi-server")
    ap.add_argument("--events", type=int, default=3000)
    args = ap.parse_args()
    if args.make_corpus:
        make_corpus(args.store, args.fi_server, args.events)

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    store = fi_corpus.open_store(args.store)
    df = store.to_pandas(payload="json", json_fields=["recorded_at", "metadata.site_id"])
    df["site"] = df["metadata.site_id"].fillna("no site").map(lambda s: s if s == "no site" else f"site {s}")
    df["recorded_at"] = pd.to_datetime(df["recorded_at"], utc=True)
    df["received_at"] = pd.to_datetime(df["received_at_ms"], unit="ms", utc=True)
    per_hour = df.groupby([df.recorded_at.dt.hour, "site"]).size().unstack(fill_value=0).reindex(range(24), fill_value=0)
    per_second = df.groupby([df.received_at.dt.floor("s"), "site"]).size().unstack(fill_value=0)

    palette = {"site a": "#1f77b4", "site b": "#ff7f0e", "site c": "#2ca02c", "no site": "#7f7f7f"}
    others = iter(plt.get_cmap("tab10").colors[3:])
    colors = {site: palette.get(site) or next(others) for site in per_hour.columns}
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7.5), gridspec_kw={"height_ratios": [3, 2]})
    per_hour.plot(ax=top, kind="bar", stacked=True, width=0.85, color=[colors[c] for c in per_hour.columns])
    top.set_title(f"Events per hour per site — {len(df):,} events, {df.consultation_id.nunique():,} consultations "
                  f"({', '.join(store.partition_keys())})", fontsize=10)
    top.set_xlabel(f"hour of recorded_at (UTC, {DAY:%Y-%m-%d}; the time in each event's JSON)")
    top.set_ylabel("events")
    top.tick_params(axis="x", rotation=0)
    top.legend(title=None, ncol=4, fontsize=9)
    secs = (per_second.index - per_second.index[0]).total_seconds()
    for site in per_second.columns:
        bottom.plot(secs, per_second[site].values, marker=".", label=site, color=colors[site])
    bottom.set_xlabel(f"seconds since {per_second.index[0]:%Y-%m-%d %H:%M:%S} UTC (received_at_ms: when fi-server received the event)")
    bottom.set_ylabel("events / s")
    bottom.legend(ncol=4, fontsize=9)
    bottom.grid(alpha=0.3)
    fig.text(0.01, 0.005, f"fi-corpus {fi_corpus.__version__}: store.to_pandas(payload=\"json\") of {args.store}",
             fontsize=7, color="gray")
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    fig.savefig(args.output, dpi=100)
    print(f"wrote {args.output}: {len(df)} events from {len(store.partition_keys())} partitions", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
