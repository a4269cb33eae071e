"""Signing in to the console, as an attacker would try it: where ``next`` may lead, how fast
wrong keys may come, what the cookie holds and says, and what signing out ends."""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from producer.http.app import make_app
from producer.http.console.access import COOKIE
from producer.http.console.sign_in import console_path
from producer.http.settings import ApiSettings
from producer.http.throttle import FREE_FAILURES

KEY = "sk-sign-in-key-0123456789"
WRONG = "sk-wrong-guess-0123456789"


def settings(**overrides: Any) -> ApiSettings:
    values = {"redis_url": "redis://unused", "queue_name": "test:queue", "api_keys": KEY,
              **overrides}  # fmt: skip
    return ApiSettings(_env_file=None, **values)


@pytest.fixture
async def client(fake_redis: Redis) -> AsyncIterator[TestClient]:
    app = make_app(settings(), open_without_keys=False, redis=fake_redis)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def csrf(client: TestClient) -> str:
    html = await (await client.get("/sign-in")).text()
    return re.search(r'name="csrf" value="([0-9a-f]+)"', html)[1]


async def sign_in(client: TestClient, key: str = KEY, next_: str = "/", **headers: str):
    return await client.post("/sign-in", data={"key": key, "csrf": await csrf(client),
                                               "next": next_},
                             headers=headers, allow_redirects=False)  # fmt: skip


@pytest.mark.parametrize(
    "target",
    ["/\t/evil.example", "/\n/evil.example", "/\r/evil.example", "//evil.example",
     "/\\evil.example", "https://evil.example/", "/%09/evil.example", "/v1/batches",
     "javascript:alert(1)", "/batches/../../evil"],
)  # fmt: skip
async def test_next_leads_only_to_a_page_of_this_console(client, target: str) -> None:
    assert console_path(target) == "/"
    shown = await client.get("/sign-in", params={"next": target}, headers={"Authorization":
                             f"Bearer {KEY}"}, allow_redirects=False)  # fmt: skip
    assert shown.status == 303 and shown.headers["Location"] == "/"
    posted = await sign_in(client, next_=target)
    assert (posted.status, posted.headers["Location"]) == (303, "/")


async def test_next_keeps_a_console_page_with_its_query(client) -> None:
    for target in ("/", "/batches?state=failed&after=b_1", "/batches/b%2F1/prompts/3"):
        assert console_path(target) == target
    reply = await sign_in(client, next_="/batches?state=failed")
    assert reply.headers["Location"] == "/batches?state=failed"


async def test_wrong_keys_are_braked_per_address_with_a_retry_after(client) -> None:
    for _ in range(FREE_FAILURES):
        assert (await sign_in(client, WRONG)).status == 401
    braked = await sign_in(client, WRONG)
    assert braked.status == 429 and int(braked.headers["Retry-After"]) >= 1
    assert "too many wrong keys" in (await braked.text()).lower()
    # While braked, even the right key is not looked at: a guess then learns nothing.
    assert (await sign_in(client, KEY)).status == 429
    api = await client.get("/v1/batches", headers={"Authorization": f"Bearer {WRONG}x"})
    assert api.status == 429 and "Retry-After" in api.headers
    assert (await api.json())["error"]["code"] == "rate_limit_exceeded"


async def test_the_api_brakes_wrong_keys_too(client) -> None:
    for _ in range(FREE_FAILURES):
        reply = await client.get("/v1/batches", headers={"Authorization": f"Bearer {WRONG}"})
        assert reply.status == 401
    reply = await client.get("/v1/batches", headers={"Authorization": f"Bearer {WRONG}"})
    assert reply.status == 429


async def test_the_cookie_is_a_random_session_id_never_derived_from_the_key(client) -> None:
    reply = await sign_in(client)
    cookie = reply.cookies[COOKIE]
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", cookie.value)
    assert hashlib.sha256(KEY.encode()).hexdigest()[:16] not in cookie.value
    assert KEY not in reply.headers["Set-Cookie"]
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and not cookie["secure"]
    client.session.cookie_jar.clear()
    again = await sign_in(client)
    assert again.cookies[COOKIE].value != cookie.value  # a new session each time


async def test_signing_out_revokes_the_session_for_a_copied_cookie(client, fake_redis) -> None:
    reply = await sign_in(client)
    copied = reply.cookies[COOKIE].value
    page = await client.get("/batches", cookies={COOKIE: copied}, allow_redirects=False)
    assert page.status == 200
    form = await (await client.get("/batches")).text()
    token = re.search(r'name="csrf" value="([0-9a-f]+)"', form)[1]
    out = await client.post("/sign-out", data={"csrf": token}, allow_redirects=False)
    assert (out.status, out.headers["Location"]) == (303, "/sign-in")
    stale = await client.get("/batches", cookies={COOKIE: copied}, allow_redirects=False)
    assert stale.status == 303 and stale.headers["Location"].startswith("/sign-in")


@pytest.mark.parametrize(
    ("headers", "secure"),
    [
        ({}, False),
        ({"X-Forwarded-Proto": "https"}, True),
        ({"Forwarded": "for=203.0.113.7;proto=https"}, True),
        ({"X-Forwarded-Proto": "http"}, False),
    ],
)
async def test_the_cookie_is_secure_over_tls_through_a_trusted_proxy(
    fake_redis, headers: dict[str, str], secure: bool
) -> None:
    app = make_app(settings(trusted_proxies="127.0.0.1"), open_without_keys=False,
                   redis=fake_redis)  # fmt: skip
    async with TestClient(TestServer(app)) as trusting:
        reply = await sign_in(trusting, **headers)
        assert bool(reply.cookies[COOKIE]["secure"]) is secure


async def test_a_forwarded_proto_from_an_untrusted_peer_is_ignored(client) -> None:
    reply = await sign_in(client, **{"X-Forwarded-Proto": "https"})
    assert not reply.cookies[COOKIE]["secure"]


async def test_behind_a_trusted_proxy_wrong_keys_count_per_forwarded_client(fake_redis) -> None:
    app = make_app(settings(trusted_proxies="127.0.0.0/8"), open_without_keys=False,
                   redis=fake_redis)  # fmt: skip
    async with TestClient(TestServer(app)) as behind:
        for n in range(FREE_FAILURES + 1):
            reply = await sign_in(behind, f"{WRONG}{n}", **{"X-Forwarded-For": "198.51.100.1"})
        assert reply.status == 429
        other = await sign_in(behind, **{"X-Forwarded-For": "198.51.100.2"})
        assert other.status == 303  # another client behind the same proxy is not braked


@pytest.mark.parametrize("short", ["sk-short", "team-a:sk-0123456789abcdef"])
def test_a_key_shorter_than_20_characters_is_refused_at_start(short: str) -> None:
    with pytest.raises(ValueError, match="at least 20") as refused:
        settings(api_keys=f"{KEY},{short}")
    assert "entry 2" in str(refused.value)
    assert short.rpartition(":")[2] not in str(refused.value)


def test_serve_refuses_to_start_with_a_short_key(monkeypatch, capsys) -> None:
    from chatgptes.running import load_settings

    monkeypatch.setenv("CHATGPTES_API_KEYS", "sk-tiny")
    with pytest.raises(SystemExit) as exited:  # what `chatgptes serve` reads first
        load_settings(ApiSettings)
    said = capsys.readouterr().err
    assert exited.value.code == 2 and "CHATGPTES_API_KEYS" in said and "at least 20" in said
    assert "sk-tiny" not in said
