#!/usr/bin/python3
"""Plot FI Scale against its reference, one panel per measure, from `Benchmarks/run.sh summary`.

    /usr/bin/python3 scripts/plot_benchmarks.py Docs/data/benchmarks-summary.csv Docs/benchmarks-summary.png

Reads the summary CSV (measure, unit, fi_scale, reference, reference_name, ratio, date, command; each
figure the median of three interleaved rounds) and draws, for every measure that has a reference, two
bars — FI Scale and the reference — on a linear axis from zero, with the values on the bars and the
ratio in the panel's title: "N× the reference" (or "N % of the reference") where more is better,
"N× lower" for ms, µs and MB, where less is better. Measures without a reference are listed under the plot. Needs matplotlib: Debian's
python3-matplotlib (`apt-get install python3-matplotlib`, for /usr/bin/python3); not run in CI.
"""
import csv
import sys
import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

LOWER_IS_BETTER = {"ms", "µs", "MB"}
FI_COLOUR = "#1f6fb4"
REF_COLOUR = "#b0b0b0"


def number(value, unit):
    if unit in LOWER_IS_BETTER:
        return f"{value:.1f}"
    if value >= 1_000_000:
        return f"{value / 1e6:.2f} M"
    return f"{value:,.0f}"


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    src, out = sys.argv[1], sys.argv[2]
    with open(src, newline="") as f:
        rows = list(csv.DictReader(f))
    panels = [r for r in rows if r["reference"]]
    alone = [r for r in rows if not r["reference"]]

    n = len(panels)
    columns = n if n <= 5 else 3 if n in (6, 9) else 5 if n % 5 == 0 else 4
    lines = (len(panels) + columns - 1) // columns
    fig, axes = plt.subplots(lines, columns, figsize=(3.4 * columns, 3.8 * lines + 1.0), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")

    for ax, r in zip(axes.flat, panels):
        unit = r["unit"]
        fi, ref = float(r["fi_scale"]), float(r["reference"])
        bars = ax.bar([0, 1], [fi, ref], color=[FI_COLOUR, REF_COLOUR], width=0.6)
        for bar, value in zip(bars, (fi, ref)):
            ax.annotate(number(value, unit), (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        xytext=(0, 3), textcoords="offset points", ha="center", va="bottom", fontsize=9)
        ax.set_ylim(0, max(fi, ref) * 1.22)
        ax.set_xticks([0, 1])
        ax.set_xticklabels(["FI Scale", textwrap.fill(r["reference_name"], 24)], fontsize=7.5)
        better = "lower is better" if unit in LOWER_IS_BETTER else "higher is better"
        ax.set_ylabel(f"{unit} ({better})", fontsize=8)
        ax.tick_params(axis="y", labelsize=7.5)
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(
            lambda v, _: f"{v / 1e6:g} M" if v >= 1e6 else (f"{v / 1e3:g} k" if v >= 1e3 else f"{v:g}")))
        ax.spines[["top", "right"]].set_visible(False)
        if abs(fi / ref - 1) < 0.05:
            verdict = f"{fi / ref:.2f}× the reference"
        elif unit in LOWER_IS_BETTER:
            verdict = f"{ref / fi:.1f}× lower" if fi < ref else f"{fi / ref:.1f}× higher"
        elif fi >= ref:
            verdict = f"{fi / ref:.2f}× the reference"
        else:
            verdict = f"{fi / ref:.0%} of the reference"
        ax.set_title(f"{textwrap.fill(r['measure'], 38)}\n{verdict}", fontsize=9.5)

    dates = sorted({r["date"] for r in rows})
    fig.suptitle(f"FI Scale against its reference — medians of three interleaved rounds, {', '.join(dates)}",
                 fontsize=12)
    footer = "Benchmarks/run.sh summary on one 2-core VM; each panel: same work, same machine, same run."
    if alone:
        footer += "  Without a reference: " + "; ".join(
            f"{r['measure']}: {number(float(r['fi_scale']), r['unit'])} {r['unit']}" for r in alone) + "."
    fig.text(0.5, 0.01, textwrap.fill(footer, 190), ha="center", va="bottom", fontsize=8, color="#444444")
    fig.tight_layout(rect=(0, 0.04, 1, 0.96))
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main()
