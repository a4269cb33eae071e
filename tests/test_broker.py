"""The broker: many prompts' leases in few Redis calls, fair across batches — on fakeredis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from contract import keys
from tests.conftest import eventually
from worker import broker as broker_module
from worker.broker import OK, BatchStopped, Draining, LeaseBroker, NoCapacityError
from worker.claims import Claim
from worker.leases import Lease, LeaseBook
from worker.lifecycle import Lifecycle
from worker.proxies import Identity


def make_broker(book: LeaseBook, **options: object) -> LeaseBroker:
    lifecycle = Lifecycle()
    lifecycle.start()
    settings = {"max_inflight": 10, "capacity_wait_limit": 3600, "waiting_after": 3600,
                "poll_seconds": 0.01, **options}  # fmt: skip
    return LeaseBroker(book, lifecycle=lifecycle, **settings)  # type: ignore[arg-type]


@pytest.fixture
async def book(fake_redis) -> LeaseBook:
    leases = LeaseBook(fake_redis, fleet_cap=100, burst=1, ttl_seconds=30,
                       backoff_base_seconds=1, backoff_cap_seconds=60)  # fmt: skip
    await leases.register([Identity("p1", "http://p1:1", max_inflight=2, rate_per_second=0)])
    await fake_redis.hset(keys.identity_field("probe"), "p1", 0)  # past its slow start
    return leases


@pytest.fixture
async def broker(book: LeaseBook) -> AsyncIterator[LeaseBroker]:
    running = make_broker(book)
    task = asyncio.create_task(running.run())
    yield running
    task.cancel()


async def test_leases_go_round_robin_across_batches(broker: LeaseBroker) -> None:
    served: list[str] = []

    async def prompt(batch_id: str, index: int) -> None:
        lease = await broker.lease(batch_id, index)
        served.append(batch_id)
        broker.succeeded(lease)

    # A big batch's prompts arrive first, then a small one's: they take turns.
    tasks = [asyncio.create_task(prompt("big", n)) for n in range(6)]
    tasks += [asyncio.create_task(prompt("small", n)) for n in range(2)]
    await asyncio.gather(*tasks)
    first_small = served.index("small")
    assert first_small <= 2, served


async def test_a_cancelled_batch_gets_no_lease(broker: LeaseBroker, fake_redis) -> None:
    blocker = await broker.book.acquire(2)  # the identity is full
    waiting = [asyncio.create_task(broker.lease("b1", n)) for n in range(3)]
    await eventually(lambda: broker.waiting == 3, what="three waiters")
    await fake_redis.hset(keys.stopped_batches(), "b1", "cancelled 1")
    await broker.book.release([(lease, OK) for lease in blocker.leases])
    for task in waiting:
        with pytest.raises(BatchStopped, match="cancelled"):
            await task
    with pytest.raises(BatchStopped):
        await broker.lease("b1", 9)
    assert await fake_redis.zcard(keys.lease_tokens()) == 0


async def test_draining_lets_every_waiter_go(broker: LeaseBroker) -> None:
    await broker.book.acquire(2)
    waiting = asyncio.create_task(broker.lease("b1", 0))
    await eventually(lambda: broker.waiting == 1, what="a waiter")
    broker.lifecycle.drain()
    with pytest.raises(Draining):
        await waiting
    with pytest.raises(Draining):
        await broker.lease("b1", 1)


async def test_a_hopeless_wait_ends_as_no_capacity(book: LeaseBook) -> None:
    broker = make_broker(book, capacity_wait_limit=0.05)
    task = asyncio.create_task(broker.run())
    await book.acquire(2)
    with pytest.raises(NoCapacityError, match="no identity had capacity"):
        await asyncio.wait_for(broker.lease("b1", 0), 5)
    task.cancel()


async def test_a_long_wait_is_shown_and_its_end_too(book: LeaseBook) -> None:
    shown: list[tuple[str, int, bool]] = []
    broker = make_broker(
        book, waiting_after=0.01, on_waiting=lambda b, i, w: shown.append((b, i, w))
    )
    task = asyncio.create_task(broker.run())
    blocker = await book.acquire(2)
    waiting = asyncio.create_task(broker.lease("b1", 7))
    await eventually(lambda: shown == [("b1", 7, True)], what="the wait to show")
    await book.release([(blocker.leases[0], OK)])
    await waiting
    assert shown == [("b1", 7, True), ("b1", 7, False)]
    task.cancel()


async def test_the_worker_cap_bounds_its_leases(book: LeaseBook, fake_redis) -> None:
    await book.register([Identity("p1", "http://p1:1", max_inflight=50, rate_per_second=0)])
    broker = make_broker(book, max_inflight=3)
    task = asyncio.create_task(broker.run())
    waiting = [asyncio.create_task(broker.lease("b1", n)) for n in range(5)]
    await eventually(lambda: len(broker.held) == 3, what="three leases")
    assert broker.waiting == 2 and await fake_redis.zcard(keys.lease_tokens()) == 3
    for lease in list(broker.held.values()):
        broker.succeeded(lease)
    await asyncio.gather(*waiting)
    task.cancel()


async def test_a_broker_on_a_full_fleet_sleeps_until_a_slot_is_freed(
    book: LeaseBook, monkeypatch
) -> None:
    other = LeaseBook(book.redis, fleet_cap=1, burst=1, ttl_seconds=30, backoff_base_seconds=1,
                      backoff_cap_seconds=60)  # fmt: skip
    await other.register([Identity("p1", "http://p1:1", max_inflight=2, rate_per_second=0)])
    held = await other.acquire(1)  # another worker holds the fleet's only slot
    book.fleet_cap = 1
    calls = 0
    real = broker_module.exchange_all

    async def counted(*args: object, **kwargs: object):
        nonlocal calls
        calls += 1
        return await real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(broker_module, "exchange_all", counted)
    broker = make_broker(book, poll_seconds=0.01)
    task = asyncio.create_task(broker.run())
    waiting = asyncio.create_task(broker.lease("b1", 0))
    await eventually(lambda: calls >= 1, what="the first try")
    with pytest.raises(TimeoutError):  # asleep: no poll every 10 ms while the fleet is full
        await asyncio.wait_for(asyncio.shield(waiting), 0.5)
    assert calls <= 2
    await other.release([(held.leases[0], OK)])  # the other worker's release wakes it
    lease = await asyncio.wait_for(waiting, 1.5)
    assert lease.identity.name == "p1"
    task.cancel()


async def test_a_grant_sent_late_waits_its_turn_at_sending(book: LeaseBook, monkeypatch) -> None:
    """Grants bunched by a busy event loop leave at the identity's rate, not in one burst."""
    waits: list[float] = []

    async def recorded(seconds: float) -> None:
        waits.append(round(seconds, 2))

    broker = make_broker(book, burst=2)
    monkeypatch.setattr(asyncio, "sleep", recorded)
    identity = Identity("p1", "http://p1:1", max_inflight=5, rate_per_second=10)
    lease = Lease(identity, Claim("p1", "p1|t", valid_until=10**9), False, 0.0)
    for _ in range(4):
        await broker.on_time(lease)
    assert waits == [0.1, 0.2]  # two at once (its burst), then one every 0.1 s
    unlimited = Lease(Identity("p2", None, 5, rate_per_second=0), lease.claim, False, 0.0)
    await broker.on_time(unlimited)
    assert waits == [0.1, 0.2]


