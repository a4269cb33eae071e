"""Site sessions: a plain value, cached per identity in Redis, refreshed single-flight."""

from __future__ import annotations

import asyncio

import pytest

from worker.errors import HandshakeFailed, RateLimited
from worker.sessions import SessionStore, SiteSession


def store(redis, **overrides) -> SessionStore:
    options = {"ttl_seconds": 3600, "max_uses": 100, "wait_seconds": 5, "poll_seconds": 0.01}
    return SessionStore(redis, **{**options, **overrides})


class CountingHandshake:
    def __init__(self, gate: asyncio.Event | None = None) -> None:
        self.calls = 0
        self.gate = gate

    async def __call__(self) -> SiteSession:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        return SiteSession(nonce=f"nonce{self.calls}", post_id="106", cookies={"c": "v"})


def test_session_round_trips_as_json() -> None:
    session = SiteSession(nonce="abc123", post_id="7", cookies={"wpaicg_session": "x"}, uses=3)
    assert SiteSession.from_json(session.to_json()) == session
    assert session.used().uses == 4


async def test_one_handshake_serves_many_uses(fake_redis) -> None:
    sessions, handshake = store(fake_redis), CountingHandshake()
    got = [await sessions.get("p1", handshake) for _ in range(5)]
    assert handshake.calls == 1
    assert {s.nonce for s in got} == {"nonce1"} and [s.uses for s in got] == [1, 2, 3, 4, 5]
    assert got[0].cookies == {"c": "v"}


async def test_sessions_are_per_identity(fake_redis) -> None:
    sessions, handshake = store(fake_redis), CountingHandshake()
    a = await sessions.get("a", handshake)
    b = await sessions.get("b", handshake)
    assert (a.nonce, b.nonce, handshake.calls) == ("nonce1", "nonce2", 2)


async def test_refresh_is_single_flight(fake_redis) -> None:
    gate = asyncio.Event()
    sessions, handshake = store(fake_redis), CountingHandshake(gate)
    waiters = [asyncio.create_task(sessions.get("p1", handshake)) for _ in range(10)]
    while handshake.calls == 0:
        await asyncio.sleep(0)
    gate.set()
    got = await asyncio.gather(*waiters)
    assert handshake.calls == 1
    assert {s.nonce for s in got} == {"nonce1"}


async def test_max_uses_forces_a_fresh_handshake(fake_redis) -> None:
    sessions, handshake = store(fake_redis, max_uses=3), CountingHandshake()
    nonces = [(await sessions.get("p1", handshake)).nonce for _ in range(5)]
    assert nonces == ["nonce1", "nonce1", "nonce1", "nonce2", "nonce2"]


async def test_drop_removes_only_the_failed_session(fake_redis) -> None:
    sessions, handshake = store(fake_redis), CountingHandshake()
    old = await sessions.get("p1", handshake)
    assert await sessions.drop("p1", old)
    new = await sessions.get("p1", handshake)
    assert new.nonce == "nonce2"
    assert not await sessions.drop("p1", old)  # a late report about the old one
    assert (await sessions.get("p1", handshake)).nonce == "nonce2"


async def test_ttl_is_set_below_the_nonce_life(fake_redis) -> None:
    sessions = store(fake_redis, ttl_seconds=600)
    await sessions.get("p1", CountingHandshake())
    assert 590_000 < await fake_redis.pttl("chatgptes:session:p1") <= 600_000


async def test_failed_handshake_propagates_and_frees_the_lock(fake_redis) -> None:
    sessions = store(fake_redis)

    async def refused() -> SiteSession:
        raise RateLimited("429", retry_after=5)

    with pytest.raises(RateLimited):
        await sessions.get("p1", refused)
    handshake = CountingHandshake()
    assert (await sessions.get("p1", handshake)).nonce == "nonce1"


async def test_waiting_for_someone_elses_refresh_is_bounded(fake_redis) -> None:
    sessions = store(fake_redis, wait_seconds=0.2)
    await fake_redis.set("chatgptes:session:p1:lock", "another-worker", px=60_000)
    with pytest.raises(HandshakeFailed, match="no session for p1"):
        await sessions.get("p1", CountingHandshake())
