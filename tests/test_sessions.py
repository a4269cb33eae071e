"""Site sessions: cached in memory and in Redis per identity, refreshed single-flight."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from contract import keys
from tests.conftest import eventually
from worker.errors import HandshakeFailed, RateLimited
from worker.page import ChatType, SiteProfile
from worker.sessions import SessionCache, SiteSession


def session(nonce: str, post_id: str = "106", **options) -> SiteSession:
    return SiteSession(SiteProfile(nonce=nonce, post_id=post_id), **options)


def cache(redis, **overrides) -> SessionCache:
    options = {"ttl_seconds": 3600, "max_uses": 100, "wait_seconds": 5, "poll_seconds": 0.01}
    return SessionCache(redis, **{**options, **overrides})


class CountingHandshake:
    def __init__(self, gate: asyncio.Event | None = None) -> None:
        self.calls = 0
        self.gate = gate

    async def __call__(self) -> SiteSession:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        return session(f"nonce{self.calls}", cookies={"c": "v"})


def test_session_round_trips_as_json_with_its_profile() -> None:
    profile = SiteProfile(
        nonce="abc123", post_id="7", bot_id="4367", chat_type=ChatType.WIDGET, stream=True,
        url="https://chatgpt.es/", consent_field="wpaicg_user_agree", assistant=True,
    )  # fmt: skip
    made = SiteSession(profile, cookies={"wpaicg_session": "x"})
    assert SiteSession.from_json(made.to_json()) == made
    assert made.id != session("abc123", "7").id


async def test_a_session_stored_without_a_profile_is_no_session(redis) -> None:
    """What a worker from before site profiles stored: replaced by a handshake, not used."""
    sessions, handshake = cache(redis), CountingHandshake()
    old = json.dumps(
        {"nonce": "old", "post_id": "106", "cookies": {}, "created_at": time.time(), "id": "ab"}
    )
    await redis.hset(keys.site_sessions(), "p1", old)
    assert (await sessions.get("p1", handshake)).nonce == "nonce1"


async def test_one_handshake_serves_many_uses(redis) -> None:
    sessions, handshake = cache(redis), CountingHandshake()
    got = [await sessions.get("p1", handshake) for _ in range(5)]
    assert handshake.calls == 1 and {s.nonce for s in got} == {"nonce1"}


async def test_another_worker_reuses_the_shared_session(redis) -> None:
    first, second, handshake = cache(redis), cache(redis), CountingHandshake()
    made = await first.get("p1", handshake)
    assert await second.get("p1", handshake) == made
    assert handshake.calls == 1


async def test_sessions_are_per_identity(redis) -> None:
    sessions, handshake = cache(redis), CountingHandshake()
    one, two = await sessions.get("p1", handshake), await sessions.get("p2", handshake)
    assert (one.nonce, two.nonce) == ("nonce1", "nonce2")


async def test_refresh_is_single_flight_across_workers(redis) -> None:
    gate = asyncio.Event()
    handshake = CountingHandshake(gate)
    workers = [cache(redis) for _ in range(3)]
    tasks = [asyncio.create_task(w.get("p1", handshake)) for w in workers for _ in range(4)]
    await eventually(lambda: handshake.calls == 1, what="one worker in its handshake")
    gate.set()
    got = await asyncio.gather(*tasks)
    assert handshake.calls == 1 and {s.nonce for s in got} == {"nonce1"}


async def test_the_lock_holder_looks_again_before_its_handshake(redis) -> None:
    """A session stored between a worker's look and its lock is used, not fetched again."""
    sessions, handshake = cache(redis), CountingHandshake()
    other = session("theirs")
    looks = 0
    real_shared = sessions._shared

    async def shared_after_someone_else_finished(identity: str):
        nonlocal looks
        looks += 1
        if looks == 2:  # the look after taking the lock: someone else just finished
            await redis.hset(keys.site_sessions(), identity, other.to_json())
        return await real_shared(identity)

    sessions._shared = shared_after_someone_else_finished  # type: ignore[method-assign]
    assert (await sessions.get("p1", handshake)).nonce == "theirs"
    assert handshake.calls == 0


async def test_max_uses_forces_a_fresh_handshake(redis) -> None:
    sessions, handshake = cache(redis, max_uses=3), CountingHandshake()
    for _ in range(3):
        await sessions.get("p1", handshake)
    await sessions.count_uses()  # worn: dropped at the count
    assert (await sessions.get("p1", handshake)).nonce == "nonce2"


async def test_drop_removes_only_the_session_that_failed(redis) -> None:
    """Both sessions carry the same nonce (as logged-out visitors' do): the ID tells them apart."""
    sessions = cache(redis)
    stale = session("same")
    fresh = session("same")
    await redis.hset(keys.site_sessions(), "p1", fresh.to_json())
    assert not await sessions.drop("p1", stale)
    assert await redis.hget(keys.site_sessions(), "p1") is not None
    assert await sessions.drop("p1", fresh)
    assert await redis.hget(keys.site_sessions(), "p1") is None


async def test_a_session_past_its_ttl_is_replaced(redis) -> None:
    sessions, handshake = cache(redis, ttl_seconds=60), CountingHandshake()
    old = session("old", created_at=0.0)
    await redis.hset(keys.site_sessions(), "p1", old.to_json())
    assert (await sessions.get("p1", handshake)).nonce == "nonce1"


async def test_unreadable_session_data_is_no_session(redis) -> None:
    sessions, handshake = cache(redis), CountingHandshake()
    await redis.hset(keys.site_sessions(), "p1", b"\x80\x04\x95pickle")
    assert (await sessions.get("p1", handshake)).nonce == "nonce1"


async def test_failed_handshake_propagates_and_frees_the_lock(redis) -> None:
    sessions = cache(redis)

    async def refused() -> SiteSession:
        raise RateLimited("429", retry_after=5)

    with pytest.raises(RateLimited):
        await sessions.get("p1", refused)
    assert await redis.get(keys.site_session_lock("p1")) is None
    assert (await sessions.get("p1", CountingHandshake())).nonce == "nonce1"


async def test_waiting_for_someone_elses_refresh_is_bounded(redis) -> None:
    sessions = cache(redis, wait_seconds=0.2)
    await redis.set(keys.site_session_lock("p1"), "someone-else", px=10_000)
    with pytest.raises(HandshakeFailed, match="no session for p1"):
        await sessions.get("p1", CountingHandshake())
