"""A batch's pace on its page: speed over the last minute, elapsed time, ETA.

Speed needs two readings of the batch's progress. ``serve`` keeps the readings it took
(each view of a batch, and each of its live updates every 2 s) for the last minute, per
batch, in memory; the figures are ``producer.pace``'s, the ones ``top`` shows. Until a
second reading exists (the first view), the speed is the average since the batch began,
and the page says so.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass

from contract.models import BatchStatus
from producer.pace import Reading, eta_seconds, rate_over

WINDOW_SECONDS = 60.0
BATCHES_KEPT = 500  # the batches whose readings are kept (the least recently viewed go)
READINGS_KEPT = 64  # per batch (a live update every 2 s: 30 a minute, several viewers)
ENDED_AT = ("completed_at", "failed_at", "expired_at", "cancelled_at")


@dataclass(frozen=True)
class Pace:
    rate: float | None  # prompts finished per second
    over: str  # "the last minute", "the last 12s" or "since it began"
    elapsed: float | None  # seconds since it began (to its end, once ended)
    eta: float | None  # seconds left at that rate (None: no rate yet, or ended)

    @property
    def backlog_shown(self) -> bool:
        return self.eta is not None


def elapsed(status: BatchStatus, now: float) -> float | None:
    began = status.in_progress_at or status.created_at
    if began is None:
        return None
    ended = [moment for name in ENDED_AT if (moment := getattr(status, name)) is not None]
    end = max(ended).timestamp() if status.done and ended else now
    return max(0.0, end - began.timestamp())


class PaceBook:
    def __init__(self) -> None:
        self._readings: OrderedDict[str, deque[Reading]] = OrderedDict()

    def read(self, status: BatchStatus, now: float) -> Pace:
        """Notes this reading of ``status`` and says the pace."""
        spent = elapsed(status, now)
        if status.done:
            self._readings.pop(status.batch_id, None)
            average = status.finished / spent if spent else None
            return Pace(average, "in all", spent, None)
        readings = self._readings.pop(status.batch_id, None) or deque(maxlen=READINGS_KEPT)
        readings.append((now, status.finished))
        while len(readings) > 2 and now - readings[0][0] > WINDOW_SECONDS:
            readings.popleft()
        self._readings[status.batch_id] = readings
        while len(self._readings) > BATCHES_KEPT:
            self._readings.popitem(last=False)
        left = status.total - status.finished
        rate = rate_over(list(readings), WINDOW_SECONDS)
        if rate is None:
            since = status.finished / spent if spent else None
            return Pace(since, "since it began", spent, eta_seconds(left, since))
        span = now - readings[0][0]
        over = "the last minute" if span >= WINDOW_SECONDS - 1 else f"the last {span:.0f}s"
        return Pace(rate, over, spent, eta_seconds(left, rate))