async def test_a_cancelled_batch_past_the_64th_waiting_gets_no_lease(
    book: LeaseBook, fake_redis
) -> None:
    """Regression (issue 20, 4): stop marks were read for the first 64 waiting batches only;
    a cancelled batch behind them got leases. Every lease is checked in the granting step."""
    await book.register([Identity("p1", "http://p1:1", max_inflight=500, rate_per_second=0)])
    broker = make_broker(book, max_inflight=500)
    waiting = {f"b{n}": asyncio.create_task(broker.lease(f"b{n}", 0)) for n in range(100)}
    await fake_redis.hset(keys.stopped_batches(), "b80", "cancelled 1")
    task = asyncio.create_task(broker.run())
    with pytest.raises(BatchStopped):
        await asyncio.wait_for(waiting.pop("b80"), 5)
    leases = await asyncio.wait_for(asyncio.gather(*waiting.values()), 5)
    assert len(leases) == 99 and len(broker.held) == 99
    task.cancel()


async def test_a_lease_used_late_reads_its_batchs_mark_again(book: LeaseBook, fake_redis) -> None:
    broker = make_broker(book)
    task = asyncio.create_task(broker.run())
    lease = await asyncio.wait_for(broker.lease("b1", 0), 5)
    await broker.confirm_running(lease, "b1")  # fresh: no read
    await fake_redis.hset(keys.stopped_batches(), "b1", "cancelled 1")
    lease.checked_at -= 10  # a handshake took long: the grant's word is too old now
    with pytest.raises(BatchStopped):
        await broker.confirm_running(lease, "b1")
    assert "b1" in broker.stopped
    task.cancel()


async def test_a_wait_for_room_that_fails_takes_the_broker_down(book: LeaseBook) -> None:
    """Regression: the wait for room ran in a task nobody watched: its error was lost."""
    other = LeaseBook(book.redis, fleet_cap=1, burst=1, ttl_seconds=30, backoff_base_seconds=1,
                      backoff_cap_seconds=60)  # fmt: skip
    await other.register([Identity("p1", "http://p1:1", max_inflight=2, rate_per_second=0)])
    await other.acquire(1)  # the fleet is full

    async def broken(seconds: float) -> bool:
        raise ValueError("not a Redis outage")

    broker = make_broker(other)
    other.wait_for_room = broken  # type: ignore[method-assign]
    task = asyncio.create_task(broker.run())
    waiter = asyncio.create_task(broker.lease("b1", 0))
    with pytest.raises(ValueError, match="not a Redis outage"):
        await asyncio.wait_for(task, 5)
    waiter.cancel()
