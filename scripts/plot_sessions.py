#!/usr/bin/python3
"""Plot p95 (and p50, p99) request latency against sessions/day from `Benchmarks/run.sh sessions` CSVs.

    /usr/bin/python3 scripts/plot_sessions.py OUT.png RUN.csv [RUN2.csv …]

The x axis is the load applied, in sessions/day of real time (target × compression), since that
is what the latency responds to; milestones are labelled with their own sessions/day. Needs
matplotlib (Debian: apt-get install python3-matplotlib); not run in CI.
"""
import csv
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    out, paths = sys.argv[1], sys.argv[2:]
    fig, ax = plt.subplots(figsize=(8, 5))
    markers = ["o", "s", "^", "D"]
    for i, path in enumerate(paths):
        data = sorted(rows(path), key=lambda r: float(r["applied_sessions_per_day"]))
        name = os.path.basename(path).rsplit(".", 1)[0]
        x = [float(r["applied_sessions_per_day"]) for r in data]
        for q, style in (("p95_ms", "-"), ("p50_ms", ":"), ("p99_ms", "--")):
            ax.plot(x, [float(r[q]) for r in data], style, marker=markers[i % len(markers)] if q == "p95_ms" else None,
                    label=f"{q[:3]} ({name})", linewidth=2 if q == "p95_ms" else 1)
        for r in data:
            if r["label"].startswith("milestone-"):
                ax.annotate(f'{int(float(r["target_sessions_per_day"])):,}/day',
                            (float(r["applied_sessions_per_day"]), float(r["p95_ms"])),
                            textcoords="offset points", xytext=(4, 6), fontsize=8)
    ax.axhline(50, color="grey", linewidth=1, linestyle="-.", label="50 ms target")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("load applied, sessions/day (real-time equivalent; 20 requests per session)")
    ax.set_ylabel("request latency, ms")
    ax.set_title("fi-server under fi-load: latency vs sessions/day (2 shared cores)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
