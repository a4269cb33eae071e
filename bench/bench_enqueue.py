"""Validation and enqueue of N prompts: our pipelined enqueue vs arq's one-by-one enqueue_job.

    .venv/bin/python bench/bench_enqueue.py [--count 100000] [--arq-sample 5000]

Starts its own redis-server on a free 127.0.0.1 port and stops it at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
from arq.connections import RedisSettings, create_pool
from harness import cpu_seconds, emit, peak_rss_mib, used_memory

from contract import keys
from contract.batches import JOB_FUNCTION, json_dumps
from contract.config import QueueSettings
from contract.models import JobPayload, PromptRequest, utc_now
from producer.api import BatchQueue, job_id_for
from producer.inputs import PromptLine, parse_prompt_lines
from simulator.local import redis_server

QUEUE = "bench:queue"
ARQ_QUEUE = "bench:arq"
BATCH_ID = "bench"
ARQ_TIME_LIMIT = 120.0  # seconds; the arq sample stops early rather than run past this


def prompt_lines(count: int) -> list[str]:
    """Native JSONL lines: a user prompt of ~100 characters, every fifth with a system message."""
    lines = []
    for i in range(count):
        messages = [{"role": "user", "content": f"Prompt {i}: explain in two sentences why "
                     f"the sky looks blue at noon and red at sunset, case {i % 97}."}]  # fmt: skip
        if i % 5 == 0:
            messages.insert(0, {"role": "system", "content": "You answer briefly."})
        lines.append(json.dumps({"custom_id": f"req-{i}", "messages": messages}))
    return lines


def time_parse(lines: list[str]) -> tuple[list[PromptLine], float, float]:
    """(prompts, wall seconds, CPU seconds) of validating every line."""
    wall, cpu = time.perf_counter(), time.process_time()
    prompts = parse_prompt_lines(lines, default_model="gpt-4o", max_prompt_chars=32_000)
    return prompts, time.perf_counter() - wall, time.process_time() - cpu


async def time_enqueue(url: str, prompts: list[PromptLine], redis_pid: int) -> dict[str, float]:
    settings = QueueSettings(redis_url=url, queue_name=QUEUE)
    async with BatchQueue.connect(settings) as queue:
        redis_cpu = cpu_seconds(redis_pid)
        wall, cpu = time.perf_counter(), time.process_time()
        await queue.enqueue(prompts, batch_id=BATCH_ID)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"wall": wall, "cpu": cpu, "redis_cpu": cpu_seconds(redis_pid) - redis_cpu}


def arq_payloads(prompts: list[PromptLine]) -> list[dict[str, Any]]:
    """The same job argument our enqueue writes, built before the clock starts (arq's favour)."""
    now = utc_now()
    payloads = []
    for i, line in enumerate(prompts):
        request = PromptRequest(
            job_id=job_id_for("arq", i), batch_id="arq", custom_id=line.custom_id, index=i,
            messages=line.messages, model=line.model, enqueued_at=now,
        )  # fmt: skip
        payloads.append(JobPayload(prompts=(request,)).model_dump(mode="json"))
    return payloads


async def time_arq(url: str, payloads: list[dict[str, Any]]) -> tuple[int, float]:
    """(jobs enqueued, wall seconds) of arq's enqueue_job, one awaited call per job."""
    pool = await create_pool(
        RedisSettings.from_dsn(url), job_serializer=json_dumps, default_queue_name=ARQ_QUEUE
    )
    try:
        start = time.perf_counter()
        done = 0
        for i, payload in enumerate(payloads):
            await pool.enqueue_job(JOB_FUNCTION, payload, _job_id=job_id_for("arq", i))
            done += 1
            if time.perf_counter() - start > ARQ_TIME_LIMIT:
                break
        return done, time.perf_counter() - start
    finally:
        await pool.aclose()


def memory_breakdown(client: redis.Redis, count: int) -> dict[str, float]:
    """Bytes per job held by each kind of key our enqueue writes (MEMORY USAGE, sampled)."""
    sample = min(count, 200)
    job_bytes = sum(
        client.memory_usage(keys.arq_job(job_id_for(BATCH_ID, i))) or 0 for i in range(sample)
    )
    whole = {
        "requests_hash": keys.batch_requests(BATCH_ID),
        "jobs_list": keys.batch_jobs(BATCH_ID),
        "queue_zset": QUEUE,
    }
    out = {"arq_job_key": job_bytes / sample}
    for name, key in whole.items():
        out[name] = (client.memory_usage(key, samples=0) or 0) / count
    return out


def measure_ours(url: str, redis_pid: int, prompts: list[PromptLine]) -> dict[str, Any]:
    client = redis.Redis.from_url(url)
    try:
        before = used_memory(client)
        enqueue = asyncio.run(time_enqueue(url, prompts, redis_pid))
        delta = used_memory(client) - before
        breakdown = memory_breakdown(client, len(prompts))
        client.flushdb()
    finally:
        client.close()
    return {"enqueue": enqueue, "bytes_per_job": delta / len(prompts), "breakdown": breakdown}


def measure_arq(url: str, prompts: list[PromptLine], sample: int) -> dict[str, Any]:
    payloads = arq_payloads(prompts[:sample])
    client = redis.Redis.from_url(url)
    try:
        before = used_memory(client)
        done, wall = asyncio.run(time_arq(url, payloads))
        delta = used_memory(client) - before
    finally:
        client.close()
    return {"jobs": done, "wall": wall, "bytes_per_job": delta / done}


def figures(count: int, parse: tuple[float, float], ours: dict, arq: dict) -> dict[str, Any]:
    parse_wall, parse_cpu = parse
    enqueue = ours["enqueue"]
    ours_rate = count / enqueue["wall"]
    arq_rate = arq["jobs"] / arq["wall"]
    return {
        "benchmark": "enqueue",
        "count": count,
        "parse_seconds": round(parse_wall, 3),
        "parse_lines_per_s": round(count / parse_wall),
        "parse_cpu_seconds": round(parse_cpu, 3),
        "enqueue_seconds": round(enqueue["wall"], 3),
        "enqueue_jobs_per_s": round(ours_rate),
        "enqueue_client_cpu_seconds": round(enqueue["cpu"], 3),
        "enqueue_redis_cpu_seconds": round(enqueue["redis_cpu"], 3),
        "parse_plus_enqueue_seconds": round(parse_wall + enqueue["wall"], 3),
        "arq_sample_jobs": arq["jobs"],
        "arq_enqueue_jobs_per_s": round(arq_rate),
        "arq_extrapolated_seconds": round(count / arq_rate, 1),
        "ratio_ours_vs_arq": round(ours_rate / arq_rate, 2),
        "redis_bytes_per_job": round(ours["bytes_per_job"]),
        "redis_bytes_per_job_breakdown": {k: round(v) for k, v in ours["breakdown"].items()},
        "arq_redis_bytes_per_job": round(arq["bytes_per_job"]),
        "producer_peak_rss_mib": round(peak_rss_mib(), 1),
    }


def report(f: dict[str, Any]) -> None:
    print(f"validate {f['count']:,} lines: {f['parse_seconds']} s "
          f"({f['parse_lines_per_s']:,} lines/s)")  # fmt: skip
    print(f"enqueue (ours, pipelined): {f['enqueue_seconds']} s = {f['enqueue_jobs_per_s']:,} "
          f"jobs/s; client CPU {f['enqueue_client_cpu_seconds']} s, "
          f"redis CPU {f['enqueue_redis_cpu_seconds']} s")  # fmt: skip
    print(f"enqueue (arq enqueue_job, {f['arq_sample_jobs']:,} sample): "
          f"{f['arq_enqueue_jobs_per_s']:,} jobs/s -> {f['arq_extrapolated_seconds']} s "
          f"for {f['count']:,}")  # fmt: skip
    print(f"ratio ours/arq: {f['ratio_ours_vs_arq']}x; whole file (validate + enqueue): "
          f"{f['parse_plus_enqueue_seconds']} s")  # fmt: skip
    print(
        f"redis memory per job: ours {f['redis_bytes_per_job']} B "
        f"{f['redis_bytes_per_job_breakdown']}, arq alone {f['arq_redis_bytes_per_job']} B"
    )
    print(f"producer peak RSS {f['producer_peak_rss_mib']} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000, help="prompts to validate/enqueue")
    parser.add_argument("--arq-sample", type=int, default=5_000, help="jobs for arq's enqueue_job")
    args = parser.parse_args()
    if not 1 <= args.count <= 2_000_000 or not 1 <= args.arq_sample <= args.count:
        parser.error("need 1 <= --arq-sample <= --count <= 2,000,000")
    prompts, parse_wall, parse_cpu = time_parse(prompt_lines(args.count))
    with tempfile.TemporaryDirectory() as tmp, redis_server(Path(tmp)) as (url, process):
        ours = measure_ours(url, process.pid, prompts)
        arq = measure_arq(url, prompts, args.arq_sample)
    result = figures(args.count, (parse_wall, parse_cpu), ours, arq)
    report(result)
    emit(result)


if __name__ == "__main__":
    main()
