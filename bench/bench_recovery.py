"""How fast the queue recovers, and what it costs to be able to.

    .venv/bin/python bench/bench_recovery.py [--prompts 600] \
        [--scenarios kill,freeze,restart,renewal,expire] [--expire-prompts 1000000]

- ``kill``: 2 workers, a 1.5 s site, 40 in flight; once 100 prompts are done one
  worker is SIGKILLed with its requests on the wire. Figures: seconds from the kill
  until one of its prompts reaches the site a second time (the simulator's ledger of
  what arrived), until the batch's end; one result per prompt.
- ``freeze``: 2 workers, a 400 ms site, 40 in flight, 1,500 prompts; one worker is
  SIGSTOPped for 25 s (past the claim TTL), then SIGCONTed. Figures: what was on the
  wire at the freeze, and answers the site gave twice (at most that).
- ``restart``: Redis with append-only persistence is stopped for a few seconds and
  started again mid-batch; figures: how long it was down, how long after it came back
  the batch moved again, whether every worker is still alive, the batch's end.
- ``renewal``: what keeping claims alive costs: one worker holding a batch's worth of
  chunks and leases on a slow site, Redis calls and Redis CPU per second of renewal.
- ``expire``: a batch of ``--expire-prompts`` prompts whose completion window ends
  while a second batch runs: whether any claim lapsed (a worker re-ran another's
  chunk), answers given twice, and both batches' results complete.

Starts its own redis-server, simulator and workers on 127.0.0.1; stops them all.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis
from harness import emit, http_json
from service import QUEUE, prompt_lines, worker_env, workers

from contract import keys
from contract.config import QueueSettings
from contract.retrying import redis_client
from producer.api import BatchQueue
from simulator.local import free_port, simulator_process, start_redis, stop_process, wait_until
from worker.claims import ChunkClaims
from worker.heartbeat import Heartbeat
from worker.leases import LeaseBook
from worker.proxies import Identity

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


def busiest(client: redis.Redis, processes: list[Any]) -> Any:
    """The worker process with the most requests on the wire, by its last report."""
    host = socket.gethostname()

    def in_flight(process: Any) -> int:
        return int(client.hget(keys.worker_info(f"{host}:{process.pid}"), "in_flight") or 0)

    return max(processes, key=in_flight)


@contextmanager
def batch_under_way(
    tmp: Path, url: str, latency: str, count: int, tag: str, settings: dict[str, Any] | None = None
) -> Iterator[tuple[dict[str, Any], Any, str]]:
    """(simulator info, 2 workers, batch ID) once 100 of the batch's prompts are done."""
    with (
        simulator_process(tmp, "--latency", latency) as (sim, _),
        workers(2, worker_env(url, sim["url"], **(settings or SETTINGS)), tmp) as fleet,
    ):
        batch_id = enqueue(url, count, tag)
        wait_until(lambda: status(url, batch_id).finished >= 100, timeout=120,
                   what="100 prompts done")  # fmt: skip
        yield sim, fleet, batch_id


@contextmanager
def own_redis(tmp: Path) -> Iterator[tuple[str, redis.Redis]]:
    port = free_port()
    server = start_redis(tmp, port)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    try:
        yield url, client
    finally:
        client.close()
        stop_process(server)


def kill(tmp: Path, count: int, latency_ms: int) -> dict[str, Any]:
    with (
        own_redis(tmp) as (url, client),
        batch_under_way(tmp, url, f"fixed:{latency_ms}", count, "kill") as (sim, fleet, batch_id),
    ):
        held = in_progress_chunks(client)
        victim = busiest(client, fleet.processes)
        victim.kill()  # SIGKILL, with its requests on the wire
        killed = time.monotonic()
        wait_until(lambda: http_json(sim["stats_url"])["received_duplicates"] > 0,
                   timeout=120, what="one of its prompts sent again", every=0.02)  # fmt: skip
        sent_again = time.monotonic() - killed
        wait_until(lambda: status(url, batch_id).done, timeout=120, what="the batch")
        done = time.monotonic() - killed
        final = status(url, batch_id)
        site = http_json(sim["stats_url"])
    return {"prompts": count, "site_latency_ms": latency_ms,
            "chunks_held_at_the_kill": len(held),
            "seconds_until_its_prompts_reached_the_site_again": round(sent_again, 2),
            "seconds_until_the_batch_was_done": round(done, 1),
            "succeeded": final.succeeded, "failed": final.failed,
            "answered_twice_at_the_site": site["answered_duplicates"],
            "sent_twice_to_the_site": site["received_duplicates"]}  # fmt: skip


