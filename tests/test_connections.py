from __future__ import annotations

from worker.client import ClientOptions
from worker.connections import HttpSessions
from worker.proxies import Identity


def identity(name: str, proxy: str | None = None) -> Identity:
    return Identity(name=name, proxy_url=proxy, max_inflight=1, rate_per_second=0)


async def test_one_session_per_identity_reused() -> None:
    sessions = HttpSessions(ClientOptions(), max_sessions=4)
    first = await sessions.get(identity("a", "http://a:1"))
    assert await sessions.get(identity("a", "http://a:1")) is first
    assert await sessions.get(identity("b", "http://b:1")) is not first
    assert first.proxies == {"all": "http://a:1"}
    await sessions.close()


async def test_least_recently_used_is_evicted_and_closed() -> None:
    sessions = HttpSessions(ClientOptions(), max_sessions=2)
    a = await sessions.get(identity("a"))
    b = await sessions.get(identity("b"))
    await sessions.get(identity("a"))  # a is now the most recent
    await sessions.get(identity("c"))
    assert len(sessions) == 2
    assert b._closed and not a._closed
    await sessions.close()
    assert a._closed and len(sessions) == 0


async def test_changed_proxy_url_replaces_the_session() -> None:
    sessions = HttpSessions(ClientOptions(), max_sessions=2)
    old = await sessions.get(identity("a", "http://u:old@a:1"))
    new = await sessions.get(identity("a", "http://u:new@a:1"))
    assert new is not old and old._closed
    await sessions.close()
