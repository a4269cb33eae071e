"""How soon work starts, how a small batch fares behind a big one, what a worker weighs at 500.

    .venv/bin/python bench/bench_latency.py [--scenarios start,fairness,memory]
        [--samples 50] [--big 50000] [--small 50] [--inflight 500]

- ``start``: one idle worker; one-prompt batches enqueued one after another; for each,
  the time from the enqueue to the worker starting the prompt (the result's
  ``started_at`` minus ``enqueued_at``): p50 and p90.
- ``fairness``: one worker, 200 ms site, 100 in flight; a big batch is enqueued and
  running, then a small one: the time from the small batch's enqueue to its first
  result and to its last.
- ``memory``: one worker with 500 requests in flight (fleet and identity caps 500, a
  2 s site): its peak resident memory (VmHWM) and the in-flight count reached.

Works on the code on ``PYTHONPATH`` (old or new), like the other scripts.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import emit, http_json, peak_rss_mib
from service import QUEUE, flush, prompt_lines, run_batch, worker_env, workers

from contract.config import QueueSettings
from producer.api import BatchQueue
from simulator.local import redis_server, simulator_process, wait_until

SMALL_BATCH_LIMIT = 120.0  # seconds the small batch is given before it counts as starved


async def _start_delays(url: str, samples: int) -> list[float]:
    delays = []
    async with BatchQueue.connect(QueueSettings(redis_url=url, queue_name=QUEUE)) as queue:
        for n in range(samples):
            batch = await queue.enqueue(prompt_lines(1, f"start{n}"))
            deadline = time.monotonic() + 30
            while not (await queue.status(batch.batch_id)).done:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"one-prompt batch {n} not done in 30 s")
                await asyncio.sleep(0.005)
            [result] = await queue.results(batch.batch_id)
            delays.append((result.started_at - result.enqueued_at).total_seconds())
            await asyncio.sleep(0.2)  # the worker is idle again before the next one
    return delays


def start_latency(ctx: dict[str, Any], samples: int) -> dict[str, Any]:
    with simulator_process(ctx["tmp"], "--latency", "fixed:0") as (sim, _):
        flush(ctx["url"])
        env = worker_env(ctx["url"], sim["url"], proxy_rate_per_second=0)
        with workers(1, env, ctx["tmp"]):
            asyncio.run(_start_delays(ctx["url"], 3))  # warm: the session is made
            delays = asyncio.run(_start_delays(ctx["url"], samples))
    ms = sorted(d * 1000 for d in delays)
    return {"samples": samples, "p50_ms": round(statistics.median(ms), 1),
            "p90_ms": round(ms[int(len(ms) * 0.9) - 1], 1), "max_ms": round(ms[-1], 1)}  # fmt: skip


async def _small_behind_big(url: str, big: int, small: int) -> dict[str, float]:
    async with BatchQueue.connect(QueueSettings(redis_url=url, queue_name=QUEUE)) as queue:
        big_batch = await queue.enqueue(prompt_lines(big, "big"))
        deadline = time.monotonic() + 120
        while (await queue.status(big_batch.batch_id)).finished < 200:
            if time.monotonic() > deadline:
                raise TimeoutError("the big batch did not get going")
            await asyncio.sleep(0.05)
        start = time.perf_counter()
        small_batch = await queue.enqueue(prompt_lines(small, "small"))
        first = last = None
        while last is None:
            status = await queue.status(small_batch.batch_id)
            elapsed = time.perf_counter() - start
            if first is None and status.finished:
                first = elapsed
            if status.done:
                last = elapsed
            if elapsed > SMALL_BATCH_LIMIT:
                break  # reported as "not within the limit", not a crash
            await asyncio.sleep(0.02)
        big_done = (await queue.status(big_batch.batch_id)).finished
        await queue.cancel(big_batch.batch_id)

    def shown(seconds: float | None) -> float | str:
        return round(seconds, 3) if seconds is not None else f"> {SMALL_BATCH_LIMIT:.0f}"

    return {"first_result_s": shown(first), "all_results_s": shown(last),
            "big_finished_meanwhile": big_done}  # fmt: skip


def fairness(ctx: dict[str, Any], big: int, small: int) -> dict[str, Any]:
    settings = {"fleet_max_inflight": 100, "proxy_max_inflight": 100, "proxy_rate_per_second": 0,
                "max_jobs": 100}  # fmt: skip
    with simulator_process(ctx["tmp"], "--latency", "fixed:200") as (sim, _):
        flush(ctx["url"])
        with workers(1, worker_env(ctx["url"], sim["url"], **settings), ctx["tmp"]):
            figures = asyncio.run(_small_behind_big(ctx["url"], big, small))
    return {"big": big, "small": small, **figures}


def memory(ctx: dict[str, Any], inflight: int) -> dict[str, Any]:
    settings = {"fleet_max_inflight": inflight, "proxy_max_inflight": inflight,
                "proxy_rate_per_second": 0, "max_jobs": inflight,
                "worker_max_inflight": inflight}  # fmt: skip
    with simulator_process(ctx["tmp"], "--latency", "fixed:2000") as (sim, _):
        flush(ctx["url"])
        with workers(1, worker_env(ctx["url"], sim["url"], **settings), ctx["tmp"]) as fleet:
            run_batch(ctx["url"], 50, "warm", 60)
            reached = []

            async def load() -> None:
                settings_ = QueueSettings(redis_url=ctx["url"], queue_name=QUEUE)
                async with BatchQueue.connect(settings_) as queue:
                    await queue.enqueue(prompt_lines(inflight * 3, "mem"))

            asyncio.run(load())

            def at_peak() -> bool:
                reached.append(http_json(sim["stats_url"])["inflight"])
                return reached[-1] >= inflight * 0.95

            wait_until(at_peak, timeout=60, what=f"{inflight} requests in flight", every=0.2)
            time.sleep(2.0)  # hold the peak a little, so memory settles at it
            rss = fleet.peak_rss_mib()
    return {"inflight_target": inflight, "inflight_reached": max(reached),
            "worker_peak_rss_mib": round(rss, 1)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", default="start,fairness,memory")
    parser.add_argument("--samples", type=int, default=50, help="one-prompt batches timed")
    parser.add_argument("--big", type=int, default=50_000, help="prompts in the big batch")
    parser.add_argument("--small", type=int, default=50, help="prompts in the small batch")
    parser.add_argument("--inflight", type=int, default=500, help="requests in flight for memory")
    args = parser.parse_args()
    scenarios = args.scenarios.split(",")
    figures: dict[str, Any] = {"benchmark": "latency"}
    with tempfile.TemporaryDirectory() as tmp_name, redis_server(Path(tmp_name)) as (url, _):
        ctx = {"url": url, "tmp": Path(tmp_name)}
        if "start" in scenarios:
            figures["start"] = start_latency(ctx, args.samples)
            print(f"enqueue -> start, idle worker: {figures['start']}")
        if "fairness" in scenarios:
            figures["fairness"] = fairness(ctx, args.big, args.small)
            print(f"{args.small} behind {args.big}: {figures['fairness']}")
        if "memory" in scenarios:
            figures["memory"] = memory(ctx, args.inflight)
            print(f"worker at {args.inflight} in flight: {figures['memory']}")
    print(f"(this process peak RSS {peak_rss_mib():.0f} MiB)")
    emit(figures)


if __name__ == "__main__":
    main()
