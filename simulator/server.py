"""Starting and stopping a simulator: the site port plus its proxy ports, in-process.

Example::

    async with run_simulator(SimConfig(proxies=2), clock=ManualClock()) as sim:
        sim.url                     # "http://127.0.0.1:PORT"
        sim.proxy_urls              # ["http://127.0.0.1:P1", ...]        identities proxy1..
        sim.bad_gateway_proxy_urls  # 502 to everything                   identities badgw1..
        sim.auth_proxy_urls         # "http://user:secret@127.0.0.1:P"    identities authproxy1..
        sim.plain_502_proxy_urls    # bare 502, no Proxy-Status           identities plain502_1..
        sim.dead_proxy_urls         # nothing listens: connection refused
        sim.gateway_url             # "http://127.0.0.1:P" or None        identities gw:USER
        sim.stats.snapshot()        # same JSON as GET /__sim/stats

The gateway wants ``http://USER:PASSWORD@...`` (any USER, the configured
password); ``proxies.gateway_proxy_urls`` makes a list of such URLs.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from aiohttp import web
from aiohttp.typedefs import Middleware

from simulator.app import build_app
from simulator.clock import Clock, SystemClock
from simulator.config import SimConfig
from simulator.proxies import (
    GATEWAY_IDENTITY,
    bad_gateway,
    forward_proxy,
    gateway,
    plain_bad_gateway,
)
from simulator.state import SimState, SiteAddress
from simulator.stats import Stats

_SHUTDOWN_TIMEOUT = 0.5  # slow-fault requests must not hold up a stop


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def _url_host(host: str) -> str:
    """The host clients should dial: a wildcard bind is reached through loopback."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def _url(host: str, port: int, userinfo: str = "") -> str:
    return f"http://{userinfo}{SiteAddress(host, port).netloc}"


def _dead_ports(host: str, count: int) -> list[int]:
    """Distinct ports nothing listens on: bound together to learn free ones, then closed.

    Another process may take one later; for a test's lifetime that is unlikely.
    """
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            socks.append(_bind(host, 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


@dataclass
class Simulator:
    """A running simulator: its addresses, shared state, and the runners to stop."""

    config: SimConfig
    state: SimState
    url: str
    proxy_urls: list[str] = field(default_factory=list)
    bad_gateway_proxy_urls: list[str] = field(default_factory=list)
    auth_proxy_urls: list[str] = field(default_factory=list)
    plain_502_proxy_urls: list[str] = field(default_factory=list)
    dead_proxy_urls: list[str] = field(default_factory=list)
    gateway_url: str | None = None
    _runners: list[web.AppRunner] = field(default_factory=list, repr=False)

    @property
    def clock(self) -> Clock:
        return self.state.clock

    @property
    def stats(self) -> Stats:
        return self.state.stats

    @property
    def stats_url(self) -> str:
        return f"{self.url}/__sim/stats"

    def ready_info(self, *, mask_password: bool) -> dict[str, Any]:
        """The addresses as one JSON-able dict; masked, the passwords read ``***``."""
        auth = self.auth_proxy_urls
        gateway_password: str | None = None
        if self.gateway_url is not None:
            gateway_password = "***" if mask_password else self.config.gateway_password
        if mask_password:
            secret = quote(self.config.proxy_password, safe="")
            auth = [url.replace(f":{secret}@", ":***@", 1) for url in auth]
        return {
            "url": self.url,
            "proxies": self.proxy_urls,
            "bad_gateway_proxies": self.bad_gateway_proxy_urls,
            "auth_proxies": auth,
            "plain_502_proxies": self.plain_502_proxy_urls,
            "dead_proxies": self.dead_proxy_urls,
            "gateway": self.gateway_url,
            "gateway_password": gateway_password,
            "stats_url": self.stats_url,
            "chat": {
                "post_id": self.config.post_id,
                "bot_id": self.config.bot_id,
                "type": self.config.chat_type,
                "stream": self.config.stream,
                "language": self.config.language,
            },
        }

    async def close(self) -> None:
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()


class _PortAllocator:
    """Hands out proxy ports: consecutive from a base, or free ones when the base is 0."""

    def __init__(self, host: str, base: int) -> None:
        self._host = host
        self._next = base

    def bind(self) -> socket.socket:
        sock = _bind(self._host, self._next)
        if self._next:
            self._next += 1
        return sock


async def _serve(sim: Simulator, app: web.Application, sock: socket.socket) -> int:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT)
    await runner.setup()
    sim._runners.append(runner)
    await web.SockSite(runner, sock).start()
    port: int = sock.getsockname()[1]
    return port


def _proxy_specs(config: SimConfig, state: SimState) -> Iterable[tuple[str, str, str, Middleware]]:
    """(kind, identity, userinfo, middleware) for every proxy port, in port order."""
    userinfo = f"{quote(config.proxy_user, safe='')}:{quote(config.proxy_password, safe='')}@"
    for index in range(1, config.proxies + 1):
        name = f"proxy{index}"
        yield "proxy", name, "", forward_proxy(state, name)
    for index in range(1, config.bad_gateway_proxies + 1):
        name = f"badgw{index}"
        yield "badgw", name, "", bad_gateway(state, name)
    for index in range(1, config.auth_proxies + 1):
        name = f"authproxy{index}"
        yield "auth", name, userinfo, forward_proxy(state, name, config.proxy_credentials)
    for index in range(1, config.plain_502_proxies + 1):
        name = f"plain502_{index}"
        yield "plain502", name, "", plain_bad_gateway(state, name)


async def start_simulator(config: SimConfig, clock: Clock | None = None) -> Simulator:
    """Bind and start every port; the caller must ``await sim.close()``."""
    site_sock = _bind(config.host, config.port)
    host = _url_host(config.host)
    site = SiteAddress(host=host, port=site_sock.getsockname()[1])
    state = SimState(config=config, site=site, clock=clock or SystemClock())
    sim = Simulator(config=config, state=state, url=site.url)
    try:
        await _serve(sim, build_app(state, "direct"), site_sock)
        ports = _PortAllocator(config.host, config.proxy_port_base)
        targets = {
            "proxy": sim.proxy_urls,
            "badgw": sim.bad_gateway_proxy_urls,
            "auth": sim.auth_proxy_urls,
            "plain502": sim.plain_502_proxy_urls,
        }
        for kind, identity, userinfo, middleware in _proxy_specs(config, state):
            port = await _serve(sim, build_app(state, identity, [middleware]), ports.bind())
            targets[kind].append(_url(host, port, userinfo))
        if config.gateway:
            app = build_app(state, GATEWAY_IDENTITY, [gateway(state, config.gateway_password)])
            sim.gateway_url = _url(host, await _serve(sim, app, ports.bind()))
        sim.dead_proxy_urls = [_url(host, port) for port in _dead_ports(host, config.dead_proxies)]
    except BaseException:
        site_sock.close()
        await sim.close()
        raise
    return sim


@asynccontextmanager
async def run_simulator(
    config: SimConfig | None = None, clock: Clock | None = None
) -> AsyncIterator[Simulator]:
    """Run a simulator for the duration of the block (port 0 = free ports)."""
    sim = await start_simulator(config or SimConfig(), clock)
    try:
        yield sim
    finally:
        await sim.close()
