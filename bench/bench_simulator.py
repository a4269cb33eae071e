"""Requests/s the simulator (one process, one core) serves: the page, the ajax POST, via a proxy.

    .venv/bin/python bench/bench_simulator.py [--count 5000] [--concurrency 32]

The load comes from an aiohttp client in this process; the simulator's own CPU per
request (from /proc) gives its ceiling on one core, whatever the client costs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from harness import cpu_seconds, emit, http_json

from simulator.local import simulator_process
from worker.page import parse_page

AJAX_PATH = "/wp-admin/admin-ajax.php"
TIME_LIMIT = 60.0  # seconds per mode; a mode stops early rather than run past this


def ajax_form(nonce: str, post_id: str, url: str) -> dict[str, str]:
    prompt = "Why is the sky blue?"
    return {
        "_wpnonce": nonce, "post_id": post_id, "url": url,
        "action": "wpaicg_chat_shortcode_message", "message": prompt, "bot_id": "0",
        "chatbot_identity": "shortcode", "wpaicg_chat_client_id": "benchbench",
        "wpaicg_chat_history": json.dumps([f"Human: {prompt}"]), "wpaicg_user_agree": "1",
    }  # fmt: skip


async def one_request(http: aiohttp.ClientSession, spec: dict[str, Any]) -> bool:
    async with http.request(spec["method"], spec["url"], data=spec.get("data"),
                            proxy=spec.get("proxy")) as reply:  # fmt: skip
        body = await reply.read()
    return reply.status == 200 and (spec["method"] == "GET" or b'"success"' in body)


async def load(spec: dict[str, Any], count: int, concurrency: int) -> tuple[int, int, float]:
    """(requests sent, ok replies, wall seconds) of ``count`` requests, ``concurrency`` at once."""
    remaining, ok, sent = count, 0, 0
    deadline = time.monotonic() + TIME_LIMIT
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def client() -> None:
            nonlocal remaining, ok, sent
            while remaining > 0 and time.monotonic() < deadline:
                remaining -= 1
                sent += 1
                succeeded = await one_request(http, spec)
                ok += succeeded  # after the await: += would read ``ok`` before it

        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        return sent, ok, time.perf_counter() - start


async def specs(sim: dict[str, Any]) -> dict[str, dict[str, Any]]:
    page_url = sim["url"].rstrip("/") + "/"
    async with aiohttp.ClientSession() as http, http.get(page_url) as reply:
        tokens = parse_page(await reply.text())
    ajax = {"method": "POST", "url": sim["url"].rstrip("/") + AJAX_PATH,
            "data": ajax_form(tokens.nonce, tokens.post_id, page_url)}  # fmt: skip
    return {
        "page": {"method": "GET", "url": page_url},
        "ajax": ajax,
        "ajax_via_proxy": {**ajax, "proxy": sim["proxies"][0]},
    }


def measure(sim: dict[str, Any], pid: int, count: int, concurrency: int) -> dict[str, Any]:
    out = {}
    for mode, spec in asyncio.run(specs(sim)).items():
        cpu = cpu_seconds(pid)
        sent, ok, wall = asyncio.run(load(spec, count, concurrency))
        sim_cpu_ms = (cpu_seconds(pid) - cpu) / sent * 1000
        out[mode] = {
            "requests": sent,
            "ok": ok,
            "requests_per_s": round(sent / wall),
            "simulator_cpu_ms_per_request": round(sim_cpu_ms, 3),
            "one_core_ceiling_per_s": round(1000 / sim_cpu_ms) if sim_cpu_ms else None,
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=5_000, help="requests per mode")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight")
    args = parser.parse_args()
    if not 1 <= args.count <= 200_000 or not 1 <= args.concurrency <= 256:
        parser.error("need 1 <= --count <= 200,000 and 1 <= --concurrency <= 256")
    options = ("--latency", "fixed:0", "--proxies", "1", "--seed", "1")
    with (
        tempfile.TemporaryDirectory() as tmp,
        simulator_process(Path(tmp), *options) as (sim, process),
    ):
        modes = measure(sim, process.pid, args.count, args.concurrency)
        stats = http_json(sim["stats_url"])
    for mode, f in modes.items():
        print(f"{mode}: {f['requests_per_s']:,} req/s ({f['ok']}/{f['requests']} ok); simulator "
              f"CPU {f['simulator_cpu_ms_per_request']} ms/request -> one-core ceiling "
              f"{f['one_core_ceiling_per_s']}/s")  # fmt: skip
    print(f"simulator counted: {stats['requests']}, replies ok {stats['replies']['success']}")
    emit({"benchmark": "simulator", "count": args.count, "concurrency": args.concurrency,
          "modes": modes})  # fmt: skip


if __name__ == "__main__":
    main()
