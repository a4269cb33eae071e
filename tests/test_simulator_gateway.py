"""The simulator's gateway port (user name = identity) and its other proxy kinds.

Over real sockets with aiohttp's client; time moves only by ManualClock.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Any

import aiohttp
import pytest

from simulator.clock import ManualClock
from simulator.config import SimConfig
from simulator.proxies import gateway_proxy_urls
from simulator.server import Simulator, run_simulator
from simulator.state import NONCE_WORDINGS
from tests.test_simulator import ask, chat_form, handshake, raw_request, stats


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


def start(clock: ManualClock, **options: Any) -> AbstractAsyncContextManager[Simulator]:
    return run_simulator(SimConfig(gateway=True, **options), clock=clock)


def users(sim: Simulator, count: int) -> list[str]:
    assert sim.gateway_url is not None
    return gateway_proxy_urls(sim.gateway_url, sim.config.gateway_password, count)


def basic(credentials: str) -> dict[str, str]:
    return {"Proxy-Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}


# --- the gateway --------------------------------------------------------------------


def test_gateway_proxy_urls_quote_the_password() -> None:
    urls = gateway_proxy_urls("http://127.0.0.1:9000", "p@ss:w/rd", 2)
    assert urls == [
        "http://user-session-1:p%40ss%3Aw%2Frd@127.0.0.1:9000",
        "http://user-session-2:p%40ss%3Aw%2Frd@127.0.0.1:9000",
    ]
    assert gateway_proxy_urls("http://x:y@[::1]:9", "s", 1, prefix="u") == ["http://u1:s@[::1]:9"]
    assert gateway_proxy_urls("http://127.0.0.1:9", "s", 0) == []


async def test_gateway_user_name_picks_the_identity(
    clock: ManualClock, http: aiohttp.ClientSession
) -> None:
    async with start(clock, gateway_password="p@ss:w/rd") as sim:
        assert sim.gateway_url is not None and "@" not in sim.gateway_url
        first, second = users(sim, 2)
        nonce = await handshake(http, sim, proxy=first)
        _, body = await ask(http, sim, chat_form(nonce), proxy=second)
        assert body["status"] == "success"
        identities = stats(sim)["identities"]
        assert set(identities) == {"gw:user-session-1", "gw:user-session-2"}
        assert identities["gw:user-session-1"]["page"] == 1
        assert identities["gw:user-session-2"]["success"] == 1


async def test_gateway_wants_its_password(clock: ManualClock, http: aiohttp.ClientSession) -> None:
    async with start(clock, gateway_password="hunter2") as sim:
        bare = sim.gateway_url
        assert bare is not None
        for headers in ({}, basic("alice:wrong"), basic("alice"), basic(":hunter2")):
            async with http.get(sim.url + "/", proxy=bare, proxy_headers=headers) as response:
                assert response.status == 407
                assert response.headers["Proxy-Authenticate"] == 'Basic realm="sim"'
                assert response.headers["Proxy-Status"].startswith("sim-proxy")
        snapshot = stats(sim)
        assert snapshot["identities"]["gateway"]["auth_required"] == 4
        assert not [name for name in snapshot["identities"] if name.startswith("gw:")]
        assert snapshot["requests"]["page"] == 0
        auth = basic("bob:hunter2")["Proxy-Authorization"]
        origin = f"GET / HTTP/1.1\r\nHost: x\r\nProxy-Authorization: {auth}\r\n\r\n"
        assert (await raw_request(bare, origin.encode())).startswith(b"HTTP/1.1 400")
        assert stats(sim)["identities"]["gw:bob"]["not_absolute"] == 1


async def test_gateway_identities_are_limited_apart(
    clock: ManualClock, http: aiohttp.ClientSession
) -> None:
    async with start(
        clock, rate_per_second=1, burst=1, ban_after_violations=2, violation_grace_seconds=0
    ) as sim:
        alice, bob = users(sim, 2)
        nonce = await handshake(http, sim, proxy=alice)
        statuses = [(await ask(http, sim, chat_form(nonce), proxy=alice))[0] for _ in range(3)]
        assert statuses == [429, 429, 403]  # limited, one violation, the second one bans
        _, body = await ask(http, sim, chat_form(nonce), proxy=bob)
        assert body["status"] == "success"
        identities = stats(sim)["identities"]
        a, b = identities["gw:user-session-1"], identities["gw:user-session-2"]
        assert (a["rate_limited"], a["violations"], a["banned"]) == (2, 2, True)
        assert (b["rate_limited"], b["violations"], b["banned"]) == (0, 0, False)


async def test_nonce_bound_to_identity(clock: ManualClock, http: aiohttp.ClientSession) -> None:
    async with start(clock, bind_nonce_to_identity=True, proxies=1) as sim:
        alice, bob = users(sim, 2)
        nonce = await handshake(http, sim, proxy=alice)
        for other in (bob, sim.proxy_urls[0], None):
            _, body = await ask(http, sim, chat_form(nonce), proxy=other)
            assert body["msg"] in NONCE_WORDINGS
        _, body = await ask(http, sim, chat_form(nonce), proxy=alice)
        assert body["status"] == "success"
        assert nonce != await handshake(http, sim, proxy=bob)


async def test_nonce_not_bound_to_identity_by_default(
    clock: ManualClock, http: aiohttp.ClientSession
) -> None:
    async with start(clock, proxies=1) as sim:
        alice, bob = users(sim, 2)
        nonce = await handshake(http, sim, proxy=alice)
        for other in (bob, sim.proxy_urls[0], None):
            _, body = await ask(http, sim, chat_form(nonce), proxy=other)
            assert body["status"] == "success"


async def test_a_thousand_gateway_identities(clock: ManualClock) -> None:
    async with start(clock) as sim:
        urls = users(sim, 1000)
        connector = aiohttp.TCPConnector(limit=32, force_close=True)
        async with aiohttp.ClientSession(connector=connector) as http:

            async def ask_once(proxy: str) -> int:
                status, _ = await ask(http, sim, chat_form("0123456789"), proxy=proxy)
                return status

            assert set(await asyncio.gather(*(ask_once(url) for url in urls))) == {200}
        snapshot = stats(sim)
        gateway = {name for name in snapshot["identities"] if name.startswith("gw:")}
        assert gateway == {f"gw:user-session-{i}" for i in range(1, 1001)}
        assert snapshot["replies"]["nonce_failed"] == 1000
        assert all(snapshot["identities"][name]["ajax"] == 1 for name in gateway)


# --- plain-502 and dead proxies --------------------------------------------------------


async def test_plain_502_port(clock: ManualClock, http: aiohttp.ClientSession) -> None:
    async with run_simulator(SimConfig(plain_502_proxies=2), clock=clock) as sim:
        assert len(sim.plain_502_proxy_urls) == 2
        assert sim.ready_info(mask_password=True)["plain_502_proxies"] == sim.plain_502_proxy_urls
        async with http.get(sim.url + "/", proxy=sim.plain_502_proxy_urls[1]) as response:
            assert response.status == 502
            assert "Proxy-Status" not in response.headers
            assert "X-Squid-Error" not in response.headers
            assert "502 Bad Gateway" in await response.text()
        snapshot = stats(sim)
        assert snapshot["proxy"]["plain_502"] == 1 and snapshot["proxy"]["bad_gateway"] == 0
        assert snapshot["identities"]["plain502_2"]["plain_502"] == 1
        assert snapshot["requests"]["page"] == 0


async def test_dead_proxy_refuses_the_connection(
    clock: ManualClock, http: aiohttp.ClientSession
) -> None:
    async with run_simulator(SimConfig(dead_proxies=3), clock=clock) as sim:
        dead = sim.dead_proxy_urls
        assert len(set(dead)) == 3 and all(url.startswith("http://127.0.0.1:") for url in dead)
        assert sim.ready_info(mask_password=False)["dead_proxies"] == dead
        with pytest.raises(aiohttp.ClientProxyConnectionError):
            await handshake(http, sim, proxy=dead[0])
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", int(dead[1].rsplit(":", 1)[1]))


async def test_ready_info_without_the_new_ports(clock: ManualClock) -> None:
    async with run_simulator(SimConfig(), clock=clock) as sim:
        info = sim.ready_info(mask_password=False)
        assert sim.gateway_url is None
        assert (info["gateway"], info["gateway_password"]) == (None, None)
        assert info["plain_502_proxies"] == [] and info["dead_proxies"] == []
