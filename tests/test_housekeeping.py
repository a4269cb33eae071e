"""The housekeeper's chores: isolated from each other, bounded, and each queue's own.

On fakeredis and a real redis-server; the housekeeper is built as a worker builds it.
"""

from __future__ import annotations

import pytest

from contract import keys
from contract.chunks import WALK_START, ChunkQueue
from contract.config import QueueSettings
from contract.ledger import PromptLedger
from contract.stopping import BatchStopper
from producer.api import BatchQueue
from tests.batching import lines
from worker.config import WorkerConfig
from worker.housekeeping import Housekeeper
from worker.metrics import WorkerMetrics
from worker.sessions import SessionCache
from worker.sites import SiteSet

TTL = 3600


async def housekeeper(redis, queue_name: str = "q:a") -> Housekeeper:
    ledger = PromptLedger(redis, ttl_seconds=TTL)
    sites = SiteSet(WorkerConfig(redis_url="redis://127.0.0.1:9/0",
                                 upstream_url="http://127.0.0.1:9"), redis)  # fmt: skip
    await sites.register()  # as a worker does at its start
    return Housekeeper(
        redis, worker_id="host:1", sites=sites,
        sessions=SessionCache(redis, ttl_seconds=60, max_uses=10, wait_seconds=1,
                              metrics=WorkerMetrics()),
        stopper=BatchStopper(redis, queue_name=queue_name, ttl_seconds=TTL, ledger=ledger),
        queue=ChunkQueue(redis, queue_name=queue_name, ttl_seconds=TTL),
        metrics=WorkerMetrics(), chunk_size=2, gauges=lambda: None, counting=lambda: False,
    )  # fmt: skip


def producer(redis, queue_name: str) -> BatchQueue:
    return BatchQueue(redis, QueueSettings(redis_url="redis://unused", queue_name=queue_name,
                                           chunk_size=2))  # fmt: skip


async def strand(redis, queue_name: str, batch_id: str) -> None:
    """As when a chunk left the queue before its prompts settled (a bug, data lost)."""
    await redis.delete(queue_name)


async def test_the_sweep_leaves_other_queues_batches_alone(redis) -> None:
    """Regression (issue 20, 5): a sweep of queue A found queue B's chunks missing from A,
    and queued B's prompts into A every 30 s."""
    await producer(redis, "q:b").enqueue(lines(4), batch_id="theirs")
    keeper = await housekeeper(redis, "q:a")
    await keeper._sweep()
    assert await redis.zcard("q:a") == 0
    assert await redis.zcard("q:b") == 4  # its four chunks, where its producer put them


async def test_the_sweep_finds_every_stranded_batch_however_old(redis) -> None:
    """Regression: the sweep looked at the 100 newest batches only."""
    queue = producer(redis, "q:a")
    await queue.enqueue(lines(3), batch_id="old")
    await strand(redis, "q:a", "old")
    for n in range(120):
        await queue.enqueue(lines(1), batch_id=f"new{n}")
    keeper = await housekeeper(redis, "q:a")
    for _ in range(10):  # bounded steps: a pass may take more than one
        await keeper._sweep()
        if keeper._sweep_cursor is None:
            break
    status = await queue.status("old")
    assert status.queued == 3
    queued = [keys.decoded(c) for c in await redis.zrange("q:a", 0, -1)]
    assert any(c.startswith("old:s") for c in queued)


async def test_the_sweep_forgets_batches_that_ended(redis) -> None:
    queue = producer(redis, "q:a")
    await queue.enqueue(lines(2), batch_id="b1")
    await queue.cancel("b1")
    await (await housekeeper(redis, "q:a"))._sweep()
    assert await redis.zscore(keys.active_batches("q:a"), "b1") is None


async def test_a_failing_chore_stops_neither_the_others_nor_the_worker(redis, monkeypatch) -> None:
    """Regression (issue 20, 1): an error in the stop step killed the housekeeping loop, and
    with it the worker; the next holder of the lock died the same way."""
    keeper = await housekeeper(redis)
    ran: list[str] = []

    async def broken() -> None:
        raise ValueError("a record nobody can read")

    async def expiries() -> None:
        ran.append("expiry")

    monkeypatch.setattr(keeper, "_step_stops", broken)
    monkeypatch.setattr(keeper, "_begin_expiries", expiries)
    await keeper.tick()
    assert ran == ["expiry"]
    assert keeper.failing["stops"].times == 1
    assert keeper.failing_summary() == "stops: ValueError (1 times)"
    metrics = keeper.metrics.registry.get_sample_value(
        "chatgptes_chore_failures_total", {"chore": "stops"}
    )
    assert metrics == 1
    monkeypatch.setattr(keeper, "_step_stops", expiries)
    keeper.failing["stops"] = keeper.failing["stops"].__class__(1, "ValueError", 0.0)
    keeper._due.clear()
    await keeper.tick()  # its backoff over, it runs again, and succeeds
    assert "stops" not in keeper.failing and keeper.failing_summary() == ""


async def test_one_batch_whose_stop_fails_holds_up_no_other(redis, monkeypatch) -> None:
    queue = producer(redis, "q:a")
    for batch_id in ("bad", "good"):
        await queue.enqueue(lines(2), batch_id=batch_id)
        await queue.store.stopper.begin(batch_id, "cancelled")
    keeper = await housekeeper(redis, "q:a")
    real = keeper.stopper.step

    async def step(batch_id: str, why: str, limit: int = 2000) -> tuple[bool, int]:
        if batch_id == "bad":
            raise ValueError("broken")
        return await real(batch_id, why, limit)

    monkeypatch.setattr(keeper.stopper, "step", step)
    with pytest.raises(ValueError):
        await keeper._step_stops()
    assert (await queue.status("good")).state == "cancelled"
    assert "bad" in keeper._stuck_stops


async def test_a_walk_never_skips_batches_that_share_a_millisecond(redis) -> None:
    """Regression: the sweep's cursor was a score, exclusive; batches published in the same
    millisecond past a step's edge were skipped on every pass."""
    queue = ChunkQueue(redis, queue_name="q:a", ttl_seconds=TTL)
    members = {f"b{n:02d}": 1000 + n // 7 for n in range(30)}  # runs of 7 share a score
    await redis.zadd(keys.active_batches("q:a"), members)
    seen, cursor = [], WALK_START
    while cursor is not None:
        found, cursor = await queue.active(cursor, limit=3)
        seen += found
    assert seen == sorted(members)