def freeze(tmp: Path, count: int, frozen_seconds: float) -> dict[str, Any]:
    with (
        own_redis(tmp) as (url, client),
        batch_under_way(tmp, url, "fixed:400", count, "freeze") as (sim, fleet, batch_id),
    ):
        on_the_wire = http_json(sim["stats_url"])["inflight"]
        victim = busiest(client, fleet.processes)
        victim.send_signal(signal.SIGSTOP)
        try:
            time.sleep(frozen_seconds)  # the freeze itself, not a synchronisation
        finally:
            victim.send_signal(signal.SIGCONT)
        wait_until(lambda: status(url, batch_id).done, timeout=300, what="the batch")
        final = status(url, batch_id)
        site = http_json(sim["stats_url"])
        alive = sum(process.poll() is None for process in fleet.processes)
    return {"prompts": count, "frozen_seconds": frozen_seconds,
            "on_the_wire_at_the_freeze": on_the_wire,
            "answered_twice_at_the_site": site["answered_duplicates"],
            "sent_twice_to_the_site": site["received_duplicates"],
            "succeeded": final.succeeded, "failed": final.failed,
            "workers_alive_after": alive}  # fmt: skip


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


def renewal(tmp: Path, chunks: int, leases: int, beats: int) -> dict[str, Any]:
    """One worker's heartbeat against a real Redis: what renewing its claims costs."""

    async def measure(url: str, client: redis.Redis) -> dict[str, Any]:
        redis_ = redis_client(url)
        for n in range(chunks):
            await redis_.zadd(QUEUE, {f"b:{n}": 1 + n})
        claims = ChunkClaims(redis_, queue_name=QUEUE, ttl_seconds=5, keep_seconds=3600)
        held = (await claims.take(chunks, hands_free=True)).claims
        book = LeaseBook(redis_, fleet_cap=leases, burst=1, ttl_seconds=5,
                         backoff_base_seconds=1, backoff_cap_seconds=60)  # fmt: skip
        pool = [Identity(f"p{n}", f"http://p{n}:1", leases, 0) for n in range(10)]
        await book.register(pool)
        await redis_.hset(keys.identity_field("probe"), mapping={i.name: 0 for i in pool})
        taken = (await book.acquire(leases)).leases
        report = {"host": "bench", "pid": "1", "in_flight": leases, "chunks": chunks}
        beat = Heartbeat(
            redis_, chunks=claims, book=book, worker_id="bench:1", interval=1, ttl=5,
            held_chunks=lambda: held, held_leases=lambda: taken, report=lambda: report,
            lost_chunks=lambda _: None, lost_leases=lambda _: None,
        )  # fmt: skip
        await beat.beat()  # the scripts are loaded
        client.config_resetstat()
        began = time.perf_counter()
        for _ in range(beats):
            assert await beat.beat()
        seconds = time.perf_counter() - began
        stats = client.info("commandstats")
        await redis_.aclose()
        calls = sum(int(v["calls"]) for v in stats.values())
        usec = sum(int(v["usec"]) for v in stats.values())
        return {"chunks_held": chunks, "leases_held": leases, "beats": beats,
                "round_trips_per_beat": 1, "commands_per_beat": round(calls / beats, 1),
                "redis_usec_per_beat": round(usec / beats, 1),
                "ms_per_beat_round_trip": round(seconds / beats * 1000, 3),
                "redis_core_share_at_1_beat_per_s": round(usec / beats / 1e6, 5)}  # fmt: skip

    with own_redis(tmp) as (url, client):
        return asyncio.run(measure(url, client))


