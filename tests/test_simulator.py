"""The chatgpt.es stand-in, exercised over real sockets with aiohttp's client.

Time-dependent behaviour (nonce ticks, rate windows, bans, quotas) is driven
by a ManualClock, never by sleeping.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from simulator.app import answer_chunks
from simulator.clock import ManualClock
from simulator.config import MARKUPS, SimConfig
from simulator.latency import parse_latency
from simulator.server import Simulator, run_simulator
from simulator.state import NONCE_WORDINGS

AJAX = "/wp-admin/admin-ajax.php"
NONCE_PATTERNS = (
    re.compile(r'data-nonce="([0-9a-f]{10})"'),
    re.compile(r'name="_wpnonce" value="([0-9a-f]{10})"'),
    re.compile(r"wpaicg_nonce = '([0-9a-f]{10})'"),
    re.compile(r'"_wpnonce":"([0-9a-f]{10})"'),
)
POST_ID_PATTERNS = (
    re.compile(r'data-post-id="(\d+)"'),
    re.compile(r'name="post_id" value="(\d+)"'),
    re.compile(r"wpaicg_post_id = '(\d+)'"),
    re.compile(r'"post_id":"(\d+)"'),
)


def first_match(patterns: tuple[re.Pattern[str], ...], html: str) -> str | None:
    for pattern in patterns:
        found = pattern.search(html)
        if found:
            return found.group(1)
    return None


def chat_form(nonce: str, message: str = "hola", **overrides: str) -> dict[str, str]:
    form = {
        "action": "wpaicg_chat_shortcode_message",
        "_wpnonce": nonce,
        "post_id": "106",
        "url": "http://127.0.0.1/",
        "message": message,
        "bot_id": "0",
        "chatbot_identity": "shortcode",
        "wpaicg_chat_client_id": "Kd8s2LmQ0z",
        "wpaicg_chat_history": "[]",
        "wpaicg_user_agree": "1",
    }
    form.update(overrides)
    return {key: value for key, value in form.items() if value != "<omit>"}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def start(clock: ManualClock, **options: Any) -> AbstractAsyncContextManager[Simulator]:
    return run_simulator(SimConfig(**options), clock=clock)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


async def handshake(http: aiohttp.ClientSession, sim: Simulator, **kw: Any) -> str:
    async with http.get(sim.url + "/", **kw) as response:
        assert response.status == 200
        nonce = first_match(NONCE_PATTERNS, await response.text())
    assert nonce is not None
    return nonce


async def ask(
    http: aiohttp.ClientSession, sim: Simulator, form: dict[str, str], **kw: Any
) -> tuple[int, Any]:
    async with http.post(sim.url + AJAX, data=form, **kw) as response:
        text = await response.text()
        try:
            return response.status, json.loads(text)
        except ValueError:
            return response.status, text


def stats(sim: Simulator) -> dict[str, Any]:
    return sim.stats.snapshot()


# --- the page -----------------------------------------------------------------------


@pytest.mark.parametrize("markup", MARKUPS)
async def test_each_markup_carries_nonce_and_post_id(
    clock: ManualClock, http: aiohttp.ClientSession, markup: str
) -> None:
    async with start(clock, markup=markup, post_id=4242) as sim:
        async with http.get(sim.url + "/") as response:
            html = await response.text()
        expected = sim.state.nonces.create()
        index = MARKUPS.index(markup)
        assert NONCE_PATTERNS[index].search(html).group(1) == expected  # type: ignore[union-attr]
        assert POST_ID_PATTERNS[index].search(html).group(1) == "4242"  # type: ignore[union-attr]
        others = [p for i, p in enumerate(NONCE_PATTERNS) if i != index]
        assert all(p.search(html) is None for p in others)
        assert len(html) > 20_000
        assert '"nonce":"' in html  # the REST API decoy a real WordPress page carries


async def test_page_sets_session_cookie_and_keeps_it(
    clock: ManualClock, http: aiohttp.ClientSession
) -> None:
    async with start(clock) as sim:
        async with http.get(sim.url + "/") as response:
            cookie = response.cookies["wpaicg_session"]
        assert re.fullmatch(r"[0-9a-f]{32}", cookie.value)
        assert cookie["path"] == "/"
        async with http.get(sim.url + "/") as response:
            assert response.cookies["wpaicg_session"].value == cookie.value


async def test_random_markup_uses_every_variant(
    clock: ManualClock, http: aiohttp.ClientSession
) -> None:
    async with start(clock, markup="random", seed=1) as sim:
        seen = set()
        for _ in range(40):
            async with http.get(sim.url + "/") as response:
                html = await response.text()
            seen |= {i for i, p in enumerate(NONCE_PATTERNS) if p.search(html)}
        assert seen == {0, 1, 2, 3}


# --- the ajax endpoint --------------------------------------------------------------


async def test_success_reply_echoes_the_prompt(
    clock: ManualClock, http: aiohttp.ClientSession
) -> None:
    async with start(clock) as sim:
        nonce = await handshake(http, sim)
        status, body = await ask(http, sim, chat_form(nonce, "¿Qué es Redis?"))
        assert status == 200
        assert body == {
            "status": "success",
            "msg": "Something went wrong",
            "data": "Echo: ¿Qué es Redis?",
        }
        assert stats(sim)["replies"]["success"] == 1


async def test_unknown_action_answers_zero(clock: ManualClock, http: aiohttp.ClientSession) -> None:
    async with start(clock) as sim:
        nonce = await handshake(http, sim)
        status, body = await ask(http, sim, chat_form(nonce, action="heartbeat"))
        assert (status, body) == (400, 0)


async def test_bad_nonce_rotates_three_wordings(
    clock: ManualClock, http: aiohttp.ClientSession
) -> None:
    async with start(clock) as sim:
        wordings = set()
        for _ in range(3):
            status, body = await ask(http, sim, chat_form("0123456789"))
            assert status == 200 and body["status"] == "error"
            wordings.add(body["msg"])
        assert wordings == set(NONCE_WORDINGS)
        assert stats(sim)["replies"]["nonce_failed"] == 3


async def test_decoy_rest_nonce_is_rejected(
    clock: ManualClock, http: aiohttp.ClientSession
) -> None:
    async with start(clock, markup="json-blob") as sim:
        async with http.get(sim.url + "/") as response:
            html = await response.text()
        decoy = re.search(r'"nonce":"([0-9a-f]{10})"', html).group(1)  # type: ignore[union-attr]
        _, body = await ask(http, sim, chat_form(decoy))
        assert body["msg"] in NONCE_WORDINGS


async def test_nonce_lives_one_to_two_ticks(
    clock: ManualClock, http: aiohttp.ClientSession
) -> None:
    async with start(clock, nonce_tick_seconds=100) as sim:
        clock.set(1000.5)  # just after a tick boundary: the nonce lives almost two ticks
        nonce = await handshake(http, sim)
        clock.advance(99)
        _, body = await ask(http, sim, chat_form(nonce))
        assert body["status"] == "success"
        clock.advance(100)  # 1199.5: the previous tick, still accepted
        _, body = await ask(http, sim, chat_form(nonce))
        assert body["status"] == "success"
        clock.advance(1)  # 1200.5: two ticks on, expired
        _, body = await ask(http, sim, chat_form(nonce))
        assert body["msg"] in NONCE_WORDINGS


async def test_nonce_bound_to_cookie(clock: ManualClock, http: aiohttp.ClientSession) -> None:
    async with start(clock, bind_nonce_to_cookie=True) as sim:
        nonce = await handshake(http, sim)
        _, body = await ask(http, sim, chat_form(nonce))
        assert body["status"] == "success"
        async with aiohttp.ClientSession() as stranger:
            _, body = await ask(stranger, sim, chat_form(nonce))
        assert body["msg"] in NONCE_WORDINGS


async def test_consent_missing(clock: ManualClock, http: aiohttp.ClientSession) -> None:
    async with start(clock) as sim:
        nonce = await handshake(http, sim)
        for agree in ("<omit>", "0"):
            _, body = await ask(http, sim, chat_form(nonce, wpaicg_user_agree=agree))
            assert body == {
                "status": "error",
                "msg": "Something went wrong",
                "data": "Du musst das Kästchen anklicken!",
            }
        assert stats(sim)["replies"]["consent_missing"] == 2


async def test_empty_message(clock: ManualClock, http: aiohttp.ClientSession) -> None:
    async with start(clock, language="en") as sim:
        nonce = await handshake(http, sim)
        _, body = await ask(http, sim, chat_form(nonce, message="  "))
        assert body == {"status": "error", "msg": "Please enter a message."}
        assert stats(sim)["replies"]["bad_request"] == 1


async def test_prohibited_word(clock: ManualClock, http: aiohttp.ClientSession) -> None:
    async with start(clock, language="en") as sim:
        nonce = await handshake(http, sim)
        _, body = await ask(http, sim, chat_form(nonce, "say ForbiddenWord now"))
        assert body == {
            "status": "error",
            "msg": "Your message has been flagged because it contains prohibited words.",
        }


# --- a form that is not the site's chat's ---------------------------------------------

CUSTOM_BOT_WIDGET = {"bot_id": 4367, "chat_type": "widget", "post_id": 2477, "language": "en"}
ITS_FORM = {
    "action": "wpaicg_chatbox_message",
    "post_id": "2477",
    "bot_id": "4367",
    "chatbot_identity": "custom_bot_4367",
}


async def test_a_custom_bot_widget_answers_its_own_form(
    clock: ManualClock, http: aiohttp.ClientSession
) -> None:
    async with start(clock, **CUSTOM_BOT_WIDGET) as sim:
        nonce = await handshake(http, sim)
        status, body = await ask(http, sim, chat_form(nonce, **ITS_FORM))
        assert (status, body["status"]) == (200, "success")
        assert stats(sim)["replies"]["form_mismatch"] == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("post_id", "106"),
        ("action", "wpaicg_chat_shortcode_message"),  # a shortcode's, at a widget
        ("bot_id", "0"),
        ("chatbot_identity", "widget"),  # the type, where the page names a custom bot
        ("chatbot_identity", "custom_bot_12"),
        ("wpaicg_chat_client_id", "abc123"),
        ("wpaicg_chat_client_id", "<omit>"),
        ("wpaicg_chat_history", "Human: hi"),
    ],
)
async def test_a_form_not_for_this_chat_is_refused_and_counted(
    clock: ManualClock, http: aiohttp.ClientSession, field: str, value: str
) -> None:
    async with start(clock, **CUSTOM_BOT_WIDGET) as sim:
        nonce = await handshake(http, sim)
        status, body = await ask(http, sim, chat_form(nonce, **{**ITS_FORM, field: value}))
        assert (status, body) == (
            200,
            {"status": "error", "msg": "This chat is not available here."},
        )
        assert stats(sim)["replies"]["form_mismatch"] == 1
        assert stats(sim)["mismatches"] == {field: 1}
        assert stats(sim)["replies"]["success"] == 0


async def test_the_browser_s_multipart_form_is_read(
    clock: ManualClock, http: aiohttp.ClientSession
) -> None:
    async with start(clock) as sim:
        nonce = await handshake(http, sim)
        form = aiohttp.FormData(chat_form(nonce, "¿multipart?"), default_to_multipart=True)
        async with http.post(sim.url + AJAX, data=form) as response:
            body = await response.json()
        assert body["data"] == "Echo: ¿multipart?"
        broken = b'--xyz\r\nContent-Disposition: form-data; name="action"\r\n\r\nwpaicg'
        headers = {"Content-Type": "multipart/form-data; boundary=xyz"}
        async with http.post(sim.url + AJAX, data=broken, headers=headers) as response:
            assert (response.status, await response.text()) == (400, "0")  # no form: no action


@pytest.mark.parametrize(
    ("language", "consent", "answer"),
    [
        ("de", "Du musst das Kästchen anklicken!", "Echo: hola"),
        ("en", "You must tick the box!", "Echo: hola"),
        ("es", "¡Debes marcar la casilla!", "Eco: hola"),
    ],
)
async def test_the_site_speaks_its_language(
    clock: ManualClock, http: aiohttp.ClientSession, language: str, consent: str, answer: str
) -> None:
    async with start(clock, language=language) as sim:
        async with http.get(sim.url + "/") as response:
            assert f'<html lang="{language}">' in await response.text()
        nonce = await handshake(http, sim)
        _, body = await ask(http, sim, chat_form(nonce, wpaicg_user_agree="<omit>"))
        assert body["data"] == consent
        _, body = await ask(http, sim, chat_form(nonce, "hola"))
        assert body["data"] == answer


async def test_quota_then_token_limit_then_window_passes(
    clock: ManualClock, http: aiohttp.ClientSession
) -> None:
    async with start(clock, quota=2, quota_window_seconds=60) as sim:
        nonce = await handshake(http, sim)
        for _ in range(2):
            _, body = await ask(http, sim, chat_form(nonce))
            assert body["status"] == "success"
        status, body = await ask(http, sim, chat_form(nonce))
        assert status == 200
        assert body == {
            "tokenLimitReached": True,
            "msg": "You have reached your token limit.",
            "status": "error",
        }
        clock.advance(61)
        _, body = await ask(http, sim, chat_form(nonce))
        assert body["status"] == "success"
        assert stats(sim)["identities"]["direct"]["token_limited"] == 1


async def test_streaming_reply(clock: ManualClock, http: aiohttp.ClientSession) -> None:
    async with start(clock, stream=True) as sim:
        nonce = await handshake(http, sim)
        async with http.post(sim.url + AJAX, data=chat_form(nonce, "cuéntame algo")) as response:
            assert response.headers["Content-Type"].startswith("text/event-stream")
            text = await response.text()
        events = [line[len("data: ") :] for line in text.split("\n\n") if line]
        assert events[-1] == "[DONE]"
        pieces = [json.loads(e)["choices"][0]["delta"]["content"] for e in events[:-1]]
        assert len(pieces) > 1
        assert "".join(pieces) == "Echo: cuéntame algo"


def test_answer_chunks_join_back() -> None:
    for answer in ("", "a", "Echo: hola", "x" * 101):
        assert "".join(answer_chunks(answer)) == answer


# --- rate limits and bans -------------------------------------------------------------


async def test_rate_limit_429_with_retry_after(
    clock: ManualClock, http: aiohttp.ClientSession
) -> None:
    async with start(clock, rate_per_second=0.5, burst=1) as sim:
        nonce = await handshake(http, sim)
        async with http.post(sim.url + AJAX, data=chat_form(nonce)) as response:
            assert response.status == 429
            assert response.headers["Retry-After"] == "2"
        clock.advance(2)
        _, body = await ask(http, sim, chat_form(nonce))
        assert body["status"] == "success"
        direct = stats(sim)["identities"]["direct"]
        assert (direct["rate_limited"], direct["violations"], direct["banned"]) == (1, 0, False)


async def test_violations_earn_a_ban(clock: ManualClock, http: aiohttp.ClientSession) -> None:
    async with start(
        clock, rate_per_second=1, burst=1, ban_after_violations=3, ban_seconds=600,
        violation_grace_seconds=0,
    ) as sim:  # fmt: skip
        nonce = await handshake(http, sim)
        statuses = []
        for _ in range(4):  # one 429, then two violations still 429, the third is banned
            status, _ = await ask(http, sim, chat_form(nonce))
            statuses.append(status)
        assert statuses == [429, 429, 429, 403]
        status, body = await ask(http, sim, chat_form(nonce))
        assert (status, body) == (403, "You are not allowed to access this feature.")
        async with http.get(sim.url + "/") as response:
            assert response.status == 403
            assert "Just a moment..." in await response.text()
        snapshot = stats(sim)
        direct = snapshot["identities"]["direct"]
        assert direct["banned"] is True and direct["bans"] == 1 and direct["violations"] == 3
        assert direct["refused"] == 3
        assert snapshot["replies"]["banned"] == 1
        clock.advance(600)
        nonce = await handshake(http, sim)
        clock.advance(1)  # the page took the only token
        _, body = await ask(http, sim, chat_form(nonce))
        assert body["status"] == "success"
        assert stats(sim)["identities"]["direct"]["banned"] is False


# --- faults -------------------------------------------------------------------------


async def test_fault_5xx(clock: ManualClock, http: aiohttp.ClientSession) -> None:
    async with start(clock, fault_5xx_rate=1.0, seed=3) as sim:
        async with http.get(sim.url + "/") as response:
            assert response.status in (500, 502, 503)
            assert "<html" in (await response.text()).lower()
        assert stats(sim)["faults"]["5xx"] == 1


async def test_fault_reset(clock: ManualClock, http: aiohttp.ClientSession) -> None:
    async with start(clock, fault_reset_rate=1.0) as sim:
        with pytest.raises(aiohttp.ClientError):
            await ask(http, sim, chat_form("0123456789"))
        assert stats(sim)["faults"]["reset"] == 1


async def test_fault_nonjson(clock: ManualClock, http: aiohttp.ClientSession) -> None:
    async with start(clock, fault_nonjson_rate=1.0) as sim:
        async with http.get(sim.url + "/") as response:
            assert response.status == 200  # no non-JSON fault on the page
        status, body = await ask(http, sim, chat_form("0123456789"))
        assert status == 200 and isinstance(body, str) and body.startswith("<!DOCTYPE html>")


async def test_fault_slow(clock: ManualClock, http: aiohttp.ClientSession) -> None:
    async with start(clock, fault_slow_rate=1.0, slow_seconds=5) as sim:
        timeout = aiohttp.ClientTimeout(total=0.2)
        with pytest.raises(asyncio.TimeoutError):
            await ask(http, sim, chat_form("0123456789"), timeout=timeout)
        assert stats(sim)["faults"]["slow"] == 1


async def test_fault_429_is_held_to_its_retry_after(
    clock: ManualClock, http: aiohttp.ClientSession
) -> None:
    async with start(
        clock, fault_429_rate=1.0, ban_after_violations=0, proxies=1, violation_grace_seconds=0
    ) as sim:
        for _ in range(2):  # the fault, then a violation: sent before Retry-After elapsed
            async with http.get(sim.url + "/") as response:
                assert response.status == 429
                assert response.headers["Retry-After"] == "1"
                assert await response.text() == "Too Many Requests"
        async with http.get(sim.url + "/", proxy=sim.proxy_urls[0]) as response:
            assert response.status == 429  # another identity: a fault, not a violation
        clock.advance(1)
        async with http.get(sim.url + "/") as response:
            assert response.status == 429  # waited: the next fault, no violation
        snapshot = stats(sim)
        assert snapshot["faults"]["429"] == 3 and snapshot["replies"]["rate_limited"] == 4
        assert snapshot["identities"]["direct"]["violations"] == 1
        assert snapshot["identities"]["proxy1"]["violations"] == 0


async def test_fault_stale_nonce(clock: ManualClock, http: aiohttp.ClientSession) -> None:
    async with start(clock, fault_stale_nonce_rate=1.0) as sim:
        nonce = await handshake(http, sim)  # no stale-nonce fault on the page
        for _ in range(3):
            status, body = await ask(http, sim, chat_form(nonce))
            assert status == 200 and body["status"] == "error" and body["msg"] in NONCE_WORDINGS
        snapshot = stats(sim)
        assert snapshot["faults"]["stale_nonce"] == 3 and snapshot["replies"]["nonce_failed"] == 3
        assert snapshot["replies"]["success"] == 0 and snapshot["answered_messages"] == 0


async def test_latency_overlaps_concurrent_requests(
    clock: ManualClock, http: aiohttp.ClientSession
) -> None:
    async with start(clock, latency="fixed:100", proxies=1) as sim:
        nonce = await handshake(http, sim)
        forms = [chat_form(nonce, f"prompt {i}") for i in range(8)]
        replies = await asyncio.gather(*(ask(http, sim, form) for form in forms))
        assert [body["data"] for _, body in replies] == [f"Echo: prompt {i}" for i in range(8)]
        snapshot = stats(sim)
        assert snapshot["inflight_max"] > 1 and snapshot["inflight"] == 0
        assert snapshot["identities"]["direct"]["inflight_max"] > 1


def test_latency_specs() -> None:
    import random

    rng = random.Random(0)
    assert parse_latency("fixed:0").is_zero
    assert 0.01 <= parse_latency("uniform:10,20").sample_seconds(rng) <= 0.02
    assert parse_latency("lognormal:50,0.5").sample_seconds(rng) > 0
    for bad in ("", "fixed", "uniform:5", "uniform:9,1", "lognormal:0,1", "gauss:1,2"):
        with pytest.raises(ValueError):
            parse_latency(bad)


def test_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        SimConfig(markup="xml")
    with pytest.raises(ValueError):
        SimConfig(fault_5xx_rate=0.7, fault_reset_rate=0.7)
    with pytest.raises(ValueError):
        SimConfig(latency="sometimes")
    with pytest.raises(ValueError, match="add up to at most 1"):
        SimConfig(fault_429_rate=0.6, fault_stale_nonce_rate=0.3, fault_slow_rate=0.2)
    with pytest.raises(ValueError):
        SimConfig(fault_stale_nonce_rate=1.5)
    for count in ("plain_502_proxies", "dead_proxies"):
        with pytest.raises(ValueError):
            SimConfig(**{count: -1})
    with pytest.raises(ValueError):
        SimConfig(gateway=True, gateway_password="")
    for nonsense in (
        {"chat_type": "popup"},
        {"language": "fr"},
        {"bot_id": -1},
        {"post_id": 0},
        {"consent_field": "agree me"},
    ):
        with pytest.raises(ValueError):
            SimConfig(**nonsense)  # type: ignore[arg-type]
    assert SimConfig(fault_429_rate=0.5, fault_stale_nonce_rate=0.5).fault_429_rate == 0.5
    assert "hunter2" not in repr(SimConfig(proxy_credentials="me:hunter2"))
    assert "hunter2" not in repr(SimConfig(gateway=True, gateway_password="hunter2"))


# --- proxies ------------------------------------------------------------------------


async def test_proxy_port_has_its_own_identity(
    clock: ManualClock, http: aiohttp.ClientSession
) -> None:
    async with start(clock, proxies=2, rate_per_second=1, burst=1) as sim:
        nonce = await handshake(http, sim, proxy=sim.proxy_urls[0])
        _, body = await ask(http, sim, chat_form(nonce), proxy=sim.proxy_urls[1])
        assert body["status"] == "success"  # separate buckets: proxy2 still has its token
        status, _ = await ask(http, sim, chat_form(nonce), proxy=sim.proxy_urls[0])
        assert status == 429
        identities = stats(sim)["identities"]
        assert identities["proxy1"]["page"] == 1 and identities["proxy1"]["rate_limited"] == 1
        assert identities["proxy2"]["success"] == 1
        assert "direct" not in identities


async def raw_request(url: str, request: bytes) -> bytes:
    host, port = url.removeprefix("http://").rsplit("@", 1)[-1].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(request)
    await writer.drain()
    reply = await reader.read()
    writer.close()
    return reply


async def test_proxy_refuses_other_targets_and_connect(clock: ManualClock) -> None:
    async with start(clock, proxies=1) as sim:
        proxy = sim.proxy_urls[0]
        other = (
            b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n"
        )
        assert (await raw_request(proxy, other)).startswith(b"HTTP/1.1 502")
        origin = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        assert (await raw_request(proxy, origin)).startswith(b"HTTP/1.1 400")
        port = sim.url.rsplit(":", 1)[1]
        connect = f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"
        assert (await raw_request(proxy, connect.encode())).startswith(b"HTTP/1.1 501")
        assert stats(sim)["proxy"] == {
            "bad_gateway": 0,
            "auth_required": 0,
            "wrong_target": 1,
            "not_absolute": 1,
            "connect_refused": 1,
            "plain_502": 0,
        }


async def test_bad_gateway_port(clock: ManualClock, http: aiohttp.ClientSession) -> None:
    async with start(clock, bad_gateway_proxies=1) as sim:
        async with http.get(sim.url + "/", proxy=sim.bad_gateway_proxy_urls[0]) as response:
            assert response.status == 502
            assert response.headers["Proxy-Status"].startswith("sim-proxy")
        assert stats(sim)["identities"]["badgw1"]["bad_gateway"] == 1


async def test_auth_proxy_wants_credentials(
    clock: ManualClock, http: aiohttp.ClientSession
) -> None:
    async with start(clock, auth_proxies=1, proxy_credentials="alice:s3cret") as sim:
        with_creds = sim.auth_proxy_urls[0]
        assert with_creds.startswith("http://alice:s3cret@127.0.0.1:")
        bare = "http://" + with_creds.split("@", 1)[1]
        async with http.get(sim.url + "/", proxy=bare) as response:
            assert response.status == 407
            assert response.headers["Proxy-Authenticate"] == 'Basic realm="sim"'
        wrong = {"Proxy-Authorization": "Basic " + base64.b64encode(b"alice:nope").decode()}
        async with http.get(sim.url + "/", proxy=bare, proxy_headers=wrong) as response:
            assert response.status == 407
        nonce = await handshake(http, sim, proxy=with_creds)
        _, body = await ask(http, sim, chat_form(nonce), proxy=with_creds)
        assert body["status"] == "success"
        identity = stats(sim)["identities"]["authproxy1"]
        assert (identity["auth_required"], identity["success"]) == (2, 1)
        masked = sim.ready_info(mask_password=True)["auth_proxies"][0]
        assert "s3cret" not in masked and ":***@" in masked


# --- control endpoints and the command ------------------------------------------------


async def test_stats_endpoint_and_reset(clock: ManualClock, http: aiohttp.ClientSession) -> None:
    async with start(clock) as sim:
        nonce = await handshake(http, sim)
        await ask(http, sim, chat_form(nonce))
        async with http.get(sim.stats_url) as response:
            body = await response.json()
        assert body["requests"] == {"page": 1, "ajax": 1}
        assert body["replies"]["success"] == 1
        assert body["identities"]["direct"]["success"] == 1
        async with http.post(sim.url + "/__sim/reset") as response:
            assert response.status == 200
        async with http.get(sim.stats_url) as response:
            body = await response.json()
        assert body["requests"] == {"page": 0, "ajax": 0}
        assert body["identities"] == {}
        assert sim.config.post_id == 106


async def test_answer_ledger_counts_distinct_and_duplicate_messages(
    clock: ManualClock, http: aiohttp.ClientSession
) -> None:
    async with start(clock) as sim:
        nonce = await handshake(http, sim)
        for message in ("uno", "dos", "uno", "uno", "Uno"):
            _, body = await ask(http, sim, chat_form(nonce, message))
            assert body["status"] == "success"
        await ask(http, sim, chat_form("0123456789", "tres"))  # refused: not an answer
        async with http.get(sim.stats_url) as response:
            body = await response.json()
        assert (body["answered_messages"], body["answered_duplicates"]) == (3, 2)
        async with http.post(sim.url + "/__sim/reset") as response:
            assert response.status == 200
        snapshot = stats(sim)
        assert (snapshot["answered_messages"], snapshot["answered_duplicates"]) == (0, 0)
        await ask(http, sim, chat_form(nonce, "uno"))
        assert (stats(sim)["answered_messages"], stats(sim)["answered_duplicates"]) == (1, 0)


def test_cli_prints_ready_line_and_stops_on_sigterm(tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"
    command = [sys.executable, "-m", "simulator", "--port", "0", "--auth-proxies", "1",
               "--proxies", "1", "--ready-file", str(ready)]  # fmt: skip
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        assert process.stdout is not None
        printed = json.loads(process.stdout.readline())
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    written = json.loads(ready.read_text())
    assert printed["auth_proxies"][0].startswith("http://user:***@")
    assert written["auth_proxies"][0].startswith("http://user:secret@")
    assert printed["url"] == written["url"] and len(written["proxies"]) == 1
    assert written["stats_url"] == written["url"] + "/__sim/stats"
    assert (written["gateway"], written["gateway_password"]) == (None, None)


async def test_two_sites_side_by_side_refuse_each_other_s_nonces(
    clock: ManualClock, http: aiohttp.ClientSession
) -> None:
    """Each site has its own salt, as WordPress sites do: one site's session is not another's."""
    async with start(clock) as es, start(clock, bot_id=4367, chat_type="widget") as uk:
        es_nonce, uk_nonce = await handshake(http, es), await handshake(http, uk)
        assert es_nonce != uk_nonce
        uk_form = {**ITS_FORM, "post_id": "106"}
        _, body = await ask(http, uk, chat_form(es_nonce, **uk_form))
        assert body["msg"] in NONCE_WORDINGS
        _, body = await ask(http, uk, chat_form(uk_nonce, **uk_form))
        assert body["status"] == "success"
        assert stats(es)["requests"]["ajax"] == 0


def test_several_simulator_processes_run_side_by_side(tmp_path: Path) -> None:
    from simulator.local import simulator_process

    with (
        simulator_process(tmp_path, "--bot-id", "4367", "--type", "widget", "--post-id", "2477")
        as (uk, _),
        simulator_process(tmp_path, "--language", "es", "--stream") as (es, _),
    ):  # fmt: skip
        assert uk["url"] != es["url"]
        assert uk["chat"] == {"post_id": 2477, "bot_id": 4367, "type": "widget",
                              "stream": False, "language": "de"}  # fmt: skip
        assert es["chat"]["language"] == "es" and es["chat"]["stream"] is True
    assert {p.name for p in tmp_path.glob("sim*.log")} == {"sim.log", "sim-2.log"}


def test_cli_ready_line_lists_gateway_and_other_proxies(tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"
    command = [sys.executable, "-m", "simulator", "--port", "0", "--gateway",
               "--gateway-password", "hunter2", "--plain-502-proxies", "2",
               "--dead-proxies", "1", "--fault-429-rate", "0.1",
               "--fault-stale-nonce-rate", "0.1", "--bind-nonce-to-identity",
               "--ready-file", str(ready)]  # fmt: skip
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        assert process.stdout is not None
        line = process.stdout.readline()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    printed, written = json.loads(line), json.loads(ready.read_text())
    assert "hunter2" not in line and printed["gateway_password"] == "***"
    assert written["gateway_password"] == "hunter2"
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", printed["gateway"])
    assert printed["gateway"] == written["gateway"]
    assert len(printed["plain_502_proxies"]) == 2 and len(printed["dead_proxies"]) == 1


def test_basic_auth_header_shape() -> None:
    from simulator.proxies import credentials_match

    token = base64.b64encode(b"user:secret").decode()
    assert credentials_match(f"Basic {token}", "user:secret")
    assert not credentials_match(f"Bearer {token}", "user:secret")
    assert not credentials_match("Basic !!!", "user:secret")
    assert not credentials_match(None, "user:secret")


async def test_requests_already_on_the_wire_are_not_violations(
    clock: ManualClock, http: aiohttp.ClientSession
) -> None:
    """Right after a 429 a concurrent client's requests still arrive: refused, not held
    against it; only what it sends after it could have read the Retry-After counts."""
    options = {"rate_per_second": 1, "burst": 1, "ban_after_violations": 2}
    async with start(clock, violation_grace_seconds=0.25, **options) as sim:
        nonce = await handshake(http, sim)  # the one token
        assert (await ask(http, sim, chat_form(nonce)))[0] == 429
        for _ in range(3):  # racing requests, within the grace
            assert (await ask(http, sim, chat_form(nonce)))[0] == 429
        clock.advance(0.3)  # past the grace, still before Retry-After: these count
        statuses = [(await ask(http, sim, chat_form(nonce)))[0] for _ in range(2)]
        assert statuses == [429, 403]
        assert stats(sim)["identities"]["direct"]["violations"] == 2


def test_a_message_with_a_json_schema_is_answered_with_an_object_of_its_shape() -> None:
    from simulator.schema_answers import instance_of, schema_in

    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "tags": {"type": "array", "items": {"$ref": "#/$defs/Tag"}},
            "kind": {"enum": ["a", "b"]},
            "score": {"anyOf": [{"type": "number"}, {"type": "null"}]},
        },
        "$defs": {"Tag": {"type": "object", "properties": {"on": {"type": "boolean"}}}},
    }
    message = f"Describe it.\n\nRespond ... JSON Schema: {json.dumps(schema)}"
    assert schema_in(message) == schema
    assert instance_of(schema) == {"name": "echo", "tags": [{"on": True}], "kind": "a",
                                   "score": 1.5}  # fmt: skip
    assert schema_in("no schema here") is None
    assert schema_in("JSON Schema: {not json") is None


async def test_the_ledger_keeps_each_post_with_its_times_and_answer() -> None:
    from simulator import SimConfig, run_simulator

    config = SimConfig(ledger=True, prohibited_words=("nope",), markup="data-attrs")
    async with run_simulator(config) as sim, aiohttp.ClientSession() as http:
        async with http.get(sim.url + "/") as page:
            nonce = re.search(r'data-nonce="(\w+)"', await page.text())
        for message in ("hello", "nope"):
            form = {"action": "wpaicg_chat_shortcode_message", "_wpnonce": nonce[1],
                    "post_id": "106", "message": message, "wpaicg_user_agree": "1",
                    "bot_id": "0", "chatbot_identity": "shortcode",
                    "wpaicg_chat_client_id": "abcde12345", "wpaicg_chat_history": "[]"}  # fmt: skip
            async with http.post(sim.url + "/wp-admin/admin-ajax.php", data=form) as reply:
                await reply.read()
        async with http.get(sim.url + "/__sim/ledger?since=0") as reply:
            ledger = await reply.json()
    hello, nope = ledger["entries"]
    assert (hello["message"], hello["answered"], nope["answered"]) == ("hello", True, False)
    assert hello["arrived"] <= hello["ended"] <= nope["arrived"] <= nope["ended"]
    assert ledger["next"] == nope["n"]
