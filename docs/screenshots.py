"""The README's pictures, from a real run: docs/console.png, console-batch.png,
console-phone.png, console-prompt-phone.png and top.svg.

Everything runs here, on 127.0.0.1, and is stopped on the way out: a redis-server of its
own, the simulator behind a rotating gateway of 300 identities (a few 429s, so some
identities cool), two workers that deliver webhooks to a receiver in this process,
``chatgptes serve`` with one key, and three batches enqueued with the CLI. After a few
minutes of work, Playwright (Debian's /usr/bin/chromium) signs in to the console and
takes the fleet page and the big batch's page at 1440 px, the big batch's page and the
page of one of its refused prompts at 390 px (a phone), and ``chatgptes top``'s frame is
read and rendered to SVG, as ``top --once`` prints it.

    .venv/bin/python docs/screenshots.py [--minutes 3]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from rich.console import Console

from chatgptes.top import read_snapshot, render
from contract.config import QueueSettings
from producer.api import BatchQueue
from producer.http.client import answers_health
from simulator import local
from simulator.proxies import gateway_proxy_urls

DOCS = Path(__file__).resolve().parent
KEY = "sk-demo-key-0123456789"
QUEUE = "demo:screenshots"
SECRET = "whsec_" + base64.b64encode(b"screenshots' webhook signing key").decode()
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
TOPICS = ("Redis", "a job queue", "backoff with jitter", "a proxy pool", "Lua scripts",
          "webhooks", "HMAC signatures", "a token bucket")  # fmt: skip


@contextmanager
def receiver() -> Iterator[str]:
    """A webhook receiver that takes everything (the deliveries' checks are the tests')."""

    class Taken(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Taken)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hooks"
    finally:
        server.shutdown()
        server.server_close()


def prompts(path: Path, count: int, *, tag: str, refused_every: int = 0) -> str:
    lines = []
    for n in range(count):
        text = f"In one sentence, what is {TOPICS[n % len(TOPICS)]}? ({tag} {n})"
        if refused_every and n % refused_every == 0:
            text += " forbiddenword"  # the simulator refuses it: ContentRefused
        lines.append(
            {"custom_id": f"{tag}-{n:05d}", "messages": [{"role": "user", "content": text}]}
        )
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return str(path)


def cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "chatgptes.cli", *args], env=env, check=True,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    return done.stdout.strip()


def take_console(base: str, batch_id: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                             args=CHROMIUM_ARGS)  # fmt: skip
        try:
            for width, height in ((1440, 900), (390, 844)):
                page = browser.new_page(viewport={"width": width, "height": height})
                page.goto(f"{base}/sign-in")
                page.fill("#key", KEY)
                page.get_by_role("button", name="Sign in").click()
                expect(page.locator("canvas.grid")).to_be_visible()
                with page.expect_response(lambda reply: "/live/fleet" in reply.url):
                    pass
                if width == 1440:
                    page.screenshot(path=str(DOCS / "console.png"), full_page=True)
                page.goto(f"{base}/batches/{batch_id}")
                with page.expect_response(lambda reply: "/live/batches/" in reply.url):
                    pass  # a second reading: the speed over a window, not since it began
                name = "console-batch.png" if width == 1440 else "console-phone.png"
                page.screenshot(path=str(DOCS / name))  # its top: progress, pace, counts
                if width == 390:
                    page.goto(f"{base}/batches/{batch_id}/prompts/0")  # refused: ContentRefused
                    page.screenshot(path=str(DOCS / "console-prompt-phone.png"), full_page=True)
                page.close()
        finally:
            browser.close()


def take_top(redis_url: str) -> None:
    async def frames() -> list:
        settings = QueueSettings(redis_url=redis_url, queue_name=QUEUE)
        async with BatchQueue.connect(settings) as queue:
            first = await read_snapshot(queue, limit=8)
            await asyncio.sleep(2.0)
            return [first, await read_snapshot(queue, limit=8)]

    console = Console(record=True, width=120, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(render(asyncio.run(frames())))
    (DOCS / "top.svg").write_text(console.export_svg(title="chatgptes top --once"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=3.0, help="how long the fleet works")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        work = Path(tmp)
        redis_url, _ = stack.enter_context(local.redis_server(work))
        sim, _ = stack.enter_context(local.simulator_process(
            work, "--gateway", "--rate-per-second", "3", "--fault-429-rate", "0.03",
            "--fault-5xx-rate", "0.01", "--latency", "uniform:60,240",
        ))  # fmt: skip
        proxies = work / "proxies.txt"
        proxies.write_text("\n".join(gateway_proxy_urls(sim["gateway"], sim["gateway_password"],
                                                         300)) + "\n")  # fmt: skip
        hook = stack.enter_context(receiver())
        env = {**os.environ, "CHATGPTES_REDIS_URL": redis_url, "CHATGPTES_QUEUE_NAME": QUEUE,
               "CHATGPTES_LOG_FORMAT": "json"}  # fmt: skip
        worker_env = {
            **env,
            "CHATGPTES_UPSTREAM_URL": sim["url"],
            "CHATGPTES_PROXIES_FILE": str(proxies),
            "CHATGPTES_PROXY_RATE_PER_SECOND": "0.4",
            "CHATGPTES_FLEET_MAX_INFLIGHT": "48",
            "CHATGPTES_LANGUAGE_INSTRUCTION": "",
            "CHATGPTES_HEARTBEAT_SECONDS": "1",
            "CHATGPTES_WEBHOOK_URLS": hook,
            "CHATGPTES_WEBHOOK_SECRET": SECRET,
        }
        worker = [sys.executable, "-m", "chatgptes.cli", "worker"]
        for n in range(2):
            stack.enter_context(local.running(worker, log=work / f"worker{n}.log", env=worker_env))
        port = local.free_port()
        stack.enter_context(local.running(
            [sys.executable, "-m", "chatgptes.serve", "--host", "127.0.0.1", "--port", str(port)],
            log=work / "serve.log", env={**env, "CHATGPTES_API_KEYS": KEY},
        ))  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        local.wait_until(lambda: answers_health(f"{base}/v1"), timeout=30, what="serve")
        cli(env, "enqueue", prompts(work / "small.jsonl", 40, tag="intro"), "--batch-id",
            "b_intro_questions")  # fmt: skip
        big = cli(env, "enqueue", prompts(work / "big.jsonl", 30_000, tag="faq", refused_every=250),
                  "--batch-id", "b_faq_nightly", "--metadata", "team=support")  # fmt: skip
        cli(env, "enqueue", prompts(work / "late.jsonl", 300, tag="late"), "--batch-id",
            "b_late_retry")  # fmt: skip
        print(f"the fleet works for {args.minutes:g} minutes ({big}: 30,000 prompts)")
        time.sleep(args.minutes * 60)
        take_console(base, big)
        take_top(redis_url)
    print(f"wrote the console's pictures and {DOCS / 'top.svg'}")


if __name__ == "__main__":
    main()
