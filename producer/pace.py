"""How fast a batch goes: prompts finished per second between two readings, and what that
leaves (``top`` and the console show the same figures).

A reading is (when, prompts finished then). The rate over a window is taken between
the oldest reading within it and the newest; the ETA is what is left at that rate.
"""

from __future__ import annotations

from collections.abc import Sequence

Reading = tuple[float, int]  # (epoch seconds, prompts finished)


def rate_between(before: Reading, now: Reading) -> float | None:
    """Prompts finished per second from ``before`` to ``now``; None without time between."""
    (then, done_then), (at, done_now) = before, now
    if at <= then:
        return None
    return max(0.0, (done_now - done_then) / (at - then))


def rate_over(readings: Sequence[Reading], window: float) -> float | None:
    """The rate between the oldest reading of the last ``window`` seconds and the newest
    (the one just before them when none is that recent, as a window needs two ends)."""
    if len(readings) < 2:
        return None
    *earlier, now = readings
    within = [r for r in earlier if now[0] - r[0] <= window]
    return rate_between(within[0] if within else earlier[-1], now)


def eta_seconds(left: int, rate: float | None) -> float | None:
    """Seconds to finish ``left`` prompts at ``rate``; None when there is no rate yet."""
    if left <= 0:
        return 0.0
    if not rate:
        return None
    return left / rate
