"""The fleet's throughput by interval: tallied in a worker, added up in one small hash that keeps
only the last hour, read whole in one call — on fakeredis and on a real redis-server."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from contract import keys
from contract.throughput import (
    INTERVAL_SECONDS,
    WINDOW_SECONDS,
    ThroughputTally,
    interval_of,
    read_throughput,
)
from simulator.local import free_port
from worker.metrics import WorkerMetrics

NOW = 1_800_000_000.0  # an interval start


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_two_workers_tallies_add_up_by_interval(redis) -> None:
    clock = Clock(NOW)
    first, second = ThroughputTally(clock), ThroughputTally(clock)
    first.count("succeeded", None)
    first.count("failed", "ContentRefused")
    second.count("succeeded", None)
    clock.now += INTERVAL_SECONDS
    second.count("cancelled", "Cancelled")
    second.count("failed", "UpstreamTimeout")
    await first.flush(redis)
    await second.flush(redis)
    intervals = await read_throughput(redis, clock.now)
    assert len(intervals) == WINDOW_SECONDS // INTERVAL_SECONDS
    *_, before, last = intervals
    assert (before.start, before.succeeded, before.failed, before.cancelled) == (NOW, 2, 1, 0)
    assert before.errors == {"ContentRefused": 1}
    assert (last.succeeded, last.failed, last.cancelled, last.finished) == (0, 1, 1, 2)
    assert last.errors == {"UpstreamTimeout": 1}
    assert 0 < await redis.ttl(keys.throughput()) <= 2 * WINDOW_SECONDS


async def test_intervals_older_than_the_window_are_dropped(redis) -> None:
    clock = Clock(NOW)
    tally = ThroughputTally(clock)
    tally.count("succeeded", None)
    await tally.flush(redis)
    clock.now += WINDOW_SECONDS + INTERVAL_SECONDS
    tally.count("succeeded", None)
    await tally.flush(redis)
    fields = await redis.hkeys(keys.throughput())
    assert fields == [f"{interval_of(clock.now)}|succeeded".encode()]
    assert sum(i.finished for i in await read_throughput(redis, clock.now)) == 1


async def test_a_flush_that_fails_keeps_its_counts_for_the_next(redis) -> None:
    tally = ThroughputTally(Clock(NOW))
    tally.count("succeeded", None)

    away = Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.2)
    with pytest.raises(RedisConnectionError):
        await tally.flush(away)
    await away.aclose()
    await tally.flush(redis)
    assert (await read_throughput(redis, NOW))[-1].succeeded == 1


def test_the_workers_metrics_feed_it() -> None:
    metrics = WorkerMetrics()
    metrics.prompt_finished("failed", "Blocked")
    assert sum(metrics.throughput._counts.values()) == 2  # the failure, and its type
