"""What waiting costs Redis: workers whose prompts wait on a full fleet, or idle workers.

    .venv/bin/python bench/bench_waiting.py [--workers 8] [--seconds 10] [--idle]

``--idle``: nothing to do at all (no batch): what the workers' intake costs while they
wait for work, in client calls and in Redis's own CPU (``INFO cpu``) per second.

``--workers-from DIR`` runs the workers from another checkout (the code before a change).
A warm-up batch makes the site session and passes the identity's probe; then the site
slows down to 60 s an answer (``/__sim/latency``) with the fleet cap at 8, so the
first 8 prompts of the next batch hold every slot and the workers' other prompts wait.
Once they all wait, Redis's MONITOR is read for ``--seconds``: every command a client
sent (renewals, reports, housekeeping, looking for room; a script counts once, the
commands it runs inside are not client calls), per second. Measures the code on
PYTHONPATH (or the checkout), so the same script measures before and after.

Starts its own redis-server, simulator and workers on 127.0.0.1; stops them all.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import redis
from harness import emit, http_json
from service import QUEUE, prompt_lines, worker_env, workers

from contract.config import QueueSettings
from producer.api import BatchQueue
from simulator.local import redis_server, simulator_process, wait_until


def client_calls(url: str, seconds: float) -> tuple[Counter[str], float]:
    """Commands clients sent in ``seconds`` (MONITOR; commands run inside scripts left out)."""
    calls: Counter[str] = Counter()
    with redis.Redis.from_url(url) as client, client.monitor() as monitor:
        began = time.monotonic()
        while time.monotonic() - began < seconds:
            command = monitor.next_command()
            if command.get("client_type") != "lua":
                calls[command["command"].split(" ", 1)[0].upper()] += 1
    return calls, time.monotonic() - began


def redis_cpu(url: str) -> float:
    with redis.Redis.from_url(url) as client:
        info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def idle_calls(
    tmp: Path, n_workers: int, seconds: float, workers_from: str | None = None
) -> dict[str, Any]:
    """Workers started on an empty queue: client calls and Redis CPU per second."""
    with (
        redis_server(tmp) as (url, _),
        simulator_process(tmp, "--latency", "fixed:10") as (sim, _),
    ):
        env = worker_env(url, sim["url"], proxy_rate_per_second=0)
        if workers_from:
            env["PYTHONPATH"] = workers_from
        with workers(n_workers, env, tmp):
            time.sleep(5)  # every worker started and idle (the measured state, not a sync)
            cpu = redis_cpu(url)
            calls, elapsed = client_calls(url, seconds)
            cpu_ms = (redis_cpu(url) - cpu) * 1000 / elapsed
    busiest = {
        name: round(n / elapsed, 1) for name, n in sorted(calls.items(), key=lambda kv: -kv[1])[:8]
    }
    return {
        "workers": n_workers, "seconds": round(elapsed, 1), "idle": True,
        "redis_calls_per_second": round(sum(calls.values()) / elapsed, 1),
        "redis_cpu_ms_per_second": round(cpu_ms, 2), "by_command_per_second": busiest,
    }  # fmt: skip


def waiting_calls(
    tmp: Path, n_workers: int, seconds: float, workers_from: str | None = None
) -> dict[str, Any]:
    with (
        redis_server(tmp) as (url, _),
        simulator_process(tmp, "--latency", "fixed:10") as (sim, _),
    ):
        settings = {"fleet_max_inflight": 8, "proxy_max_inflight": 8, "proxy_rate_per_second": 0,
                    "request_timeout_seconds": 120, "chunk_size": 5}  # fmt: skip
        env = worker_env(url, sim["url"], **settings)
        if workers_from:  # the workers run that checkout's code (before/after), the rest ours
            env["PYTHONPATH"] = workers_from
        with workers(n_workers, env, tmp):

            async def enqueue(count: int, tag: str) -> str:
                settings = QueueSettings(redis_url=url, queue_name=QUEUE, chunk_size=5)
                async with BatchQueue.connect(settings) as queue:
                    return (await queue.enqueue(prompt_lines(count, tag))).batch_id

            async def done(batch_id: str) -> bool:
                async with BatchQueue.connect(QueueSettings(redis_url=url)) as queue:
                    return (await queue.status(batch_id)).done

            warm = asyncio.run(enqueue(40, "warm"))
            wait_until(lambda: asyncio.run(done(warm)), timeout=60, what="the warm-up")
            http_json(sim["url"] + "/__sim/latency?spec=fixed:60000", method="POST")
            asyncio.run(enqueue(40 * n_workers, "wait"))
            wait_until(lambda: http_json(sim["stats_url"])["inflight"] == 8, timeout=60,
                       what="the fleet full")  # fmt: skip
            time.sleep(3)  # the workers settle into waiting (the measured state, not a sync)
            calls, elapsed = client_calls(url, seconds)
    total = sum(calls.values())
    busiest = {
        name: round(n / elapsed, 1) for name, n in sorted(calls.items(), key=lambda kv: -kv[1])[:8]
    }
    return {
        "workers": n_workers,
        "seconds": round(elapsed, 1),
        "redis_calls_per_second": round(total / elapsed, 1),
        "by_command_per_second": busiest,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers-from", help="run the workers from this checkout (before)")
    parser.add_argument("--idle", action="store_true", help="no work at all: the intake's cost")
    args = parser.parse_args()
    measure = idle_calls if args.idle else waiting_calls
    with tempfile.TemporaryDirectory() as tmp:
        figures = measure(Path(tmp), args.workers, args.seconds, args.workers_from)
    what = "idle" if args.idle else "waiting on a full fleet"
    print(f"{args.workers} workers {what}: {figures}")
    emit({"benchmark": "waiting", **figures})


if __name__ == "__main__":
    main()
