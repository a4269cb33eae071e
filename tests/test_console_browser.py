"""The web console in a real browser: Playwright drives Debian's Chromium (never a downloaded
browser) against ``chatgptes serve``, a worker and the simulator, all on 127.0.0.1.

Every page, at 1440 px and at 390 px (a phone): nothing scrolls sideways, and axe-core finds
no accessibility violation. A live update keeps keyboard focus where it was. Cancelling
asks first, naming the count. A failed prompt's page shows its error and attempts, a retry
the server refuses is a readable page, a hostile custom_id stays text, a result file
downloads, and the pages log no console error (a CSP violation would be one). ``make
test`` installs Chromium where it is missing (``.ci/need-chromium``).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from contract import keys
from contract.config import QueueSettings
from contract.models import JobError, JobResult, Message
from producer.api import BatchQueue
from producer.http.client import answers_health
from producer.inputs import PromptLine
from simulator.local import free_port, running, wait_until
from tests.chaos import status, write_prompts

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
KEY = "sk-browser-key-0123456789"
HOSTILE = "<script>alert(1)</script>"
WIDTHS = ((1440, 900), (390, 844))
IDENTITY = "http://user-session-7:***@gw.example:7777"


@dataclass(frozen=True)
class Console:
    url: str
    running: str  # a batch a slow worker is working through
    done: str  # a completed batch with failures of both kinds
    expired: str
    refused: str  # its input refused


@pytest.fixture
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium: `make test` installs Debian's (.ci/need-chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


async def _settled_batches(fleet) -> None:
    """A completed batch (hostile custom_id, answers, two kinds of failure, a logged failed
    attempt), an expired one and one whose input was refused, written as the fleet would."""
    settings = QueueSettings(redis_url=fleet.redis_url, queue_name=fleet.queue_name)
    async with BatchQueue.connect(settings) as queue:
        ids = [HOSTILE, "plain", "slow-1", "slow-2", "flagged"]
        lines = [PromptLine(n + 1, cid, (Message(role="user", content=f"<b>q{n}</b>"),), "gpt-4o")
                 for n, cid in enumerate(ids)]  # fmt: skip
        await queue.enqueue(lines, batch_id="b_done", metadata={"team": "support"})
        created = await queue.store.created_at("b_done")
        requests = await queue.store.requests("b_done", range(5), created)
        await queue.store.ledger.spend("b_done", 2, "RateLimited", created, identity=IDENTITY,
                                       message="HTTP 429")  # fmt: skip
        timeout = JobError(type="UpstreamTimeout", message="no answer within 60 s")
        refused = JobError(type="ContentRefused", message="the message was flagged")
        await queue.store.ledger.save_results([
            JobResult.for_request(requests[0], status="succeeded", content="<img src=x>",
                                  site="es"),
            JobResult.for_request(requests[1], status="succeeded", content="a plain answer",
                                  site="uk"),
            JobResult.for_request(requests[2], status="failed", error=timeout, attempts=1),
            JobResult.for_request(requests[3], status="failed", error=timeout, attempts=1),
            JobResult.for_request(requests[4], status="failed", error=refused, attempts=1),
        ])  # fmt: skip
        await queue.enqueue(lines[:2], batch_id="b_expired")
        await queue.store.stopper.expire("b_expired")
        await queue.store.record_failed("batch_refused", {
            "created_at": "2026-12-01T10:00:00+00:00", "completion_window": "24h",
            "metadata": "{}"}, [{"code": "invalid_json_line", "line": 3,
                                 "message": "not valid JSON", "param": None}])  # fmt: skip
        # The console is told of two sites (``console``): one of them down, as the lease
        # scripts would leave it, for the fleet page's Sites table.
        seconds, _ = await queue.redis.time()
        await queue.redis.hset(keys.site_health(), mapping={
            "uk:down_until": (int(seconds) + 600) * 1000, "uk:reason": "UpstreamHiccup",
            "uk:probe": 1})  # fmt: skip


@pytest.fixture
def console(fleet, tmp_path: Path) -> Iterator[Console]:
    """``chatgptes serve`` beside a slow worker, with batches in every state."""
    fleet.start_simulator("--latency", "fixed:150")
    fleet.start_workers(1, proxy_rate_per_second=0, proxy_max_inflight=2, fleet_max_inflight=2)
    # In a thread: Playwright's sync API may hold this one's event loop already.
    with ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, _settled_batches(fleet)).result()
    running_batch = json.loads(fleet.cli("enqueue", write_prompts(tmp_path / "slow.jsonl", 400),
                                         "--json").stdout)["batch_id"]  # fmt: skip
    port = free_port()
    argv = [sys.executable, "-m", "chatgptes.serve", "--host", "127.0.0.1", "--port", str(port)]
    log = tmp_path / "serve.log"
    sites = f"es={fleet.sim['url']},uk=http://127.0.0.1:9"  # uk: never reached, only shown
    with running(argv, log=log, env=fleet.env(api_keys=KEY, sites=sites)) as process:

        def answers() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"chatgptes serve exited: {log.read_text()}")
            return answers_health(f"http://127.0.0.1:{port}/v1")

        wait_until(answers, timeout=30, what="chatgptes serve to answer")
        yield Console(f"http://127.0.0.1:{port}", running_batch, "b_done", "b_expired",
                      "batch_refused")  # fmt: skip


def signed_in_page(browser, console: Console, width: int, height: int, problems: list[str]):
    page = browser.new_page(viewport={"width": width, "height": height}, accept_downloads=True)
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("dialog", lambda dialog: (problems.append(f"a dialog: {dialog.message}"),
                                      dialog.dismiss()))  # fmt: skip
    page.goto(f"{console.url}/sign-in")
    page.fill("#key", KEY)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{console.url}/")
    return page


def assert_fits_and_is_accessible(page, where: str) -> None:
    from axe_playwright_python.sync_playwright import Axe

    overflow = page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"{where} scrolls sideways by {overflow} px"
    found = Axe().run(page)
    details = [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in found.response["violations"]
    ]
    assert found.violations_count == 0, f"{where}: {details}"


def test_every_page_fits_a_phone_and_a_desktop_and_passes_axe(browser, console: Console) -> None:
    """Each page at both widths; then a failed prompt's page, found from its error type,
    and a retry the server refuses, as a page."""
    pages = {
        "fleet": "/",
        "batches": "/batches",
        "batches with failures": "/batches?filter=has-failures",
        "a running batch": f"/batches/{console.running}",
        "a batch's failures": f"/batches/{console.done}?status=failed",
        "an expired batch": f"/batches/{console.expired}",
        "a refused input": f"/batches/{console.refused}",
        "a failed prompt": f"/batches/{console.done}/prompts/2",
        "a succeeded prompt": f"/batches/{console.done}/prompts/0",
        "the retry confirmation": f"/batches/{console.done}/retry",
        "the cancel confirmation": f"/batches/{console.running}/cancel",
        "a refused retry": f"/batches/{console.expired}/retry",
        "no such batch": "/batches/nope",
    }
    problems: list[str] = []
    for width, height in WIDTHS:
        page = signed_in_page(browser, console, width, height, problems)
        for name, path in pages.items():
            page.goto(console.url + path)
            page.wait_for_load_state("networkidle")
            shows = {"fleet": "Sites", "a batch's failures": "Answered by site"}.get(name)
            if shows:  # what a fleet of several sites adds is checked too
                assert page.get_by_text(shows, exact=True).first.is_visible(), name
            assert_fits_and_is_accessible(page, f"{name} at {width} px")
        page.context.clear_cookies()
        page.goto(f"{console.url}/sign-in")
        assert_fits_and_is_accessible(page, f"the sign-in form at {width} px")
        page.close()
    a_failed_prompt_is_found_from_its_error_type_and_shown_whole(
        signed_in_page(browser, console, 1440, 900, problems), console
    )
    a_refused_retry_is_a_readable_page_never_raw_json(
        signed_in_page(browser, console, 390, 844, problems), console
    )
    # A refused action answers 409 and an unknown batch 404, on purpose; nothing else errs.
    assert [p for p in problems if "409" not in p and "404" not in p] == [], problems


def a_live_update_keeps_focus_and_says_what_changed(page, console: Console) -> None:
    page.goto(f"{console.url}/batches/{console.running}")
    progress = page.locator(".progress-text")
    first = progress.inner_text()
    page.locator("#cancel-batch").focus()
    with page.expect_response(lambda r: "/live/batches/" in r.url and r.ok):
        pass
    page.wait_for_timeout(100)  # the swap settles
    assert page.evaluate("document.activeElement.id") == "cancel-batch"
    page.keyboard.press("Shift+Tab")  # the next Tab goes on from there, not from the logo
    assert page.evaluate("document.activeElement.id") != ""
    from playwright.sync_api import expect

    expect(progress).not_to_have_text(first, timeout=15_000)  # it moves without a reload
    page.goto(f"{console.url}/batches")
    link = page.locator(f"#batches a:text-is('{console.running}')")
    link.focus()
    focused = page.evaluate("document.activeElement.id")
    with page.expect_response(lambda r: "/live/batches" in r.url and r.ok):
        pass
    page.wait_for_timeout(100)
    assert focused and page.evaluate("document.activeElement.id") == focused
    assert page.locator("#announcer").get_attribute("aria-live") == "polite"


def cancel_asks_first_naming_the_count(page, console: Console, fleet) -> None:
    from playwright.sync_api import expect

    page.goto(f"{console.url}/batches/{console.running}")
    page.locator("#cancel-batch").click()
    expect(page).to_have_url(f"{console.url}/batches/{console.running}/cancel")
    question = page.locator(".question").inner_text()
    assert (
        question.startswith("Cancel the ") and "prompts of this batch not yet finished" in question
    )
    assert status(fleet, console.running)["state"] == "in_progress"  # not yet
    page.get_by_role("button", name="Cancel ").click()
    expect(page).to_have_url(f"{console.url}/batches/{console.running}")
    expect(page.locator("#batch .batch-state")).to_have_text("cancelled", timeout=30_000)


def a_failed_prompt_is_found_from_its_error_type_and_shown_whole(page, console: Console) -> None:
    from playwright.sync_api import expect

    page.goto(f"{console.url}/batches/{console.done}")
    expect(page.locator("td.custom-id").first).to_have_text(HOSTILE)  # text, never markup
    assert page.locator("td.custom-id script, td.preview img").count() == 0
    page.locator("#batch a.error-type", has_text="UpstreamTimeout").click()
    rows = page.locator("td.custom-id")
    expect(rows).to_have_count(2)
    rows.first.locator("a").click()
    expect(page.locator("h1")).to_contain_text("slow-1")
    expect(page.locator("pre.answer").first).to_have_text("no answer within 60 s")
    attempts = page.locator("table.attempts")
    expect(attempts).to_contain_text(IDENTITY)
    expect(attempts).to_contain_text("RateLimited")
    expect(page.get_by_role("link", name="Retry this prompt…")).to_be_visible()
    page.goto(f"{console.url}/batches/{console.done}/prompts/4")  # ContentRefused: for good
    expect(page.get_by_role("link", name="Retry this prompt…")).to_have_count(0)
    expect(page.locator("main")).to_contain_text("a new try would fail the same way")
    with page.expect_download() as downloading:
        page.goto(f"{console.url}/batches/{console.done}")
        page.get_by_role("link", name="Download output file").click()
    lines = Path(downloading.value.path()).read_text().splitlines()
    assert sorted(json.loads(line)["custom_id"] for line in lines) == sorted([HOSTILE, "plain"])


def a_refused_retry_is_a_readable_page_never_raw_json(page, console: Console) -> None:
    from playwright.sync_api import expect

    page.goto(f"{console.url}/batches/{console.expired}")
    assert page.get_by_role("link", name="Retry").count() == 0  # never offered
    # The form an old page would still hold, sent anyway: the server refuses, in words.
    token = page.locator("form.sign-out input[name=csrf]").get_attribute("value")
    page.evaluate(
        """([action, token]) => { const form = document.createElement("form");
        form.method = "post"; form.action = action; const field = document.createElement("input");
        field.name = "csrf"; field.value = token; form.append(field); document.body.append(form);
        form.submit(); }""",
        [f"/batches/{console.expired}/retry", token],
    )
    expect(page.locator("h1")).to_have_text("Retry refused")
    expect(page.locator("main")).to_contain_text("is expired")
    assert '{"error"' not in page.content()
    assert_fits_and_is_accessible(page, "the refusal page")


def test_live_updates_keep_focus_and_cancel_asks_first(browser, console: Console, fleet) -> None:
    problems: list[str] = []
    a_live_update_keeps_focus_and_says_what_changed(
        signed_in_page(browser, console, 1440, 900, problems), console
    )
    cancel_asks_first_naming_the_count(signed_in_page(browser, console, 390, 844, problems),
                                       console, fleet)  # fmt: skip
    assert problems == [], problems
