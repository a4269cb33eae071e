"""The web console in ``chatgptes serve``: who gets in, what it shows, escaped, and what its
forms refuse — with aiohttp's test client on fakeredis (the browser run is in
``test_console_browser.py``)."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis as sync_redis
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from contract import keys
from contract.config import QueueSettings
from contract.models import JobError, JobResult, Message
from contract.outbox import announce_endpoints
from contract.throughput import ThroughputTally
from producer.api import BatchQueue
from producer.http.app import make_app
from producer.http.console.access import COOKIE
from producer.http.settings import ApiSettings
from producer.inputs import PromptLine
from tests.test_top import seed_identities, seed_worker

KEY = "sk-console-key-0123456789"
KEY_A, KEY_B, KEY_PLAIN = (
    "sk-team-a-0123456789ab",
    "sk-team-b-0123456789ab",
    "sk-plain-0123456789abc",
)
QUEUE = "test:queue"
HOSTILE = "<script>alert(1)</script>"


def settings(**overrides: Any) -> ApiSettings:
    values = {"redis_url": "redis://unused", "queue_name": QUEUE, "api_keys": KEY, **overrides}
    return ApiSettings(_env_file=None, **values)


@pytest.fixture
async def client(fake_redis: Redis) -> AsyncIterator[TestClient]:
    app = make_app(settings(), open_without_keys=False, redis=fake_redis)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


def bearer(key: str = KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def enqueue(redis: Redis, batch_id: str, custom_ids: list[str]) -> BatchQueue:
    queue = BatchQueue(redis, QueueSettings(redis_url="redis://unused", queue_name=QUEUE))
    lines = [PromptLine(n + 1, cid, (Message(role="user", content="hi"),), "gpt-4o")
             for n, cid in enumerate(custom_ids)]  # fmt: skip
    await queue.enqueue(lines, batch_id=batch_id)
    return queue


async def settle(queue: BatchQueue, batch_id: str, index: int, *, content: str = "",
                 error: str = "") -> None:  # fmt: skip
    created = await queue.store.created_at(batch_id)
    (request,) = await queue.store.requests(batch_id, [index], created)
    if error:
        result = JobResult.for_request(request, status="failed",
                                       error=JobError(type=error, message=f"{error}!"))  # fmt: skip
    else:
        result = JobResult.for_request(request, status="succeeded", content=content)
    await queue.store.ledger.save_results([result])


async def signed_in(client: TestClient) -> None:
    form = await client.get("/sign-in")
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', await form.text())[1]
    reply = await client.post("/sign-in", data={"key": KEY, "csrf": csrf, "next": "/"},
                              allow_redirects=False)  # fmt: skip
    assert reply.status == 303, await reply.text()


def custom_ids(html: str) -> list[str]:
    return re.findall(r'class="name custom-id"[^>]*><a href="[^"]+">([^<]+)<', html)


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([0-9a-f]+)"', html)[1]


def assert_no_inline_script_or_style(html: str) -> None:
    for tag in re.findall(r"<script[^>]*>", html):
        assert "src=" in tag, tag
    for tag in re.findall(r"<[a-zA-Z][^>]*>", html):
        assert not re.search(r"\sstyle=|\son[a-z]+=", tag), tag
    assert "<style" not in html


# -- who gets in ----------------------------------------------------------------------


async def test_without_a_key_only_the_sign_in_form_is_shown(client, fake_redis) -> None:
    await enqueue(fake_redis, "b_secret", ["q0"])
    for path in ("/", "/batches", "/batches/b_secret", "/batches/b_secret/output.jsonl"):
        reply = await client.get(path, allow_redirects=False)
        assert reply.status == 303 and reply.headers["Location"].startswith("/sign-in?next=/")
    form = await client.get("/sign-in")
    html = await form.text()
    assert form.status == 200 and 'type="password"' in html and "b_secret" not in html
    assert "default-src 'none'" in form.headers["Content-Security-Policy"]
    assert_no_inline_script_or_style(html)
    live = await client.get("/live/fleet", headers={"HX-Request": "true"})
    assert (live.status, live.headers["HX-Redirect"]) == (401, "/sign-in")


async def test_signing_in_sets_a_strict_signed_cookie(client) -> None:
    form = await client.get("/sign-in")
    csrf = csrf_of(await form.text())
    wrong = await client.post("/sign-in", data={"key": "sk-wrong-key-0123456789", "csrf": csrf})
    assert wrong.status == 401 and "not one of this server" in await wrong.text()
    assert COOKIE not in client.session.cookie_jar.filter_cookies(client.make_url("/"))
    reply = await client.post("/sign-in", data={"key": KEY, "csrf": csrf, "next": "/batches"},
                              allow_redirects=False)  # fmt: skip
    assert (reply.status, reply.headers["Location"]) == (303, "/batches")
    cookie = reply.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and KEY not in cookie
    assert (await client.get("/")).status == 200
    assert (await client.get("/v1/batches")).status == 401  # the cookie is not an API key


async def test_a_forged_cookie_or_one_of_a_removed_key_gets_nothing(fake_redis) -> None:
    app = make_app(settings(), open_without_keys=False, redis=fake_redis)
    async with TestClient(TestServer(app)) as first:
        await signed_in(first)
        cookie = first.session.cookie_jar.filter_cookies(first.make_url("/"))[COOKIE].value
    rotated = make_app(
        settings(api_keys="sk-other-key-0123456789"), open_without_keys=False, redis=fake_redis
    )
    async with TestClient(TestServer(rotated)) as other:
        for value in (cookie, cookie[:-2] + "xx", "garbage"):
            reply = await other.get("/", cookies={COOKIE: value}, allow_redirects=False)
            assert reply.status == 303, value


async def test_a_bearer_key_is_taken_and_a_wrong_one_is_not(client) -> None:
    assert (await client.get("/", headers=bearer())).status == 200
    reply = await client.get("/", headers=bearer("sk-wrong-key-0123456789"), allow_redirects=False)
    assert reply.status == 303


async def test_an_open_loopback_console_needs_no_sign_in(fake_redis) -> None:
    app = make_app(settings(api_keys=""), open_without_keys=True, redis=fake_redis)
    async with TestClient(TestServer(app)) as open_client:
        reply = await open_client.get("/")
        assert reply.status == 200 and "Sign out" not in await reply.text()


# -- what it shows ----------------------------------------------------------------------


async def test_a_hostile_custom_id_and_answer_are_shown_as_text(client, fake_redis) -> None:
    queue = await enqueue(fake_redis, "b1", [HOSTILE, "plain"])
    await settle(queue, "b1", 0, content='<img src=x onerror="alert(2)">')
    reply = await client.get("/batches/b1", headers=bearer())
    html = await reply.text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and HOSTILE not in html
    assert "&lt;img src=x" in html and "<img" not in html
    assert_no_inline_script_or_style(html)


async def test_a_batch_page_shows_its_counts_errors_and_results(client, fake_redis) -> None:
    queue = await enqueue(fake_redis, "b1", [f"row-{n}" for n in range(60)])
    await settle(queue, "b1", 0, content="the answer")
    await settle(queue, "b1", 1, error="ContentRefused")
    html = await (await client.get("/batches/b1", headers=bearer())).text()
    assert "2 of 60 finished" in html and "ContentRefused" in html and "the answer" in html
    assert "row-49" in html and "row-50" not in html  # one page of 50
    later = await (await client.get("/batches/b1?start=50", headers=bearer())).text()
    assert "row-50" in later and "row-49" not in later
    found = await (await client.get("/batches/b1?q=row-5", headers=bearer())).text()
    assert custom_ids(found) == ["row-5", *(f"row-5{n}" for n in range(10))]
    missing = await client.get("/batches/nope", headers=bearer())
    assert missing.status == 404 and "No such batch" in await missing.text()


async def test_the_list_filters_by_state(client, fake_redis) -> None:
    queue = await enqueue(fake_redis, "b_done", ["a"])
    await settle(queue, "b_done", 0, content="x")
    await enqueue(fake_redis, "b_running", ["a", "b"])
    html = await (await client.get("/batches", headers=bearer())).text()
    assert "b_done" in html and "b_running" in html and 'class="progress"' in html
    completed = await (await client.get("/batches?filter=completed", headers=bearer())).text()
    assert "b_done" in completed and "b_running" not in completed
    running = await (await client.get("/batches?filter=running", headers=bearer())).text()
    assert "b_done" not in running and "b_running" in running


async def test_the_fleet_page_shows_identities_workers_and_throughput(
    real_redis, redis_server
) -> None:
    with sync_redis.Redis.from_url(redis_server) as seed:
        seed_identities(seed, 40, cooling=3, full=2, probing=1)
        seed_worker(seed, "w1", "host-a")
    stale_ms = int(time.time() * 1000) - 60_000  # a worker delivered a minute ago, none since
    await announce_endpoints(real_redis, "w0", [("k0", "", "https://hooks.example")], stale_ms)
    queue = await enqueue(real_redis, "b_told", ["a"])
    await settle(queue, "b_told", 0, content="x")  # its batch.completed event waits
    tally = ThroughputTally()
    for _ in range(7):
        tally.count("succeeded", None)
    tally.count("failed", "RateLimited")
    await tally.flush(real_redis)
    app = make_app(settings(), open_without_keys=False, redis=real_redis)
    async with TestClient(TestServer(app)) as test_client:
        html = await (await test_client.get("/", headers=bearer())).text()
    grid = re.search(r'data-states="([rfpc]*)"', html)[1]
    assert len(grid) == 40 and grid.count("c") == 3 and grid.count("f") == 2
    assert "8 in all" in html and "RateLimited 1" in html and 'class="bar succeeded"' in html
    assert "host-a" in html and "RateLimited" in html
    assert "1 endpoint; 1 pending" in html and "batch.completed" in html
    assert "No worker delivers them now" in html
    assert re.search(r'<p class="verdict degraded"><strong>Degraded:</strong>[^<]*webhook', html)
    assert_no_inline_script_or_style(html)


def test_the_charts_axis_ends_on_a_round_number() -> None:
    from producer.http.console.charts import nice_peak, throughput_chart

    assert [nice_peak(v) for v in (0, 1, 3, 7, 11, 450, 5001)] == [1, 1, 5, 10, 20, 500, 10000]
    assert throughput_chart([]).bars == []


# -- what its forms refuse --------------------------------------------------------------


async def test_cancel_needs_the_sessions_token_and_this_origin(client, fake_redis) -> None:
    await enqueue(fake_redis, "b1", ["a", "b"])
    await signed_in(client)
    page = await (await client.get("/batches/b1")).text()
    csrf = csrf_of(page)
    for data, headers in (
        ({}, {}),
        ({"csrf": "0" * 32}, {}),
        ({"csrf": csrf}, {"Origin": "https://evil.example"}),
        ({"csrf": csrf}, {"Sec-Fetch-Site": "cross-site"}),
    ):
        reply = await client.post("/batches/b1/cancel", data=data, headers=headers)
        assert reply.status == 403, (data, headers)
        assert await fake_redis.hget(keys.batch_meta("b1"), "state") == b"in_progress"
    origin = str(client.make_url("/")).rstrip("/")
    reply = await client.post("/batches/b1/cancel", data={"csrf": csrf},
                              headers={"Origin": origin}, allow_redirects=False)  # fmt: skip
    assert (reply.status, reply.headers["Location"]) == (303, "/batches/b1")
    assert await fake_redis.hget(keys.batch_meta("b1"), "state") == b"cancelled"


async def test_retry_and_downloads(client, fake_redis) -> None:
    queue = await enqueue(fake_redis, "b1", ["good", "bad"])
    await settle(queue, "b1", 0, content="fine")
    await settle(queue, "b1", 1, error="UpstreamTimeout")
    output = await client.get("/batches/b1/output.jsonl", headers=bearer())
    assert output.headers["Content-Disposition"] == 'attachment; filename="b1_output.jsonl"'
    assert [line["custom_id"] for line in map(_json, (await output.text()).splitlines())] == [
        "good"
    ]
    errors = await (await client.get("/batches/b1/errors.jsonl", headers=bearer())).text()
    assert '"custom_id": "bad"' in errors or '"custom_id":"bad"' in errors
    reply = await client.post("/batches/b1/retry", headers=bearer(), allow_redirects=False)
    assert reply.status == 303  # a script with its key needs no form token
    assert (await queue.status("b1")).state == "in_progress"


def _json(line: str) -> dict:
    import json

    return json.loads(line)


async def test_the_static_files_are_served_with_htmxs_licence(client) -> None:
    html = await (await client.get("/sign-in")).text()
    for src in re.findall(r'(?:src|href)="(/static/[^"]+)"', html):
        reply = await client.get(src)
        assert reply.status == 200 and reply.headers["X-Content-Type-Options"] == "nosniff"
    licence = await client.get("/static/htmx.LICENSE.txt")
    assert "Zero-Clause BSD" in await licence.text()
    assert (await client.get("/static/nope.js")).status == 404


# -- what it costs ----------------------------------------------------------------------


class Calls:
    """Counts what reaches Redis: round trips, and the commands they carry."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from redis.asyncio.client import Pipeline

        self.trips = self.commands = 0
        command, flush = Redis.execute_command, Pipeline.execute

        async def counted_command(client, *args, **options):  # type: ignore[no-untyped-def]
            self.trips += 1
            self.commands += 1
            return await command(client, *args, **options)

        async def counted_flush(pipe, *args, **options):  # type: ignore[no-untyped-def]
            self.trips += 1
            self.commands += len(pipe.command_stack)
            return await flush(pipe, *args, **options)

        monkeypatch.setattr(Redis, "execute_command", counted_command)
        monkeypatch.setattr(Pipeline, "execute", counted_flush)


