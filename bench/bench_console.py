"""The web console at fleet scale: 10,000 identities, 200 batches, a dozen workers.

Seeds a redis-server of its own (on a free port) the way workers and producers fill it:
every identity's attributes (some cooling, full, probing), the worker registry, 200
batches of 50 prompts (some finished), an hour of throughput and a few webhook events
pending at an endpoint that fails. Then serves the console in this process (aiohttp's test server on
127.0.0.1) and measures, server side:

- the fleet page (``GET /``) and the batch list (``GET /batches``), whole: render time;
- the fleet page's live update (``GET /live/fleet``, every 2 s in a browser): its time,
  and the Redis round trips and commands it costs (counted on the client);
- a batch's page.

    .venv/bin/python bench/bench_console.py [--identities 10000] [--batches 200] [--runs 20]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
from aiohttp.test_utils import TestClient, TestServer
from harness import emit
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from contract import keys
from contract.config import QueueSettings
from contract.models import JobError, JobResult, Message
from contract.outbox import announce_endpoints
from contract.throughput import INTERVAL_SECONDS, interval_of
from producer.api import BatchQueue
from producer.http.app import make_app
from producer.http.settings import ApiSettings
from producer.inputs import PromptLine
from simulator import local

QUEUE = "bench:console"
ATTRIBUTES = ("cap", "inflight", "penalty", "cooldown", "reason", "probe", "latency", "ok",
              "failed")  # fmt: skip


def seed_fleet(client: redis.Redis, identities: int, workers: int) -> None:
    now_ms = int(time.time() * 1000)
    names = [f"http://user-session-{n}:***@gw.example:7777" for n in range(identities)]
    columns: dict[str, dict[str, Any]] = {attribute: {} for attribute in ATTRIBUTES}
    for n, name in enumerate(names):
        columns["cap"][name] = 4
        columns["inflight"][name] = 4 if n % 50 == 1 else n % 3
        columns["latency"][name] = 300 + (n * 37) % 900
        columns["ok"][name], columns["failed"][name] = 100 + n % 50, n % 7
        if n % 40 == 0:  # 2.5% cooling
            columns["cooldown"][name] = now_ms + (n % 600) * 1000
            columns["reason"][name] = "RateLimited" if n % 80 else "Blocked"
            columns["penalty"][name] = 1.0 + (n % 9) / 10
        elif n % 97 == 3:
            columns["probe"][name] = 1
    with client.pipeline(transaction=False) as pipe:
        pipe.zadd(keys.identities_known(), {name: now_ms for name in names})
        for attribute, values in columns.items():
            if values:
                pipe.hset(keys.identity_field(attribute), mapping=values)
        for n in range(workers):
            worker_id = f"worker-host-{n // 4}:{100 + n}"
            pipe.zadd(keys.workers_seen(), {worker_id: now_ms})
            pipe.hset(keys.worker_info(worker_id), mapping={
                "host": f"worker-host-{n // 4}", "pid": 100 + n, "queue": QUEUE, "in_flight": 60,
                "waiting": 4, "chunks": 3, "prompts_held": 120, "succeeded": 9000 + n,
                "failed": 12, "last_seen": now_ms, "heartbeat_seconds": 1,
            })  # fmt: skip
        last = interval_of(time.time())
        for start in range(last - 3600 + INTERVAL_SECONDS, last + 1, INTERVAL_SECONDS):
            pipe.hset(keys.throughput(), mapping={f"{start}|succeeded": 9000 + start % 700,
                                                  f"{start}|failed": 40 + start % 13,
                                                  f"{start}|error:RateLimited": 30 + start % 9,
                                                  f"{start}|error:ContentRefused": 10})  # fmt: skip
        pipe.execute()


async def seed_batches(url: str, count: int) -> None:
    settings = QueueSettings(redis_url=url, queue_name=QUEUE)
    async with BatchQueue.connect(settings) as queue:
        # A fleet endpoint the workers deliver to, failing: every batch's end is an event.
        now_ms = int(time.time() * 1000)
        await announce_endpoints(queue.redis, "w0", [("k0", "", "https://hooks.example")], now_ms)
        await queue.redis.hset(keys.webhook_health(), mapping={
            "k0:failing_since": now_ms - 60_000, "k0:last_error": "HTTP 503"})  # fmt: skip
        for b in range(count):
            batch_id = f"b_{b:04d}"
            lines = [PromptLine(n + 1, f"{batch_id}-q{n}", (Message(role="user", content="hi"),),
                                "gpt-4o") for n in range(50)]  # fmt: skip
            await queue.enqueue(lines, batch_id=batch_id)
            settled = 50 if b % 3 else b % 50  # two thirds done, the rest under way
            created = await queue.store.created_at(batch_id)
            requests = await queue.store.requests(batch_id, list(range(settled)), created)
            results = [
                JobResult.for_request(r, status="succeeded", content="an answer")
                if r.index % 10 else
                JobResult.for_request(r, status="failed",
                                      error=JobError(type="RateLimited", message="429"))
                for r in requests
            ]  # fmt: skip
            await queue.store.ledger.save_results(results)


class Calls:
    """Round trips to Redis and the commands they carry, counted on the client."""

    def __init__(self) -> None:
        self.trips = self.commands = 0
        self._command, self._flush = Redis.execute_command, Pipeline.execute

    def __enter__(self) -> Calls:
        calls, command, flush = self, self._command, self._flush

        async def counted_command(client, *args, **options):  # type: ignore[no-untyped-def]
            calls.trips += 1
            calls.commands += 1
            return await command(client, *args, **options)

        async def counted_flush(pipe, *args, **options):  # type: ignore[no-untyped-def]
            calls.trips += 1
            calls.commands += len(pipe.command_stack)
            return await flush(pipe, *args, **options)

        Redis.execute_command, Pipeline.execute = counted_command, counted_flush  # type: ignore[method-assign]
        return self

    def __exit__(self, *_: object) -> None:
        Redis.execute_command, Pipeline.execute = self._command, self._flush  # type: ignore[method-assign]


async def timed(client: TestClient, path: str, runs: int) -> dict[str, float]:
    seconds, size = [], 0
    for _ in range(runs):
        started = time.perf_counter()
        reply = await client.get(path)
        body = await reply.read()
        seconds.append(time.perf_counter() - started)
        assert reply.status == 200, (path, reply.status)
        size = len(body)
    ordered = sorted(seconds)
    return {"p50_ms": round(statistics.median(ordered) * 1000, 1),
            "p90_ms": round(ordered[int(len(ordered) * 0.9) - 1] * 1000, 1),
            "bytes": size}  # fmt: skip


async def measure(url: str, runs: int) -> dict[str, Any]:
    client_redis = Redis.from_url(url)
    settings = ApiSettings(_env_file=None, redis_url=url, queue_name=QUEUE, api_keys="")
    app = make_app(settings, open_without_keys=True, redis=client_redis)
    figures: dict[str, Any] = {}
    async with TestClient(TestServer(app)) as client:
        await client.get("/")  # templates compiled, scripts loaded
        figures["fleet_page"] = await timed(client, "/", runs)
        figures["fleet_live"] = await timed(client, "/live/fleet", runs)
        figures["batch_list"] = await timed(client, "/batches", runs)
        figures["batch_page"] = await timed(client, "/batches/b_0001", runs)
        with Calls() as calls:
            await client.get("/live/fleet")
        figures["live_update_round_trips"] = calls.trips
        figures["live_update_commands"] = calls.commands
    await client_redis.aclose()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--identities", type=int, default=10_000)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--workers", type=int, default=12)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, local.redis_server(Path(tmp)) as (url, _):
        with redis.Redis.from_url(url) as client:
            seed_fleet(client, args.identities, args.workers)
        asyncio.run(seed_batches(url, args.batches))
        figures = asyncio.run(measure(url, args.runs))
    figures.update(identities=args.identities, batches=args.batches, workers=args.workers)
    print(f"{args.identities:,} identities, {args.batches} batches, {args.workers} workers; "
          f"{args.runs} requests each, server side (aiohttp in this process):")  # fmt: skip
    for name in ("fleet_page", "fleet_live", "batch_list", "batch_page"):
        shown = figures[name]
        print(f"  {name:<11} p50 {shown['p50_ms']:>7.1f} ms  p90 {shown['p90_ms']:>7.1f} ms  "
              f"{shown['bytes']:>9,} bytes")  # fmt: skip
    print(f"  the live update: {figures['live_update_round_trips']} round trips to Redis, "
          f"{figures['live_update_commands']} commands")  # fmt: skip
    emit(figures)


if __name__ == "__main__":
    main()
