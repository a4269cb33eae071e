"""The throughput chart as SVG shapes, computed here and drawn by the template.

Server-side, so the chart is in the page's HTML (no script draws it, nothing to
trust in the browser) and the live update swaps it like any other part. Each
interval is a stacked bar: succeeded, then failed, then cancelled.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from contract.throughput import Interval

WIDTH, HEIGHT = 720, 160
LEFT, BOTTOM = 44, 18  # room for the axis labels
KINDS = ("succeeded", "failed", "cancelled")


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    kind: str  # succeeded, failed or cancelled (the CSS class)
    title: str


@dataclass(frozen=True)
class Chart:
    bars: list[Bar]
    peak: int  # the y axis's top, in prompts per interval
    ticks: list[tuple[float, str, str]]  # (x, label, text-anchor) under the x axis
    total: int
    errors: list[tuple[str, int]]  # failures by type over the hour, most first

    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    bottom: int = BOTTOM


def nice_peak(value: int) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50, ... at or above ``value``."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return step * factor
        step *= 10


def throughput_chart(intervals: Sequence[Interval]) -> Chart:
    plot_w, plot_h = WIDTH - LEFT, HEIGHT - BOTTOM
    peak = nice_peak(max((i.finished for i in intervals), default=0) or 1)
    slot = plot_w / max(1, len(intervals))
    bars: list[Bar] = []
    for n, interval in enumerate(intervals):
        x, base = LEFT + n * slot, float(plot_h)
        when = datetime.fromtimestamp(interval.start).strftime("%H:%M:%S")
        for kind in KINDS:
            count = getattr(interval, kind)
            if not count:
                continue
            height = plot_h * count / peak
            base -= height
            bars.append(Bar(round(x + 0.5, 1), round(base, 1), round(max(1.0, slot - 1), 1),
                            round(height, 1), kind, f"{when}: {count:,} {kind}"))  # fmt: skip
    ticks = []
    if intervals:
        last = len(intervals) - 1
        for n, anchor in ((0, "start"), (last // 2, "middle"), (last, "end")):
            moment = datetime.fromtimestamp(intervals[n].start).strftime("%H:%M")
            x = LEFT + (n + 1) * slot if anchor == "end" else LEFT + n * slot
            ticks.append((round(x, 1), moment, anchor))
    errors: Counter[str] = Counter()
    for interval in intervals:
        errors.update(interval.errors)
    return Chart(bars, peak, ticks, sum(i.finished for i in intervals), errors.most_common(8))
