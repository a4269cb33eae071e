"""The web console in a real browser: Playwright drives Debian's Chromium (never a downloaded
browser) against ``chatgptes serve``, a worker and the simulator, all on 127.0.0.1.

It signs in, watches a running batch's progress move without a reload, cancels that batch
from its page, downloads a result file, sees a hostile custom_id as text, and the pages log
no console error (a CSP violation would be one). ``make test`` installs Chromium where it is
missing (``.ci/need-chromium``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from producer.http.client import answers_health
from simulator.local import free_port, running, wait_until
from tests.chaos import status, write_prompts

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
KEY = "sk-browser-key-0123456789"
HOSTILE = "<script>alert(1)</script>"


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


@pytest.fixture
def console(fleet, tmp_path: Path) -> Iterator[str]:
    """``chatgptes serve`` (with its console) beside a slow worker; its root URL."""
    fleet.start_simulator("--latency", "fixed:150")
    fleet.start_workers(1, proxy_rate_per_second=0, proxy_max_inflight=2, fleet_max_inflight=2)
    port = free_port()
    argv = [sys.executable, "-m", "chatgptes.serve", "--host", "127.0.0.1", "--port", str(port)]
    log = tmp_path / "serve.log"
    with running(argv, log=log, env=fleet.env(api_keys=KEY)) as process:

        def answers() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"chatgptes serve exited: {log.read_text()}")
            return answers_health(f"http://127.0.0.1:{port}/v1")

        wait_until(answers, timeout=30, what="chatgptes serve to answer")
        yield f"http://127.0.0.1:{port}"


def enqueue(fleet, path: Path, lines: list[dict]) -> str:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    enqueued = fleet.cli("enqueue", str(path), "--json")
    assert enqueued.returncode == 0, enqueued.stderr
    return json.loads(enqueued.stdout)["batch_id"]


def test_sign_in_watch_cancel_download_and_nothing_hostile_runs(
    browser, console: str, fleet, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    small = enqueue(fleet, tmp_path / "small.jsonl", [
        {"custom_id": HOSTILE, "messages": [{"role": "user", "content": "hello"}]},
        {"custom_id": "plain", "messages": [{"role": "user", "content": "<b>bold?</b>"}]},
    ])  # fmt: skip
    wait_until(lambda: status(fleet, small)["done"], timeout=60, what="the small batch done")
    slow = json.loads(fleet.cli("enqueue", write_prompts(tmp_path / "slow.jsonl", 400),
                                "--json").stdout)["batch_id"]  # fmt: skip

    page = browser.new_page(accept_downloads=True)
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on(
        "response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None
    )
    page.on("dialog", lambda dialog: (problems.append(f"a dialog: {dialog.message}"),
                                      dialog.dismiss()))  # fmt: skip

    # Signing in: any page sends a stranger to the form, and back after it.
    page.goto(f"{console}/batches/{slow}")
    expect(page).to_have_url(f"{console}/sign-in?next=/batches/{slow}")
    expect(page.locator("main")).not_to_contain_text(slow)
    page.fill("#key", KEY)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{console}/batches/{slow}")

    # The running batch moves while we look, without a reload.
    progress = page.locator(".progress-text")
    first = progress.inner_text()
    expect(progress).not_to_have_text(first, timeout=15_000)
    assert page.url == f"{console}/batches/{slow}"

    # Cancelled from its page.
    page.get_by_role("button", name="Cancel batch").click()
    expect(page.locator("#batch .batch-state")).to_have_text("cancelled", timeout=30_000)
    assert status(fleet, slow)["state"] == "cancelled"

    # The small batch: the hostile custom_id is text, and its output file downloads.
    page.goto(f"{console}/batches/{small}")
    cell = page.locator("td.custom-id").first
    expect(cell).to_have_text(HOSTILE)
    assert page.locator("td.custom-id script").count() == 0
    with page.expect_download() as downloading:
        page.get_by_role("link", name="Download output file").click()
    lines = Path(downloading.value.path()).read_text().splitlines()
    assert sorted(json.loads(line)["custom_id"] for line in lines) == sorted([HOSTILE, "plain"])
    assert downloading.value.suggested_filename == f"{small}_output.jsonl"

    # The fleet page draws its grid and refreshes itself.
    page.goto(f"{console}/")
    expect(page.locator("canvas.grid")).to_be_visible()
    with page.expect_response(lambda reply: "/live/fleet" in reply.url and reply.ok):
        pass
    page.goto(f"{console}/batches?state=cancelled")
    expect(page.locator("#batches")).to_contain_text(slow)
    assert problems == [], problems