async def test_the_live_update_costs_the_same_few_calls_at_any_pool_size(
    real_redis, redis_server, monkeypatch
) -> None:
    app = make_app(settings(), open_without_keys=False, redis=real_redis)
    costs = []
    async with TestClient(TestServer(app)) as test_client:
        for size in (10, 2000):
            await real_redis.flushdb()
            with sync_redis.Redis.from_url(redis_server) as seed:
                seed_identities(seed, size, cooling=5)
                seed_worker(seed, "w1", "host-a")
            calls = Calls(monkeypatch)
            started = time.perf_counter()
            reply = await test_client.get("/live/fleet", headers=bearer())
            assert reply.status == 200 and f"{size:,}" in await reply.text()
            costs.append((calls.trips, calls.commands, time.perf_counter() - started))
            monkeypatch.undo()
    (few_trips, few_commands, _), (trips, commands, _) = costs
    assert trips == few_trips <= 12 and commands == few_commands <= 30, costs
    print(f"\nlive update (trips, commands, seconds): {costs}")


async def test_the_sites_of_a_fleet_of_several_cost_the_live_update_one_call(
    real_redis, redis_server, monkeypatch
) -> None:
    """Their requests in flight and answers come from what the page reads already: only
    their health hash is added."""
    from tests.test_top import SITES, seed_two_sites

    costs = []
    for sites in ("", SITES):
        app = make_app(settings(sites=sites), open_without_keys=False, redis=real_redis)
        async with TestClient(TestServer(app)) as test_client:
            await real_redis.flushdb()
            await seed_two_sites(real_redis)
            calls = Calls(monkeypatch)
            reply = await test_client.get("/live/fleet", headers=bearer())
            html = await reply.text()
            assert reply.status == 200 and ("<h2>Sites</h2>" in html) == bool(sites)
            costs.append((calls.trips, calls.commands))
            monkeypatch.undo()
    (one_trips, one_commands), (trips, commands) = costs
    assert (trips, commands) == (one_trips + 1, one_commands + 1), costs


