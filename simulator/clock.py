"""Time as a dependency: the real wall clock, or a manual one tests move by hand."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""
        ...


class SystemClock:
    """The wall clock (nonce ticks are wall-clock based, as in WordPress)."""

    def now(self) -> float:
        return time.time()


class ManualClock:
    """A clock that only moves when told to, so tests expire nonces and bans without sleeping."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds

    def set(self, when: float) -> None:
        self._now = when
