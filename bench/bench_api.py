"""``chatgptes serve`` under load: a batch end to end through the API, and big uploads.

    .venv/bin/python bench/bench_api.py [--scenarios batch,uploads] [--prompts 500]
        [--runs 5] [--upload-mb 51] [--uploads 4]

- ``batch``: 2 workers, no rate cap, the simulator at 40 ms; a batch of ``--prompts``
  prompts run as OpenAI Batch API code runs it (upload, create, poll every 0.1 s,
  download the output and error files, ``producer.http.client.run_batch_via_api``),
  ``--runs`` times: the wall time of each, from the upload to the last byte of the
  results, and its median.
- ``uploads``: ``--uploads`` uploads of a ``--upload-mb`` MB batch file sent to one
  ``chatgptes serve`` at once; the server's peak resident memory (VmHWM) and what it
  still holds after (VmRSS), and how long the uploads took; then a batch made from
  each of them, at once (no worker runs them), and the server's peak after that.

Works on the code on ``PYTHONPATH`` (old or new), like the other scripts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
from harness import emit, peak_rss_mib
from service import flush, worker_env, workers

from producer.http.client import answers_health, run_batch_via_api
from simulator.local import free_port, redis_server, running, simulator_process, wait_until

KEY = "sk-bench-key-0123456789"


def batch_file(count: int, tag: str, pad: int = 0) -> bytes:
    """``count`` OpenAI batch lines, each prompt distinct (and ``pad`` characters longer)."""
    filler = " lorem" * (pad // 6)
    return "".join(
        json.dumps({"custom_id": f"{tag}-{n}", "method": "POST", "url": "/v1/chat/completions",
                    "body": {"model": "gpt-4o-mini", "messages": [
                        {"role": "user", "content": f"{tag} prompt {n}{filler}"}]}}) + "\n"
        for n in range(count)
    ).encode()  # fmt: skip


@contextmanager
def api_server(env: dict[str, str], logs: Path) -> Iterator[tuple[str, int]]:
    """(base URL, pid) of a ``chatgptes serve`` on a free port, stopped on the way out."""
    port = free_port()
    argv = [sys.executable, "-P", "-m", "chatgptes", "serve", "--host", "127.0.0.1",
            "--port", str(port)]  # fmt: skip
    base_url = f"http://127.0.0.1:{port}/v1"
    log = logs / f"serve-{time.monotonic_ns()}.log"
    with running(argv, log=log, env={**env, "CHATGPTES_API_KEYS": KEY}) as process:

        def up() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"chatgptes serve exited; see {log}")
            return answers_health(base_url)

        wait_until(up, timeout=30, what="chatgptes serve to answer")
        yield base_url, process.pid


def batch(ctx: dict[str, Any], prompts: int, runs: int) -> dict[str, Any]:
    with simulator_process(ctx["tmp"], "--latency", "fixed:40", "--rate-per-second", "0") as (
        sim,
        _,
    ):
        flush(ctx["url"])
        env = worker_env(ctx["url"], sim["url"], proxy_rate_per_second=0, proxy_max_inflight=64)
        with workers(2, env, ctx["tmp"]), api_server(env, ctx["tmp"]) as (base_url, _):
            asyncio.run(run_batch_via_api(base_url, KEY, batch_file(20, "warm"), 60))
            seconds = []
            for run in range(runs):
                data = batch_file(prompts, f"run{run}")
                start = time.perf_counter()
                lines = asyncio.run(run_batch_via_api(base_url, KEY, data, 120, poll_seconds=0.1))
                seconds.append(time.perf_counter() - start)
                ok = sum(1 for line in lines if line.get("error") is None
                         and line["response"]["status_code"] == 200)  # fmt: skip
                if ok != prompts:
                    raise RuntimeError(f"run {run}: {ok} of {prompts} prompts succeeded")
    return {"prompts": prompts, "workers": 2, "runs_s": [round(s, 3) for s in seconds],
            "median_s": round(statistics.median(seconds), 3)}  # fmt: skip


async def _upload_all(base_url: str, data: bytes, count: int) -> tuple[list[int], list[str]]:
    """The uploads' statuses, and the IDs of the files stored (the old API stored none
    that failed its checks)."""

    async def one(session: aiohttp.ClientSession, n: int) -> tuple[int, str | None]:
        form = aiohttp.FormData()
        form.add_field("purpose", "batch")
        form.add_field("file", data, filename=f"big{n}.jsonl", content_type="application/jsonl")
        async with session.post(f"{base_url}/files", data=form) as reply:
            body = await reply.json(content_type=None)
            return reply.status, body.get("id")

    headers = {"Authorization": f"Bearer {KEY}"}
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
        done = await asyncio.gather(*(one(session, n) for n in range(count)))
    return [status for status, _ in done], [file_id for _, file_id in done if file_id]


async def _create_all(base_url: str, file_ids: list[str]) -> list[str]:
    """A batch made from each file at once; each batch's status."""

    async def one(session: aiohttp.ClientSession, file_id: str) -> str:
        body = {"input_file_id": file_id, "endpoint": "/v1/chat/completions",
                "completion_window": "24h"}  # fmt: skip
        async with session.post(f"{base_url}/batches", json=body) as reply:
            made = await reply.json(content_type=None)
            return str(made.get("status", made))

    headers = {"Authorization": f"Bearer {KEY}"}
    timeout = aiohttp.ClientTimeout(total=900)
    async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
        return list(await asyncio.gather(*(one(session, file_id) for file_id in file_ids)))


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def uploads(ctx: dict[str, Any], megabytes: int, count: int) -> dict[str, Any]:
    flush(ctx["url"])
    line_bytes = len(batch_file(1, "big"))
    data = batch_file(megabytes * 1_000_000 // line_bytes, "big")
    env = worker_env(ctx["url"], "http://127.0.0.1:9", max_input_bytes=64 * 1024 * 1024)
    with api_server(env, ctx["tmp"]) as (base_url, pid):
        before = peak_rss_mib(pid)
        start = time.perf_counter()
        statuses, file_ids = asyncio.run(_upload_all(base_url, data, count))
        seconds = time.perf_counter() - start
        peak, after = peak_rss_mib(pid), _rss_mib(pid)
        start = time.perf_counter()
        made = asyncio.run(_create_all(base_url, file_ids)) if file_ids else []
        create_seconds = time.perf_counter() - start
        create_peak = peak_rss_mib(pid)
    return {
        "uploads": count,
        "upload_bytes": len(data),
        "statuses": statuses,
        "seconds": round(seconds, 2),
        "serve_rss_at_start_mib": round(before, 1),
        "serve_peak_rss_mib": round(peak, 1),
        "serve_rss_after_mib": round(after, 1),
        "batches_made": made,
        "create_seconds": round(create_seconds, 2),
        "serve_peak_rss_after_creates_mib": round(create_peak, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", default="batch,uploads")
    parser.add_argument("--prompts", type=int, default=500)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--upload-mb", type=int, default=51)
    parser.add_argument("--uploads", type=int, default=4)
    args = parser.parse_args()
    figures: dict[str, Any] = {}
    with (
        tempfile.TemporaryDirectory(prefix="bench-api-") as tmp,
        redis_server(Path(tmp)) as (
            url,
            _,
        ),
    ):
        ctx = {"tmp": Path(tmp), "url": url}
        for scenario in args.scenarios.split(","):
            if scenario == "batch":
                figures["batch"] = batch(ctx, args.prompts, args.runs)
            elif scenario == "uploads":
                figures["uploads"] = uploads(ctx, args.upload_mb, args.uploads)
            else:
                raise SystemExit(f"unknown scenario {scenario!r}")
            print(scenario, json.dumps(figures[scenario]), flush=True)
    emit(figures)


if __name__ == "__main__":
    main()
