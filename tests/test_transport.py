"""The ajax POST on kept curl handles (``worker.transport``), against a small aiohttp
server on 127.0.0.1 that records what each request carried."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import pytest
from aiohttp import web
from curl_cffi.requests import AsyncSession
from curl_cffi.requests.exceptions import RequestException, Timeout

from worker.transport import AjaxPoster, BrowserConfigError, Reply

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
        if request.path == "/gate":  # a cookie to carry to the ajax, on a redirect
            response = web.Response(status=307, headers={"Location": "/ajax"})
            response.set_cookie("gate", "passed")
            return response
        if request.path == "/zipped":
            response = web.Response(body=OK * 50, content_type="application/json")
            response.enable_compression()
            return response
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
    reply = Reply(429, b"", head)
    assert reply.headers == {"Retry-After": "9", "Server": "nginx"}


def test_a_reply_s_header_block_is_read_as_http_reads_it() -> None:
    head = (
        b"HTTP/1.1 200 Connection established\r\n\r\n"  # a proxy's CONNECT
        b"HTTP/1.1 200 OK\r\nX-Name: \xc3\x85ngstr\xc3\xb6m\r\nX-Long: one\r\n two\r\n"
        b"Content-Type: text/plain; charset=ISO-8859-1\r\n\r\n"
    )
    reply = Reply(200, "a\u00f1o".encode("latin-1"), head)
    assert reply.headers["X-Long"] == "one two" and len(reply.headers) == 3
    assert reply.content_type == "text/plain; charset=ISO-8859-1"
    assert reply.text == "a\u00f1o"  # the declared charset, not UTF-8
    assert Reply(200, "a\u00f1o".encode(), b"HTTP/1.1 200 OK\r\n\r\n").text == "a\u00f1o"
    unknown = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=klingon\r\n\r\n"
    assert Reply(200, "a\u00f1o".encode(), unknown).text == "a\u00f1o"


def test_a_browser_curl_does_not_impersonate_is_refused_at_once() -> None:
    with pytest.raises(BrowserConfigError, match="CHATGPTES_IMPERSONATE: 'netscape4'"):
        AjaxPoster(
            AsyncSession(), impersonate="netscape4", connect_timeout=1, request_timeout=2, keep=1
        )


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


async def test_a_cookie_set_on_a_redirect_reaches_its_target_and_no_later_post() -> None:
    async with served() as (server, url, poster):
        reply = await poster.post(f"{url}/gate".encode(), b"", lines("a=1"), None, tunnel=False)
        assert reply.status == 200 and len(server.seen) == 2
        assert "gate=passed" in server.seen[1]["cookie"][0]  # the redirect's target had it
        await poster.post(f"{url}/ajax".encode(), b"", lines("b=2"), None, tunnel=False)
        assert server.seen[2]["cookie"] == ["b=2"]  # the next identity's POST: its own only


async def test_a_compressed_reply_is_decoded() -> None:
    async with served() as (server, url, poster):
        reply = await poster.post(f"{url}/zipped".encode(), b"", lines("a"), None, tunnel=False)
        assert reply.body == OK * 50 and "gzip" in server.seen[0]["accept-encoding"][0]


async def test_an_idle_handle_holds_no_request_or_reply() -> None:
    async with served() as (_, url, poster):
        await poster.post(f"{url}/ajax".encode(), b"x" * 100_000, lines("a"), None, tunnel=False)
        [idle] = poster._idle
        held = (idle.curl._body_handle, idle.curl._write_handle, idle.curl._header_handle)
        assert held == (None, None, None)


async def test_a_post_after_close_is_a_request_error() -> None:
    async with served() as (_, url, poster):
        poster.close()
        with pytest.raises(RequestException, match="closed"):
            await poster.post(f"{url}/ajax".encode(), b"", lines("a"), None, tunnel=False)