async def test_a_key_sees_its_projects_batches_only(fake_redis) -> None:
    from producer.http import records

    await enqueue(fake_redis, "b_cli", ["a"])  # the CLI's: project default
    await enqueue(fake_redis, "batch_teamb", ["b"])
    await records.save_extras(fake_redis, "batch_teamb", {"kind": "batch", "project": "team-b"},
                              3600)  # fmt: skip
    await records.register(fake_redis, "team-b", "batch_teamb")
    keys_ = f"team-a:{KEY_A},team-b:{KEY_B},{KEY_PLAIN}"
    app = make_app(settings(api_keys=keys_), open_without_keys=False, redis=fake_redis)
    async with TestClient(TestServer(app)) as test_client:
        as_b = await (await test_client.get("/batches", headers=bearer(KEY_B))).text()
        assert "batch_teamb" in as_b and "b_cli" not in as_b
        as_a = await (await test_client.get("/batches", headers=bearer(KEY_A))).text()
        assert "batch_teamb" not in as_a and "b_cli" not in as_a
        plain = await (await test_client.get("/batches", headers=bearer(KEY_PLAIN))).text()
        assert "b_cli" in plain and "batch_teamb" not in plain
        other = await test_client.get("/batches/batch_teamb", headers=bearer(KEY_A))
        assert other.status == 404
        refused = await test_client.post("/batches/batch_teamb/cancel", headers=bearer(KEY_A))
        assert refused.status == 404
        assert await fake_redis.hget(keys.batch_meta("batch_teamb"), "state") == b"in_progress"
        form = await test_client.get("/sign-in")
        reply = await test_client.post("/sign-in", allow_redirects=False, data={
            "key": KEY_B, "csrf": csrf_of(await form.text()), "next": "/batches"})  # fmt: skip
        assert reply.status == 303
        assert "batch_teamb" in await (await test_client.get("/batches")).text()
