"""The ajax POST on kept curl handles (``worker.transport``), against a small aiohttp
server on 127.0.0.1 that records what each request carried."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from aiohttp import web
from curl_cffi.requests import AsyncSession
from curl_cffi.requests.exceptions import Timeout

from worker.transport import AjaxPoster, Reply

OK = b'{"status":"success","data":"hi"}'


class Server:
    def __init__(self) -> None:
        self.seen: list[dict[str, list[str]]] = []
        self.arrived = asyncio.Event()
        self.hold = 0.0

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append({name.lower(): request.headers.getall(name) for name in request.headers})
        body = await request.read()
        self.arrived.set()
        if self.hold:
            await asyncio.sleep(self.hold)
        if request.path == "/busy":
            return web.Response(status=429, headers={"Retry-After": "7"}, text="slow down")
        return web.Response(body=OK + body[:0], content_type="application/json")


@asynccontextmanager
async def served() -> AsyncIterator[tuple[Server, str, AjaxPoster]]:
    server = Server()
    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    http = AsyncSession(impersonate="chrome", discard_cookies=True, trust_env=False)
    poster = AjaxPoster(http, impersonate="chrome", connect_timeout=2, request_timeout=3, keep=4)
    try:
        yield server, f"http://127.0.0.1:{port}", poster
    finally:
        poster.close()
        await http.close()
        await runner.cleanup()


def lines(cookie: str) -> list[bytes]:
    return [b"Content-Type: text/plain", f"Cookie: {cookie}".encode(), b"Expect:"]


def test_a_reply_s_headers_are_those_of_the_last_response() -> None:
    head = (
        b"HTTP/1.1 302 Found\r\nLocation: /x\r\nRetry-After: 1\r\n\r\n"
        b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 9\r\nServer: nginx\r\n\r\n"
    )
    reply = Reply(status=429, body=b"", content_type=None, head=head)
    assert reply.headers == {"Retry-After": "9", "Server": "nginx"}


async def test_each_post_carries_its_own_headers_once_and_the_browser_s() -> None:
    async with served() as (server, url, poster):
        for cookie in ("a=1", "b=2", "b=2"):
            reply = await poster.post(
                f"{url}/ajax".encode(), b"x=1", lines(cookie), None, tunnel=False
            )
            assert (reply.status, reply.body, reply.content_type) == (
                200,
                OK,
                "application/json",
            )
        assert [seen["cookie"] for seen in server.seen] == [["a=1"], ["b=2"], ["b=2"]]
        assert all(seen["content-type"] == ["text/plain"] for seen in server.seen)
        assert all("Chrome" in seen["user-agent"][0] for seen in server.seen)  # impersonated
        assert all("expect" not in seen for seen in server.seen)
        assert len(poster._idle) == 1  # one handle, kept and reused for all three


async def test_handles_are_kept_up_to_the_limit() -> None:
    async with served() as (server, url, poster):
        replies = await asyncio.gather(
            *(
                poster.post(f"{url}/ajax".encode(), b"", lines("a"), None, tunnel=False)
                for _ in range(10)
            )
        )
        assert {reply.status for reply in replies} == {200} and len(server.seen) == 10
        assert len(poster._idle) == 4  # the other six were closed when they ended


async def test_a_refusal_s_headers_are_read() -> None:
    async with served() as (_, url, poster):
        reply = await poster.post(f"{url}/busy".encode(), b"", lines("a"), None, tunnel=False)
        assert (reply.status, reply.text, reply.headers["Retry-After"]) == (429, "slow down", "7")


async def test_a_cancelled_post_leaves_no_handle_behind() -> None:
    async with served() as (server, url, poster):
        server.hold = 2.0
        post = asyncio.ensure_future(
            poster.post(f"{url}/ajax".encode(), b"", lines("a"), None, tunnel=False)
        )
        await asyncio.wait_for(server.arrived.wait(), timeout=5)
        post.cancel()
        with suppress(asyncio.CancelledError):
            await post
        assert poster.http.acurl._curl2future == {} and poster._idle == []
        server.hold = 0.0
        reply = await poster.post(f"{url}/ajax".encode(), b"", lines("b"), None, tunnel=False)
        assert reply.status == 200 and len(poster._idle) == 1


async def test_a_slow_reply_is_a_timeout_and_its_handle_is_not_reused() -> None:
    async with served() as (server, url, poster):
        server.hold = 5.0
        try:
            await poster.post(f"{url}/ajax".encode(), b"", lines("a"), None, tunnel=False)
        except Timeout:
            pass
        else:
            raise AssertionError("a reply past the request timeout was not a Timeout")
        assert poster._idle == [] and poster.http.acurl._curl2future == {}
