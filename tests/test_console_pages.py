"""What the console's pages say, and what its actions do, on fakeredis with aiohttp's test
client: honest progress and pace, every prompt findable, safe actions, a verdict first,
a fuller batch list, and no zeros first (the browser run is ``test_console_browser.py``)."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from aiohttp.test_utils import TestClient, TestServer

from contract import keys
from contract.models import BatchStatus
from producer.http.app import make_app
from producer.http.console.charts import progress_bar
from producer.http.console.pace_book import PaceBook
from producer.pace import eta_seconds, rate_between, rate_over
from tests.test_console import HOSTILE, bearer, custom_ids, enqueue, settings, settle
from tests.test_top import SITES, enqueue_answered, seed_two_sites

FORM = {"csrf": ""}  # a Bearer script sends no form token


@pytest.fixture
async def client(fake_redis) -> AsyncIterator[TestClient]:
    app = make_app(settings(), open_without_keys=False, redis=fake_redis)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def page(client: TestClient, path: str, status: int = 200) -> str:
    reply = await client.get(path, headers=bearer())
    html = await reply.text()
    assert reply.status == status, html[:2000]
    return html


async def a_batch_with_failures(fake_redis, batch_id: str = "b1"):
    queue = await enqueue(fake_redis, batch_id, ["ok", "slow", "flagged", "slow-2", "left"])
    await settle(queue, batch_id, 0, content="an answer " * 40)  # longer than any preview
    await settle(queue, batch_id, 1, error="UpstreamTimeout")
    await settle(queue, batch_id, 2, error="ContentRefused")
    await settle(queue, batch_id, 3, error="UpstreamTimeout")
    return queue


# -- 1. a crash: the refused retry -------------------------------------------------------


async def test_a_retry_of_an_expired_batch_is_a_readable_refusal(client, fake_redis) -> None:
    queue = await enqueue(fake_redis, "b1", ["a", "b"])
    await settle(queue, "b1", 0, error="UpstreamTimeout")
    await queue.store.stopper.expire("b1")
    html = await page(client, "/batches/b1")
    assert "/batches/b1/retry" not in html and "/batches/b1/cancel" not in html  # none offered
    for method in ("GET", "POST"):
        reply = await client.request(method, "/batches/b1/retry", headers=bearer(), data=FORM)
        text = await reply.text()
        assert reply.status == 409 and reply.content_type == "text/html", text
        assert "Retry refused" in text and "is expired" in text and '{"error"' not in text


# -- 3 and 4. pace and honest progress ------------------------------------------------------


def test_a_bar_shows_each_outcome_apart_and_an_empty_one_is_empty() -> None:
    expired_mostly = progress_bar(succeeded=20, failed=75, cancelled=5, expired=72, total=100)
    kinds = {s.kind: s.count for s in expired_mostly.segments}
    assert kinds == {"succeeded": 20, "failed": 3, "cancelled": 5, "expired": 72}
    assert sum(s.width for s in expired_mostly.segments) == pytest.approx(1000)
    assert expired_mostly.label == "20 succeeded, 3 failed, 5 cancelled, 72 expired of 100"
    empty = progress_bar(0, 0, 0, 0, 0)
    assert empty.segments == [] and empty.label == "no prompts"
    running = progress_bar(10, 0, 0, 0, 40)
    assert running.label == "10 succeeded, 30 not finished of 40"


def test_pace_is_tops_figure_over_the_last_minute() -> None:
    assert rate_between((0.0, 0), (10.0, 40)) == 4.0 and eta_seconds(28, 4.0) == 7.0
    readings = [(0.0, 0), (30.0, 10), (61.0, 100), (91.0, 160)]
    assert rate_over(readings, 60.0) == rate_between((61.0, 100), (91.0, 160)) == 2.0
    book = PaceBook()
    status = BatchStatus(batch_id="b", state="in_progress", total=100, queued=90, in_progress=0,
                         succeeded=10, failed=0, cancelled=0, done=False,
                         in_progress_at=datetime.now(UTC))  # fmt: skip
    first = book.read(status, now=time.time())
    assert first.over == "since it began" and first.elapsed is not None
    later = book.read(status.model_copy(update={"succeeded": 30}), now=time.time() + 10)
    assert later.rate == pytest.approx(2.0, rel=0.01) and later.over == "the last 10s"
    assert later.eta == pytest.approx(35, rel=0.01)


async def test_a_batch_page_shows_speed_elapsed_eta_and_backlog(client, fake_redis) -> None:
    await a_batch_with_failures(fake_redis)
    html = await page(client, "/batches/b1")
    assert re.search(r"<strong>[\d.,]+/s</strong>\s+since it began", html)
    assert "elapsed <strong>" in html and "backlog <strong>1</strong>" in html
    assert 'class="progress" viewBox' in html and 'aria-label="1 succeeded, 3 failed' in html
    again = await page(client, "/live/batches/b1")  # a second reading: a speed over a window
    assert re.search(r"over\s+the last \d+s", again)


# -- 5. failures findable -------------------------------------------------------------------


async def test_results_filter_by_status_error_type_and_custom_id(client, fake_redis) -> None:
    await a_batch_with_failures(fake_redis)
    everything = await page(client, "/batches/b1")
    assert custom_ids(everything) == ["ok", "slow", "flagged", "slow-2", "left"]
    assert 'href="/batches/b1?error=UpstreamTimeout#results"' in everything  # counts are links
    failed = await page(client, "/batches/b1?status=failed")
    assert custom_ids(failed) == ["slow", "flagged", "slow-2"] and "of 3 failed" in failed
    timeouts = await page(client, "/batches/b1?error=UpstreamTimeout")
    assert custom_ids(timeouts) == ["slow", "slow-2"]
    both = await page(client, "/batches/b1?error=UpstreamTimeout&q=2")
    assert custom_ids(both) == ["slow-2"]
    queued = await page(client, "/batches/b1?status=queued")
    assert custom_ids(queued) == ["left"]


async def test_a_prompts_page_shows_it_whole_with_its_attempts(client, fake_redis) -> None:
    queue = await a_batch_with_failures(fake_redis)
    created = await queue.store.created_at("b1")
    for n in range(7):  # more failed attempts than are kept
        await queue.store.ledger.spend("b1", 4, "RateLimited", created,
                                       identity=f"http://u-{n}:***@gw:1", message=f"429 #{n}")  # fmt: skip
    html = await page(client, "/batches/b1/prompts/0")
    assert ("an answer " * 40).strip() in html  # the whole answer, not a preview
    running = await page(client, "/batches/b1/prompts/4")
    assert "2 earlier failed attempts not kept" in running
    assert [int(n) for n in re.findall(r'data-label="#">(\d+)<', running)] == [3, 4, 5, 6, 7]
    assert "http://u-6:***@gw:1" in running and "429 #6" in running and "http://u-1:" not in running
    assert "<b>" not in running and "hi" in running  # its messages, escaped
    assert (await client.get("/batches/b1/prompts/99", headers=bearer())).status == 404


async def test_one_prompt_is_retried_or_cancelled_from_its_page(client, fake_redis) -> None:
    queue = await a_batch_with_failures(fake_redis)
    failed = await page(client, "/batches/b1/prompts/1")
    assert 'href="/batches/b1/prompts/1/retry"' in failed
    confirm = await page(client, "/batches/b1/prompts/1/retry")
    assert "Retry 1 prompt" in confirm
    done = await client.post("/batches/b1/prompts/1/retry", headers=bearer(), data=FORM,
                             allow_redirects=False)  # fmt: skip
    assert (done.status, done.headers["Location"]) == (303, "/batches/b1/prompts/1")
    assert await queue.store.prompt_state("b1", 1) == ("queued", 0)
    refused = await page(client, "/batches/b1/prompts/2")  # ContentRefused: never retried
    assert "/prompts/2/retry" not in refused and "a new try would fail the same way" in refused
    answer = await client.post("/batches/b1/prompts/2/retry", headers=bearer(), data=FORM)
    assert answer.status == 409 and "Retry refused" in await answer.text()
    queued = await page(client, "/batches/b1/prompts/4")
    assert 'href="/batches/b1/prompts/4/cancel"' in queued
    cancelled = await client.post("/batches/b1/prompts/4/cancel", headers=bearer(), data=FORM,
                                  allow_redirects=False)  # fmt: skip
    assert cancelled.status == 303
    assert (await queue.store.prompt_state("b1", 4))[0] == "cancelled"
    again = await client.post("/batches/b1/prompts/4/cancel", headers=bearer(), data=FORM)
    assert again.status == 409 and "Cancel refused" in await again.text()


# -- 7. safe actions --------------------------------------------------------------------------


async def test_cancel_asks_first_naming_the_count(client, fake_redis) -> None:
    await enqueue(fake_redis, "b1", [f"q{n}" for n in range(2000)])
    confirm = await page(client, "/batches/b1/cancel")
    assert "Cancel the 2,000 prompts of this batch not yet finished?" in confirm
    assert 'action="/batches/b1/cancel"' in confirm and "Cancel 2,000 prompts" in confirm
    assert await fake_redis.hget(keys.batch_meta("b1"), "state") == b"in_progress"  # asked only


async def test_retry_offers_only_what_may_mend_and_says_what_it_leaves_out(
    client, fake_redis
) -> None:
    queue = await a_batch_with_failures(fake_redis)
    await settle(queue, "b1", 4, content="fine")  # completed now
    html = await page(client, "/batches/b1")
    assert "Retry 2 failed prompts…" in html
    confirm = await page(client, "/batches/b1/retry")
    assert "Retry 2 failed prompts?" in confirm and "1 failed prompt is left out" in confirm
    assert "1 ContentRefused: the site refused the prompt&#39;s content" in confirm
    done = await client.post("/batches/b1/retry", headers=bearer(), data=FORM,
                             allow_redirects=False)  # fmt: skip
    assert done.status == 303
    assert [(await queue.store.prompt_state("b1", i))[0] for i in (1, 2, 3)] == [
        "queued", "failed", "queued"]  # fmt: skip


async def test_nothing_to_retry_offers_no_retry(client, fake_redis) -> None:
    queue = await enqueue(fake_redis, "b1", ["a", "b"])
    await settle(queue, "b1", 0, error="ContentRefused")
    await settle(queue, "b1", 1, content="x")
    html = await page(client, "/batches/b1")
    assert "/batches/b1/retry" not in html
    refused = await client.get("/batches/b1/retry", headers=bearer())
    assert refused.status == 409 and "Nothing to retry" in await refused.text()


# -- 8. a verdict first ------------------------------------------------------------------------


async def test_the_fleet_page_opens_with_a_verdict_and_the_backlog(client, fake_redis) -> None:
    await enqueue(fake_redis, "b1", ["a", "b", "c"])
    html = await page(client, "/")
    main = html[html.index("<main") :]
    first = re.search(r'<p class="verdict (\w+)"><strong>(\w+):</strong>([^<]*)', main)
    assert first is not None and main.index("verdict") < main.index("Backlog")
    assert (first[1], first[2]) == ("down", "Down") and "no worker has reported" in first[3]
    assert "3 prompts not finished in 1 running batch" in html
    assert 'id="identity-states"' in html and 'aria-describedby="identity-states"' in html


def test_a_verdict_names_each_trouble_with_its_next_retry() -> None:
    from contract.outbox import KnownEndpoint, OutboxState
    from contract.throughput import Interval
    from producer.fleet import IdentityHealth, WorkerInfo
    from producer.http.console.fleet_reads import Backlog, FleetView
    from producer.http.console.verdict import verdict

    now = time.time()
    worker = WorkerInfo("w1", "h", 1, "q", 0, 0, 0, 0, 0, 0, 0, 0.5, 1.0, False)
    dead = IdentityHealth("http://a:***@gw:1", 0, 4, 2.0, 540.0, "Blocked", False, 0, 0, 9)
    failing = KnownEndpoint("k", "", "https://hooks.example", 0, failing_since_ms=1,
                            last_error="HTTP 503", pending=2, next_ms=int((now + 40) * 1000))  # fmt: skip
    view = FleetView(
        at=now, states={"ready": 9, "full": 0, "probing": 0, "cooling": 1}, grid="r" * 9 + "c",
        in_flight=0, capacity=40, worst=[dead], dead=1, workers=[worker],
        throughput=[Interval(0, succeeded=5)] * 3,
        outbox=OutboxState(2, 0, 1, [], [], endpoints=[failing]), backlog=Backlog(0, 0, 0),
        refusing=None,
    )  # fmt: skip
    said = verdict(view)
    assert said.level == "degraded"
    assert "1 identity dead (no success lately); the first back in 9m 00s" in said.reasons
    assert "webhook endpoint https://hooks.example failing (HTTP 503), next try in 40s" in (
        said.reasons
    )
    healthy = verdict(view.__class__(**{**view.__dict__, "worst": [], "dead": 0,
                                        "outbox": OutboxState(0, 0, 1, [], [])}))  # fmt: skip
    assert healthy.level == "healthy" and healthy.line.startswith("Healthy: 1 worker alive")


# -- 9 and 10. the list, and no zeros first ---------------------------------------------------


async def test_the_list_says_what_its_filters_mean_and_pages_past_200(
    client, fake_redis, monkeypatch
) -> None:
    import producer.http.console.batch_reads as reads

    monkeypatch.setattr(reads, "LIST_PAGE", 3)
    now_ms = int(time.time() * 1000)
    for n in range(8):
        queue = await enqueue(fake_redis, f"b{n}", ["a"])
        await fake_redis.zadd(keys.batches_created(), {f"b{n}": now_ms + n})  # b7 the newest
        if n % 2:
            await settle(queue, f"b{n}", 0, error="UpstreamTimeout")  # completed, with a failure
    await queue.store.record_failed("b_refused", {"created_at": "2026-01-01T00:00:00+00:00",
                                                  "metadata": "{}"}, [])  # fmt: skip
    await fake_redis.zadd(keys.batches_created(), {"b_refused": now_ms - 1})
    failures = await page(client, "/batches?filter=has-failures")
    listed = re.findall(r'id="batch-[0-9a-f]+" href="/batches/([^"]+)"', failures)
    assert listed == ["b7", "b5", "b3"]  # completed batches that have failures
    older = re.search(r'href="(/batches\?after=b3&amp;filter=has-failures)"', failures)
    rest = await page(client, older[1].replace("&amp;", "&"))
    assert re.findall(r'id="batch-[0-9a-f]+" href="/batches/([^"]+)"', rest) == ["b1", "b_refused"]
    refused = await page(client, "/batches?filter=refused")
    assert re.findall(r'href="/batches/([^"?]+)"', refused).count("b_refused") == 1
    assert "b7" not in refused
    assert re.search(r"<time datetime=\"[^\"]+\">\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \w+</time>",
                     failures)  # times carry their zone  # fmt: skip
    assert "gpt-4o" in failures  # the model, read from a CLI batch's first prompt


async def test_a_refused_input_leads_with_its_problems_and_no_zeros(client, fake_redis) -> None:
    queue = await enqueue(fake_redis, "b0", ["x"])
    errors = [{"code": "invalid_json_line", "line": 2, "message": "not valid JSON",
               "param": None}]  # fmt: skip
    await queue.store.record_failed("b_bad", {"created_at": "2026-01-01T00:00:00+00:00",
                                              "metadata": "{}"}, errors)  # fmt: skip
    html = await page(client, "/batches/b_bad")
    live = html[html.index('id="batch"') :]
    assert live.index("Nothing of this batch ran") < live.index("not valid JSON")
    assert "By outcome" not in html and "0–-1" not in html and "Prompts</h2>" not in html


async def test_hostile_text_stays_text_on_every_new_page(client, fake_redis) -> None:
    queue = await enqueue(fake_redis, "b1", [HOSTILE])
    await settle(queue, "b1", 0, error="UpstreamTimeout")
    for path in ("/batches/b1/prompts/0", "/batches/b1/prompts/0/retry", "/batches/b1/retry",
                 "/batches/b1?q=%3Cscript%3E"):  # fmt: skip
        html = await page(client, path)
        assert HOSTILE not in html, path


def test_the_never_retried_errors_are_the_workers_permanent_ones() -> None:
    from producer.retries import NOT_RETRIED
    from worker import errors

    permanent = {c.__name__ for c in vars(errors).values()
                 if isinstance(c, type) and issubclass(c, errors.PermanentError)}  # fmt: skip
    assert permanent - {"PermanentError"} <= set(NOT_RETRIED)
    retryable = {c.__name__ for c in vars(errors).values()
                 if isinstance(c, type) and issubclass(c, errors.RetryableError)}  # fmt: skip
    assert not retryable & set(NOT_RETRIED)


# -- the sites of a fleet of several ---------------------------------------------------------


def site_rows(html: str) -> dict[str, str]:
    """The Sites table's rows: site → the row's text, tags stripped."""
    if "<h2>Sites</h2>" not in html:
        return {}
    table = html[html.index("<h2>Sites</h2>") :]
    table = table[: table.index("</table>")]
    rows = {}
    for row in re.findall(r"<tr><td.*?</tr>", table, re.S):
        cells = [" ".join(re.sub(r"<[^>]+>", " ", c).split())
                 for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]  # fmt: skip
        rows[cells[0]] = " | ".join(cells[1:])
    return rows


async def test_the_fleet_page_shows_each_site_when_there_are_several(client, fake_redis) -> None:
    await seed_two_sites(fake_redis)
    one_site = await page(client, "/")  # the sites' health is there, but not this fleet's
    assert "<h2>Throughput" in one_site and site_rows(one_site) == {}
    assert "site uk" not in one_site
    app = make_app(settings(sites=SITES), open_without_keys=False, redis=fake_redis)
    async with TestClient(TestServer(app)) as two_sites:
        for path in ("/", "/live/fleet"):
            html = await page(two_sites, path)
            rows = site_rows(html)
            assert rows["es"] == "up | 12 | 5", path
            assert re.fullmatch(r"down for (39|40)s more after UpstreamHiccup \| 3 \| 0",
                                rows["uk"]), rows  # fmt: skip
            assert re.search(r"site uk down for (39|40)s more after UpstreamHiccup \(its "
                             r"unpinned prompts go to the other sites\)", html), path  # fmt: skip
    await fake_redis.hset(keys.site_health(), "uk:down_until", 1)  # its rest is over
    app = make_app(settings(sites=SITES), open_without_keys=False, redis=fake_redis)
    async with TestClient(TestServer(app)) as two_sites:
        html = await page(two_sites, "/live/fleet")
        assert site_rows(html)["uk"] == ("coming back one request at a time (down after "
                                         "UpstreamHiccup) | 3 | 0")  # fmt: skip
        assert "site uk" not in html  # coming back: not a trouble of the verdict's


def test_every_site_down_is_a_down_fleet() -> None:
    from contract.outbox import OutboxState
    from producer.fleet import WorkerInfo
    from producer.http.console.fleet_reads import Backlog, FleetView
    from producer.http.console.verdict import verdict
    from producer.site_health import SiteHealth

    worker = WorkerInfo("w1", "h", 1, "q", 0, 0, 0, 0, 0, 0, 0, 0.5, 1.0, False)
    es = SiteHealth("es", "down", reason="Blocked", down_for=40.0)
    uk = SiteHealth("uk", "down", reason="UpstreamHiccup", down_for=300.0)
    view = FleetView(
        at=time.time(), states={"ready": 2, "full": 0, "probing": 0, "cooling": 0}, grid="rr",
        in_flight=0, capacity=8, worst=[], dead=0, workers=[worker], throughput=[],
        outbox=OutboxState(0, 0, 0, [], []), backlog=Backlog(0, 0, 0), refusing=None,
        sites=[es, uk],
    )  # fmt: skip
    said = verdict(view)
    assert (said.level, said.reasons) == ("down", ["every site is down; the first back in 40s"])


async def test_a_batch_page_says_how_many_prompts_each_site_answered(client, fake_redis) -> None:
    from contract.config import QueueSettings
    from producer.api import BatchQueue
    from tests.test_console import QUEUE

    queue = BatchQueue(fake_redis, QueueSettings(redis_url="redis://unused", queue_name=QUEUE))
    await enqueue_answered(queue, "b_both", {"es": 3, "uk": 2})
    html = await page(client, "/batches/b_both")
    answered = html[html.index("<caption>Answered by site</caption>") :]
    answered = answered[: answered.index("</table>")]
    assert re.findall(r'<th scope="row">(\w+)</th><td class="num">(\d+)</td>', answered) == [
        ("es", "3"), ("uk", "2")]  # fmt: skip
    await enqueue(fake_redis, "b_none", ["a"])
    await settle(queue, "b_none", 0, content="answered where no site is named")
    assert "Answered by site" not in await page(client, "/batches/b_none")
