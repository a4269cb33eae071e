"""Prompts the fleet finished, per interval over the last hour: the console's throughput chart.

Each worker tallies in memory the prompts it finishes (``ThroughputTally.count``, called
by its metrics when a prompt gets its result), by interval of ``INTERVAL_SECONDS``:
succeeded, failed, cancelled, and the failures by error type. Its loop adds the
tallies to the fleet's every ``FLUSH_SECONDS``, one Redis call per flush whatever the
number of prompts (``contract/lua/count_throughput.lua``), into one small hash that
keeps only the last ``WINDOW_SECONDS`` and expires when nobody writes. The console
reads it whole in one call (``read_throughput``).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from redis.asyncio import Redis

from contract import keys
from contract.retrying import TRANSIENT, RedisBackoff
from contract.scripts import ScriptBook

INTERVAL_SECONDS = 30
WINDOW_SECONDS = 3600
FLUSH_SECONDS = 2.0
KINDS = ("succeeded", "failed", "cancelled")
ERROR = "error:"  # a failure's type, as <ERROR><Type>
SITE = "site:"  # an answer's site, as <SITE><name>


def interval_of(epoch_s: float) -> int:
    """The start (epoch s) of the interval holding this moment."""
    return int(epoch_s // INTERVAL_SECONDS) * INTERVAL_SECONDS


class ThroughputTally:
    """One worker's prompts finished, by interval, until its loop adds them to the fleet's."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._counts: Counter[str] = Counter()
        self._backoff = RedisBackoff("throughput")
        self._scripts: ScriptBook | None = None

    def count(self, status: str, error_type: str | None, site: str | None = None) -> None:
        start = interval_of(self._clock())
        self._counts[f"{start}|{status}"] += 1
        if status == "failed" and error_type:
            self._counts[f"{start}|{ERROR}{error_type}"] += 1
        if status == "succeeded" and site:
            self._counts[f"{start}|{SITE}{site}"] += 1

    async def flush(self, redis: Redis) -> None:
        """Adds the tallies so far to the fleet's (kept for the next flush if Redis is away)."""
        if not self._counts:
            return
        counts, self._counts = self._counts, Counter()
        oldest = interval_of(self._clock()) - WINDOW_SECONDS
        pairs = [item for name, count in counts.items() for item in (name, count)]
        if self._scripts is None or self._scripts.redis is not redis:
            self._scripts = ScriptBook(redis, "contract", ["count_throughput"])
        try:
            await self._scripts.run(
                "count_throughput", [keys.throughput()], [oldest, WINDOW_SECONDS * 2, *pairs]
            )
        except BaseException:
            self._counts.update(counts)  # counted at the next flush instead
            raise

    async def run(self, redis: Redis) -> None:
        """Flushes every ``FLUSH_SECONDS`` until cancelled; Redis away is waited out."""
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            try:
                await self.flush(redis)
            except TRANSIENT as error:
                await self._backoff.wait(error)
                continue
            self._backoff.reset()


@dataclass(frozen=True)
class Interval:
    start: int  # epoch s
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    errors: dict[str, int] = field(default_factory=dict)  # failures by error type
    sites: dict[str, int] = field(default_factory=dict)  # answers by site

    @property
    def finished(self) -> int:
        return self.succeeded + self.failed + self.cancelled


async def read_throughput(redis: Redis, now_s: float) -> list[Interval]:
    """Every interval of the last hour, oldest first (empty ones included), in one call."""
    return intervals_of(await redis.hgetall(keys.throughput()), now_s)


def intervals_of(raw: dict[bytes, bytes], now_s: float) -> list[Interval]:
    """The intervals the fleet's throughput hash (read whole, as ``raw``) holds: every one
    of the last hour, oldest first, empty ones included."""
    counts: dict[int, Counter[str]] = {}
    for name, value in raw.items():
        start_text, _, what = keys.decoded(name).partition("|")
        if start_text.isdigit():
            counts.setdefault(int(start_text), Counter())[what] += int(value)
    last = interval_of(now_s)
    intervals = []
    for start in range(last - WINDOW_SECONDS + INTERVAL_SECONDS, last + 1, INTERVAL_SECONDS):
        found = counts.get(start, Counter())
        errors = {k.removeprefix(ERROR): v for k, v in found.items() if k.startswith(ERROR)}
        sites = {k.removeprefix(SITE): v for k, v in found.items() if k.startswith(SITE)}
        intervals.append(
            Interval(start, *(found[kind] for kind in KINDS), errors=errors, sites=sites)
        )
    return intervals
