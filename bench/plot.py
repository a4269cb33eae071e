"""Plots the service beside its references: prompts/s by pool size and by concurrency.

    .venv/bin/python bench/plot.py INPUT.json OUTPUT.png

INPUT is ``{"title": str, "pool_sweep": [{"identities": 10, "service": 300.1,
"service_before": 120.0, "plain_curl": 800.0, "per_call": 400.0}, ...],
"concurrency_sweep": [{"concurrency": 10, "service": ..., "plain_curl": ...,
"per_call": ..., "arq_noop": ...}, ...]}``; any series may be missing from any row,
and a sweep may be missing or empty.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.axes import Axes

# name → (legend label, colour, marker, line style, label offset in points); the order is
# the legend's. per_call's values go below its points so they do not sit on the service's.
SERIES: dict[str, tuple[str, str, str, str, int]] = {
    "service": ("service (arq workers)", "tab:blue", "o", "-", -13),
    "service_steady": ("service, steady rate", "tab:cyan", "v", "-.", 7),
    "allowance": ("the pool's total allowance (1,000/s)", "black", "", ":", 0),
    "service_before": ("service before: one arq job per prompt", "tab:red", "x", ":", -13),
    "plain_curl": ("plain curl_cffi: 1 handshake, POSTs only", "tab:green", "s", "--", 7),
    "per_call": ("per-call provider: GET + POST per prompt", "tab:orange", "^", "--", -13),
    "arq_noop": ("arq no-op job (jobs/s)", "tab:gray", "D", ":", 7),
}


def points(rows: list[dict[str, Any]], x_key: str, name: str) -> tuple[list[float], list[float]]:
    """(x, y) of one series, in x order, over the rows that have it."""
    pairs = sorted(
        (float(row[x_key]), float(row[name]))
        for row in rows
        if row.get(name) is not None and row.get(x_key) is not None
    )
    return [x for x, _ in pairs], [y for _, y in pairs]


def annotate(ax: Axes, xs: list[float], ys: list[float], colour: str, offset: int) -> None:
    for x, y in zip(xs, ys, strict=True):
        ax.annotate(f"{y:,.0f}", (x, y), textcoords="offset points", xytext=(0, offset),
                    ha="center", fontsize=7, color=colour, alpha=0.8)  # fmt: skip


def panel(
    ax: Axes,
    rows: list[dict[str, Any]],
    x_key: str,
    names: tuple[str, ...],
    labels: tuple[str, str],
) -> None:
    """One panel: a line per series present, log x, values written lightly above the points."""
    drawn = 0
    for name in names:
        xs, ys = points(rows, x_key, name)
        if not xs:
            continue
        label, colour, marker, style, offset = SERIES[name]
        ax.plot(xs, ys, marker=marker, linestyle=style, color=colour, label=label)
        if offset:  # a flat reference line is named in the legend, not at each point
            annotate(ax, xs, ys, colour, offset)
        drawn += 1
    ax.set_xscale("log")
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    ax.set_ylim(0, ax.get_ylim()[1] * 1.06)  # room for the values above the highest points
    ax.grid(True, which="major", alpha=0.4)
    ax.grid(True, which="minor", alpha=0.15)
    xs = sorted({float(row[x_key]) for row in rows if row.get(x_key) is not None})
    if xs:
        ax.set_xticks(xs, [f"{x:g}" for x in xs])
        ax.minorticks_off()
    if drawn:
        ax.legend(fontsize=8, loc="best")
    else:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)


def plot(data: dict[str, Any], output: Path) -> None:
    figure, (by_pool, by_concurrency) = plt.subplots(1, 2, figsize=(13, 5), layout="constrained")
    pool_series = ("service", "service_steady", "allowance", "service_before", "plain_curl",
                   "per_call")  # fmt: skip
    panel(by_pool, data.get("pool_sweep") or [], "identities", pool_series,
          ("pool size (identities)", "prompts/s"))  # fmt: skip
    by_pool.set_title("(a) by pool size, cold runs")
    panel(by_concurrency, data.get("concurrency_sweep") or [], "concurrency",
          ("service", "service_before", "plain_curl", "per_call", "arq_noop"),
          ("concurrency (requests in flight)", "prompts/s (arq no-op: jobs/s)"))  # fmt: skip
    by_concurrency.set_title("(b) by concurrency")
    figure.suptitle(data.get("title") or "prompts/s against the references")
    figure.savefig(output, dpi=120)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", type=Path, help="JSON of the sweeps")
    parser.add_argument("output", type=Path, help="PNG to write")
    args = parser.parse_args()
    plot(json.loads(args.input.read_text()), args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