def expire(tmp: Path, big: int, small: int) -> dict[str, Any]:
    """A big batch's completion window ends while a small one runs beside it."""
    with (
        own_redis(tmp) as (url, client),
        simulator_process(tmp, "--latency", "fixed:200") as (sim, _),
        workers(2, worker_env(url, sim["url"], **SETTINGS), tmp) as fleet,
    ):
        client.config_set("slowlog-log-slower-than", 50_000)  # µs: what stalled Redis
        client.slowlog_reset()
        began = time.monotonic()
        big_id = enqueue(url, big, "big")
        enqueued = time.monotonic() - began
        # Its window ends now (the bench moves the deadline; nothing in the service does).
        now_ms = int(time.time() * 1000)
        client.hset(keys.batch_meta(big_id), "expires_ms", now_ms)
        client.zadd(keys.batch_deadlines(), {big_id: now_ms})
        window_ended_at = time.strftime("%H:%M:%S", time.gmtime(now_ms / 1000))
        started = time.monotonic()
        small_id = enqueue(url, small, "small")
        wait_until(lambda: status(url, small_id).done, timeout=900, what="the small batch")
        small_done = time.monotonic() - started
        wait_until(lambda: status(url, big_id).done, timeout=1800, what="the big one to end",
                   every=1)  # fmt: skip
        big_done = time.monotonic() - started
        big_final, small_final = status(url, big_id), status(url, small_id)
        site = http_json(sim["stats_url"])
        logs = "".join(path.read_text() for path in tmp.glob("worker-*.log"))
        alive = sum(process.poll() is None for process in fleet.processes)
        slow = [(round(entry["duration"] / 1000), entry["command"].split(b" ")[0].decode())
                for entry in client.slowlog_get(10)]  # fmt: skip
        lapses_at = [line[:400] for line in logs.splitlines()
                     if '"heartbeat.missed"' in line or '"chunks.lost"' in line]  # fmt: skip
    lapses = {name: logs.count(f'"{name}"') for name in
              ("chunks.lost", "leases.lost", "heartbeat.missed")}  # fmt: skip
    return {"big_prompts": big, "small_prompts": small,
            "seconds_to_enqueue_the_big_one": round(enqueued, 1),
            "small_batch_done_after_seconds": round(small_done, 1),
            "big_batch_ended_after_seconds": round(big_done, 1),
            "big_state": big_final.state, "big_expired": big_final.failed,
            "big_answered": big_final.succeeded, "small_succeeded": small_final.succeeded,
            "claims_lost_or_beats_missed": lapses,
            "answered_twice_at_the_site": site["answered_duplicates"],
            "workers_alive_after": alive, "redis_slowest_ms": slow,
            "window_ended_at_utc": window_ended_at,
            "lapse_lines": lapses_at}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=600)
    parser.add_argument("--scenarios", default="kill,freeze,restart,renewal,expire")
    parser.add_argument("--down", type=float, default=5.0, help="seconds Redis stays down")
    parser.add_argument("--kill-latency-ms", type=int, default=1500)
    parser.add_argument("--freeze-prompts", type=int, default=1500)
    parser.add_argument("--frozen", type=float, default=25.0, help="seconds the worker is frozen")
    parser.add_argument("--expire-prompts", type=int, default=1_000_000)
    args = parser.parse_args()
    figures: dict[str, Any] = {"benchmark": "recovery"}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        scenarios = args.scenarios.split(",")
        if "kill" in scenarios:
            figures["kill"] = kill(tmp, args.prompts, args.kill_latency_ms)
            print(f"SIGKILL of 1 of 2 workers: {figures['kill']}")
        if "freeze" in scenarios:
            figures["freeze"] = freeze(tmp, args.freeze_prompts, args.frozen)
            print(f"1 of 2 workers frozen: {figures['freeze']}")
        if "restart" in scenarios:
            figures["restart"] = restart(tmp, args.prompts, args.down)
            print(f"Redis restarted mid-batch: {figures['restart']}")
        if "renewal" in scenarios:
            held = ((1, 1), (10, 256), (40, 1000))
            figures["renewal"] = [renewal(tmp, chunks, leases, 200) for chunks, leases in held]
            for row in figures["renewal"]:
                print(f"renewal: {row}")
        if "expire" in scenarios:
            figures["expire"] = expire(tmp, args.expire_prompts, args.prompts)
            print(f"a batch expiring beside a running one: {figures['expire']}")
    emit(figures)


if __name__ == "__main__":
    main()
