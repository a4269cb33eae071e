"""How fast the queue recovers: a worker SIGKILLed mid-batch, and Redis restarted mid-batch.

    .venv/bin/python bench/bench_recovery.py [--prompts 600] [--scenarios kill,restart]

- ``kill``: 2 workers, a ~200 ms site, 40 in flight; once 100 prompts are done one
  worker is SIGKILLed. Every chunk in progress at that moment (the dead worker's and the
  survivor's) is followed until it has finished: the last of them is the dead worker's,
  run again once its in-progress mark expired. Figures: seconds from the kill until then,
  the batch's end, one result per prompt, answers the site gave twice.
- ``restart``: Redis with append-only persistence is stopped for a few seconds and
  started again mid-batch; figures: how long it was down, how long after it came back
  the batch moved again, whether every worker is still alive, the batch's end.

Starts its own redis-server, simulator and workers on 127.0.0.1; stops them all.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis
from harness import emit, http_json
from service import QUEUE, prompt_lines, worker_env, workers

from contract.config import QueueSettings
from producer.api import BatchQueue
from simulator.local import free_port, simulator_process, start_redis, stop_process, wait_until

SETTINGS = {"proxy_rate_per_second": 0, "proxy_max_inflight": 40, "fleet_max_inflight": 40}


def enqueue(url: str, count: int, tag: str) -> str:
    async def go() -> str:
        async with BatchQueue.connect(QueueSettings(redis_url=url, queue_name=QUEUE)) as queue:
            return (await queue.enqueue(prompt_lines(count, tag))).batch_id

    return asyncio.run(go())


def status(url: str, batch_id: str) -> Any:
    async def go() -> Any:
        async with BatchQueue.connect(QueueSettings(redis_url=url, queue_name=QUEUE)) as queue:
            return await queue.status(batch_id)

    return asyncio.run(go())


def in_progress_chunks(client: redis.Redis) -> set[str]:
    """The chunks a worker holds now (the bench may scan: it is not the service)."""
    prefix = "arq:in-progress:"
    return {key.decode()[len(prefix) :] for key in client.scan_iter(match=prefix + "*")}


def tries(client: redis.Redis, chunks: set[str]) -> dict[str, int]:
    """How many times arq has started each chunk (its ``arq:retry:`` counter)."""
    return {chunk: int(client.get(f"arq:retry:{chunk}") or 0) for chunk in chunks}


def follow(client: redis.Redis, held: set[str], since: float) -> float:
    """Seconds from ``since`` until the last of the orphaned chunks was started again.

    A chunk held at the kill is started again when arq's try counter for it moves: only
    the dead worker's chunks are, once their in-progress marks lapse. Returns once every
    chunk held at the kill has finished.
    """
    first = tries(client, held)
    retaken: dict[str, float] = {}
    deadline = since + 120
    while time.monotonic() < deadline:
        for chunk, count in tries(client, held).items():
            if count > first[chunk] and chunk not in retaken:
                retaken[chunk] = time.monotonic() - since
        if not any(client.zscore(QUEUE, chunk) is not None for chunk in held):
            if not retaken:
                raise RuntimeError("no chunk held at the kill was started again")
            return max(retaken.values())
        time.sleep(0.05)  # sampling the counters, not waiting for one
    raise TimeoutError("the chunks held at the kill did not finish in 120 s")


@contextmanager
def batch_under_way(
    tmp: Path, url: str, latency: str, count: int, tag: str
) -> Iterator[tuple[dict[str, Any], Any, str]]:
    """(simulator info, 2 workers, batch ID) once 100 of the batch's prompts are done."""
    with (
        simulator_process(tmp, "--latency", latency) as (sim, _),
        workers(2, worker_env(url, sim["url"], **SETTINGS), tmp) as fleet,
    ):
        batch_id = enqueue(url, count, tag)
        wait_until(lambda: status(url, batch_id).finished >= 100, timeout=120,
                   what="100 prompts done")  # fmt: skip
        yield sim, fleet, batch_id


def kill(tmp: Path, count: int) -> dict[str, Any]:
    port = free_port()
    server = start_redis(tmp, port)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    try:
        with batch_under_way(tmp, url, "fixed:200", count, "kill") as (sim, fleet, batch_id):
            held = in_progress_chunks(client)
            fleet.processes[0].kill()
            killed = time.monotonic()
            rerun = follow(client, held, killed)
            recovered = time.monotonic() - killed
            wait_until(lambda: status(url, batch_id).done, timeout=120, what="the batch")
            done = time.monotonic() - killed
            final = status(url, batch_id)
            site = http_json(sim["stats_url"])
    finally:
        client.close()
        stop_process(server)
    return {"prompts": count, "chunks_held_at_the_kill": len(held),
            "seconds_until_the_dead_workers_chunks_ran_again": round(rerun, 1),
            "seconds_until_they_finished": round(recovered, 1),
            "seconds_until_the_batch_was_done": round(done, 1),
            "succeeded": final.succeeded, "failed": final.failed,
            "answered_twice_at_the_site": site["answered_duplicates"]}  # fmt: skip


def restart(tmp: Path, count: int, down_seconds: float) -> dict[str, Any]:
    port = free_port()
    data = tmp / "aof"
    data.mkdir()
    server = start_redis(data, port, appendonly=True)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        with batch_under_way(tmp, url, "fixed:100", count, "restart") as (_, fleet, batch_id):
            stop_process(server)
            stopped = time.monotonic()
            time.sleep(down_seconds)  # the outage itself, not a synchronisation
            server = start_redis(data, port, appendonly=True)
            back = time.monotonic()
            before = status(url, batch_id).finished
            wait_until(lambda: status(url, batch_id).finished > before, timeout=120,
                           what="progress after the restart", every=0.1)  # fmt: skip
            moved = time.monotonic() - back
            wait_until(lambda: status(url, batch_id).done, timeout=180, what="the batch")
            alive = sum(process.poll() is None for process in fleet.processes)
            final = status(url, batch_id)
    finally:
        stop_process(server)
    return {"prompts": count, "redis_down_seconds": round(back - stopped, 1),
            "seconds_from_redis_back_to_progress": round(moved, 2), "workers_alive_after": alive,
            "succeeded": final.succeeded, "failed": final.failed}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=600)
    parser.add_argument("--scenarios", default="kill,restart")
    parser.add_argument("--down", type=float, default=5.0, help="seconds Redis stays down")
    args = parser.parse_args()
    figures: dict[str, Any] = {"benchmark": "recovery"}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if "kill" in args.scenarios:
            figures["kill"] = kill(tmp, args.prompts)
            print(f"SIGKILL of 1 of 2 workers: {figures['kill']}")
        if "restart" in args.scenarios:
            figures["restart"] = restart(tmp, args.prompts, args.down)
            print(f"Redis restarted mid-batch: {figures['restart']}")
    emit(figures)


if __name__ == "__main__":
    main()
