"""End-to-end prompts/s: redis-server, the simulator and 1, then 2, worker processes.

    .venv/bin/python bench/bench_throughput.py [--count 2000] [--workers 1,2]

Each phase starts from an empty Redis and fresh workers, runs a warm-up batch (so
imports, connections and the site sessions are made), then times one batch from
the first enqueue to the status saying done. Everything listens on 127.0.0.1 and
every process started is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import pstats
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import redis
from harness import cpu_seconds, emit, http_json, peak_rss_mib

from contract.config import QueueSettings
from contract.models import BatchStatus, Message
from producer.api import BatchQueue
from producer.inputs import PromptLine
from simulator.local import redis_server, running, simulator_process

QUEUE = "bench:queue"
ARQ_NOOP_JOBS_PER_CORE = 1550  # DESIGN.md: arq's own no-op job ceiling on one core
POLL_SECONDS = 0.05


def worker_env(redis_url: str, sim: dict[str, Any]) -> dict[str, str]:
    return {
        "CHATGPTES_REDIS_URL": redis_url,
        "CHATGPTES_QUEUE_NAME": QUEUE,
        "CHATGPTES_UPSTREAM_URL": sim["url"],
        "CHATGPTES_PROXIES": ",".join(sim["proxies"]),
        "CHATGPTES_PROXY_RATE_PER_SECOND": "0",
        "CHATGPTES_PROXY_MAX_INFLIGHT": "16",
        "CHATGPTES_FLEET_MAX_INFLIGHT": "64",
        "CHATGPTES_LOG_LEVEL": "WARNING",
        "CHATGPTES_LOG_FORMAT": "json",
    }


def worker_argv(profile: Path | None) -> list[str]:
    cli = ["-m", "chatgptes.cli", "worker"]
    if profile is None:
        return [sys.executable, *cli]
    return [sys.executable, "-m", "cProfile", "-o", str(profile), *cli]


def prompts(count: int) -> list[PromptLine]:
    return [
        PromptLine(
            i + 1, f"req-{i}", (Message(role="user", content=f"Prompt {i}: why?"),), "gpt-4o"
        )
        for i in range(count)
    ]


async def run_batch(url: str, batch_id: str, count: int, timeout: float) -> BatchStatus:
    """Enqueues ``count`` prompts and polls the status until done (bounded by ``timeout``)."""
    async with BatchQueue.connect(QueueSettings(redis_url=url, queue_name=QUEUE)) as queue:
        await queue.enqueue(prompts(count), batch_id=batch_id)
        return await queue.wait(batch_id, timeout=timeout, poll_seconds=POLL_SECONDS)


def cpu_of(pids: list[int]) -> list[float]:
    return [cpu_seconds(pid) for pid in pids]


def sim_requests(stats: dict[str, Any]) -> dict[str, int]:
    return {**stats["requests"], "success": stats["replies"]["success"]}


def redis_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=True)


def reset_command_stats(url: str) -> None:
    with redis_client(url) as client:
        client.config_resetstat()


def command_stats(url: str) -> dict[str, int]:
    """Calls per Redis command since the last reset (MULTI and EXEC included)."""
    with redis_client(url) as client:
        stats = client.info("commandstats")
    calls = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}
    return dict(sorted(calls.items(), key=lambda item: -item[1]))


def timed_batch(ctx: dict[str, Any], workers: list[Any], count: int) -> dict[str, Any]:
    """Figures of one timed batch: wall time and the CPU each process spent on it."""
    pids = [p.pid for p in workers]
    sim_before = sim_requests(http_json(ctx["sim"]["stats_url"]))
    reset_command_stats(ctx["url"])
    before = cpu_of(pids), cpu_seconds(ctx["sim_pid"]), cpu_seconds(ctx["redis_pid"])
    start, own_cpu = time.perf_counter(), time.process_time()
    status = asyncio.run(run_batch(ctx["url"], f"run{len(pids)}", count, ctx["timeout"]))
    wall, own_cpu = time.perf_counter() - start, time.process_time() - own_cpu
    after = cpu_of(pids), cpu_seconds(ctx["sim_pid"]), cpu_seconds(ctx["redis_pid"])
    sim_after = sim_requests(http_json(ctx["sim"]["stats_url"]))
    commands = command_stats(ctx["url"])
    return {
        "redis_commands": commands,
        "wall": wall,
        "status": status,
        "worker_cpu": [b - a for a, b in zip(before[0], after[0], strict=True)],
        "sim_cpu": after[1] - before[1],
        "redis_cpu": after[2] - before[2],
        "bench_cpu": own_cpu,
        "sim": {key: sim_after[key] - sim_before[key] for key in sim_after},
        "peak_rss_mib": [peak_rss_mib(pid) for pid in pids],
    }


def phase(ctx: dict[str, Any], count: int, n_workers: int) -> dict[str, Any]:
    """Fresh Redis state and workers; a warm-up batch; then the timed batch."""
    with redis_client(ctx["url"]) as client:
        client.flushdb()
    http_json(ctx["sim"]["url"].rstrip("/") + "/__sim/reset", method="POST")
    env = worker_env(ctx["url"], ctx["sim"])
    with ExitStack() as stack:
        workers = []
        for i in range(n_workers):
            profile = ctx["profile"] / f"worker{n_workers}-{i}.prof" if ctx["profile"] else None
            log = ctx["tmp"] / f"worker{n_workers}-{i}.log"
            workers.append(stack.enter_context(running(worker_argv(profile), log=log, env=env)))
        asyncio.run(run_batch(ctx["url"], f"warm{n_workers}", ctx["warmup"], ctx["timeout"]))
        measured = timed_batch(ctx, workers, count)
    measured["sim_incl_warmup"] = sim_requests(http_json(ctx["sim"]["stats_url"]))
    return measured


def summarize(count: int, n_workers: int, m: dict[str, Any]) -> dict[str, Any]:
    status: BatchStatus = m["status"]
    worker_cpu = sum(m["worker_cpu"])
    cpu_ms = worker_cpu / count * 1000
    return {
        "workers": n_workers,
        "seconds": round(m["wall"], 3),
        "prompts_per_s": round(count / m["wall"], 1),
        "succeeded": status.succeeded,
        "failed": status.failed,
        "worker_cpu_ms_per_prompt": round(cpu_ms, 3),
        "worker_cpu_share_of_wall": round(worker_cpu / m["wall"], 2),
        "vs_arq_noop_cpu": round(cpu_ms / (1000 / ARQ_NOOP_JOBS_PER_CORE), 2),
        "simulator_cpu_ms_per_prompt": round(m["sim_cpu"] / count * 1000, 3),
        "redis_cpu_ms_per_prompt": round(m["redis_cpu"] / count * 1000, 3),
        "bench_cpu_ms_per_prompt": round(m["bench_cpu"] / count * 1000, 3),
        "sim_requests": m["sim"],
        "sim_requests_incl_warmup": m["sim_incl_warmup"],
        "redis_commands_per_prompt": round(sum(m["redis_commands"].values()) / count, 1),
        "redis_commands_per_prompt_by_name": {
            name: round(calls / count, 2) for name, calls in m["redis_commands"].items()
        },
        "worker_peak_rss_mib": round(max(m["peak_rss_mib"]), 1),
    }


def report(rows: list[dict[str, Any]]) -> None:
    for r in rows:
        print(f"{r['workers']} worker(s): {r['prompts_per_s']} prompts/s ({r['seconds']} s, "
              f"{r['succeeded']} ok, {r['failed']} failed)")  # fmt: skip
        print(f"  CPU ms/prompt: workers {r['worker_cpu_ms_per_prompt']} "
              f"(= {r['vs_arq_noop_cpu']}x arq's no-op job), simulator "
              f"{r['simulator_cpu_ms_per_prompt']}, redis {r['redis_cpu_ms_per_prompt']}, "
              f"bench {r['bench_cpu_ms_per_prompt']}")  # fmt: skip
        top = list(r["redis_commands_per_prompt_by_name"].items())[:10]
        print(f"  redis commands/prompt (all clients, scripts' calls included): "
              f"{r['redis_commands_per_prompt']}; top: {dict(top)}")  # fmt: skip
        print(
            f"  simulator (timed batch): {r['sim_requests']}; with warm-up: "
            f"{r['sim_requests_incl_warmup']}; worker peak RSS {r['worker_peak_rss_mib']} MiB"
        )


def print_profile(directory: Path) -> None:
    for path in sorted(directory.glob("*.prof"))[:1]:
        print(f"--- {path.name}, top functions by own time (cProfile inflates the figures)")
        pstats.Stats(str(path)).sort_stats("tottime").print_stats(25)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2_000, help="prompts in the timed batch")
    parser.add_argument("--warmup", type=int, default=200, help="prompts in the warm-up batch")
    parser.add_argument("--workers", default="1,2", help="worker counts to run, comma-separated")
    parser.add_argument("--latency", default="fixed:20", help="simulator --latency")
    parser.add_argument("--proxies", type=int, default=4, help="simulator proxy ports")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds a batch may take")
    parser.add_argument("--profile", type=Path, help="run workers under cProfile, files here")
    args = parser.parse_args()
    args.worker_counts = [int(n) for n in args.workers.split(",")]
    if not 1 <= args.count <= 100_000 or not all(1 <= n <= 8 for n in args.worker_counts):
        parser.error("need 1 <= --count <= 100,000 and 1..8 workers per phase")
    return args


def main() -> None:
    args = parse_args()
    sim_options = ("--latency", args.latency, "--proxies", str(args.proxies), "--seed", "1")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        with (
            redis_server(tmp) as (url, redis_proc),
            simulator_process(tmp, *sim_options) as (sim, proc),
        ):
            if args.profile:
                args.profile.mkdir(parents=True, exist_ok=True)
            ctx = {"url": url, "sim": sim, "sim_pid": proc.pid, "redis_pid": redis_proc.pid,
                   "tmp": tmp, "timeout": args.timeout, "warmup": args.warmup,
                   "profile": args.profile}  # fmt: skip
            rows = [summarize(args.count, n, phase(ctx, args.count, n)) for n in args.worker_counts]
    if args.profile:
        print_profile(args.profile)
    figures: dict[str, Any] = {"benchmark": "throughput", "count": args.count, "phases": rows}
    if len(rows) >= 2:
        figures["ratio_last_vs_first"] = round(
            rows[-1]["prompts_per_s"] / rows[0]["prompts_per_s"], 2
        )
    report(rows)
    if "ratio_last_vs_first" in figures:
        print(f"ratio {rows[-1]['workers']} vs {rows[0]['workers']} workers: "
              f"{figures['ratio_last_vs_first']}x")  # fmt: skip
    emit(figures)


if __name__ == "__main__":
    main()
