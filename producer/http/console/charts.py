"""The console's charts as SVG shapes, computed here and drawn by the templates: the fleet's
throughput over the last hour, and each batch's progress bar.

Server-side, so the charts are in the page's HTML (no script draws them, nothing to
trust in the browser, and no inline style: the CSP allows none) and the live update
swaps them like any other part. Each throughput interval is a stacked bar: succeeded,
then failed, then cancelled.
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


# -- a batch's progress -----------------------------------------------------------------

BAR_WIDTH = 1000  # the bar's viewBox width; the page scales it
BAR_KINDS = ("succeeded", "failed", "cancelled", "expired")


@dataclass(frozen=True)
class Segment:
    kind: str  # succeeded, failed, cancelled or expired (the CSS class)
    count: int
    x: float
    width: float


@dataclass(frozen=True)
class ProgressBar:
    """A batch's prompts as one bar: each outcome its own colour, what is left the track.

    Expired prompts are failed ones (``Expired``) shown apart, so that a batch whose
    window ended looks like it, not like a success."""

    segments: list[Segment]
    finished: int
    total: int

    @property
    def label(self) -> str:
        """The bar in words (its text alternative)."""
        if not self.total:
            return "no prompts"
        parts = [f"{s.count:,} {s.kind}" for s in self.segments]
        left = self.total - self.finished
        return ", ".join([*parts, *([f"{left:,} not finished"] if left else [])]) + (
            f" of {self.total:,}"
        )


def progress_bar(
    succeeded: int, failed: int, cancelled: int, expired: int, total: int
) -> ProgressBar:
    counts = dict(zip(BAR_KINDS, (succeeded, max(0, failed - expired), cancelled, expired),
                      strict=True))  # fmt: skip
    segments, x = [], 0.0
    for kind in BAR_KINDS:
        if counts[kind] and total:
            width = BAR_WIDTH * counts[kind] / total
            segments.append(Segment(kind, counts[kind], round(x, 2), round(width, 2)))
            x += width
    return ProgressBar(segments, succeeded + failed + cancelled, total)
