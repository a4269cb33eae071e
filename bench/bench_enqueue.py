"""Enqueue and export of N prompts: validate + write a file's worth, then read its results out.

    .venv/bin/python bench/bench_enqueue.py [--count 100000] [--arq-sample 5000]
        [--process-runs 3] [--process-only] [--tiny]

- enqueue as a whole process: ``chatgptes enqueue FILE`` run cold (a new interpreter
  each time) on the JSONL file, timed from the command's start to its exit, with its
  peak RSS (``ru_maxrss`` of that process alone); the median of ``--process-runs`` runs;
  beside it, in the same rounds, the reference: a plain redis-py process writing the
  same lines (each line as it is, into one hash, 1,000 fields an HSET, pipelined): no
  validation, no staging, the floor of reading a file into Redis from Python;
- enqueue in-process: the path of ``chatgptes enqueue`` for a JSONL file already read:
  every line validated (``parse_prompt_lines``), then ``BatchQueue.enqueue``; beside it
  arq's own ``enqueue_job``, awaited once per job, on a sample, extrapolated (the
  reference);
- export: N stored results written out as native JSONL lines, in input order, the way
  ``chatgptes results`` does it;
- Redis bytes per queued prompt.

Works on the code on ``PYTHONPATH`` (old or new), so the same script measures before
and after. Starts its own redis-server on a free 127.0.0.1 port and stops it at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
from arq.connections import RedisSettings, create_pool
from harness import cpu_seconds, emit, peak_rss_mib, used_memory

from contract.config import QueueSettings
from contract.models import JobResult
from producer.api import BatchQueue
from producer.inputs import PromptLine, parse_prompt_lines
from simulator.local import redis_server

QUEUE = "bench:queue"
ARQ_QUEUE = "bench:arq"
BATCH_ID = "bench"
ARQ_TIME_LIMIT = 120.0  # seconds; the arq sample stops early rather than run past this
ANSWER = "The sky is blue because air scatters short wavelengths more. " * 4


def tiny_lines(count: int) -> list[str]:
    """The smallest native lines: one short user message, no custom_id."""
    return [f'{{"messages": [{{"role": "user", "content": "hi {i}"}}]}}' for i in range(count)]


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


# Runs the command as a child of this small process and reports its wall time and peak
# RSS: a child forked from the benchmark itself would count the benchmark's memory (the
# lines it holds) in its ru_maxrss, which covers the time before exec.
LAUNCHER = """
import json, os, sys, time
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.execv(sys.executable, [sys.executable, *sys.argv[2:]])
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - start
with open(sys.argv[1], "w") as out:
    json.dump({"wall": wall, "code": os.waitstatus_to_exitcode(status),
               "cpu": usage.ru_utime + usage.ru_stime,
               "peak_rss_mib": usage.ru_maxrss / 1024}, out)
"""


# The reference: the same lines into Redis with a plain redis-py pipeline, as a process.
RAW_PIPELINE = """
import sys
import redis
client = redis.Redis.from_url(sys.argv[1])
pipe = client.pipeline(transaction=False)
fields, index, queued = [], 0, 0
with open(sys.argv[2], "rb") as lines:
    for line in lines:
        fields += (index, line.rstrip(b"\\n"))
        index += 1
        if len(fields) == 2000:
            pipe.execute_command("HSET", "raw:requests", *fields)
            fields, queued = [], queued + 1
            if queued == 10:
                pipe.execute()
                queued = 0
if fields:
    pipe.execute_command("HSET", "raw:requests", *fields)
pipe.execute()
"""


def launched(argv: list[str], env: dict[str, str], report: Path) -> dict[str, Any]:
    """Wall time and peak RSS of one command, run under LAUNCHER."""
    done = subprocess.run(
        [sys.executable, "-S", "-c", LAUNCHER, str(report), *argv],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=600,
    )  # fmt: skip
    measured = json.loads(report.read_text())
    if done.returncode != 0 or measured["code"] != 0:
        raise RuntimeError(f"{argv[:3]} failed: {done.stderr[-2000:]!r}")
    return measured


def time_process(url: str, path: Path, runs: int) -> dict[str, Any]:
    """``chatgptes enqueue FILE`` as a user runs it: a new interpreter each time, from the
    command's start to its exit (the median of ``runs``), and its peak RSS (the most);
    the reference process right after it in each round."""
    env = {**os.environ, "CHATGPTES_REDIS_URL": url, "CHATGPTES_QUEUE_NAME": QUEUE}
    # -P: the checkout this runs from does not shadow a PYTHONPATH=/tmp/before
    command = ["-P", "-m", "chatgptes.cli", "enqueue", str(path)]
    client = redis.Redis.from_url(url)
    walls, peaks, cpus, raw_walls = [], [], [], []
    report = path.with_suffix(".run.json")
    try:
        for run in range(runs):
            client.flushdb()
            measured = launched([*command, "--batch-id", f"proc{run}"], env, report)
            walls.append(measured["wall"])
            peaks.append(measured["peak_rss_mib"])
            cpus.append(measured["cpu"])
            client.flushdb()
            raw = launched(["-P", "-c", RAW_PIPELINE, url, str(path)], env, report)
            raw_walls.append(raw["wall"])
    finally:
        client.flushdb()
        client.close()
    return {"wall": statistics.median(walls), "walls": walls, "peak_rss_mib": max(peaks),
            "cpu": statistics.median(cpus), "raw_wall": statistics.median(raw_walls),
            "raw_walls": raw_walls}  # fmt: skip


async def time_enqueue(url: str, lines: list[str], redis_pid: int) -> dict[str, float]:
    settings = QueueSettings(redis_url=url, queue_name=QUEUE)
    async with BatchQueue.connect(settings) as queue:
        redis_cpu = cpu_seconds(redis_pid)
        wall, cpu = time.perf_counter(), time.process_time()
        prompts = parse_prompt_lines(lines, default_model="gpt-4o", max_prompt_chars=32_000)
        validated = time.perf_counter() - wall
        await queue.enqueue(prompts, batch_id=BATCH_ID)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"wall": wall, "validate": validated, "cpu": cpu,
            "redis_cpu": cpu_seconds(redis_pid) - redis_cpu}  # fmt: skip


def results_for(prompts: list[PromptLine]) -> list[JobResult]:
    now = datetime.now(UTC)
    return [
        JobResult(job_id=f"{BATCH_ID}.{i}", batch_id=BATCH_ID, custom_id=line.custom_id,
                  status="succeeded", content=f"{ANSWER} ({i})", model=line.model, attempts=1,
                  enqueued_at=now, started_at=now, finished_at=now)
        for i, line in enumerate(prompts)
    ]  # fmt: skip


async def time_export(url: str, prompts: list[PromptLine], out: Path) -> dict[str, float]:
    """Stores a result for every prompt (as workers would), then times writing them out."""
    settings = QueueSettings(redis_url=url, queue_name=QUEUE)
    async with BatchQueue.connect(settings) as queue:
        results = results_for(prompts)
        for start in range(0, len(results), 1000):
            await queue.store.ledger.save_results(results[start : start + 1000])
        wall = time.perf_counter()
        written = 0
        with out.open("w") as handle:
            if hasattr(queue, "iter_raw_results"):  # the stored line is the native line
                async for raw in queue.iter_raw_results(BATCH_ID):
                    handle.write(raw.decode() + "\n")
                    written += 1
            else:
                async for result in queue.iter_results(BATCH_ID):
                    handle.write(result.model_dump_json() + "\n")
                    written += 1
        wall = time.perf_counter() - wall
    return {"wall": wall, "lines": written, "bytes": out.stat().st_size}


async def time_arq(url: str, payloads: list[dict[str, Any]]) -> tuple[int, float]:
    """(jobs enqueued, wall seconds) of arq's enqueue_job, one awaited call per job."""
    pool = await create_pool(RedisSettings.from_dsn(url), default_queue_name=ARQ_QUEUE,
                             job_serializer=lambda v: json.dumps(v).encode())  # fmt: skip
    try:
        start = time.perf_counter()
        done = 0
        for i, payload in enumerate(payloads):
            await pool.enqueue_job("noop", payload, _job_id=f"arq.{i}")
            done += 1
            if time.perf_counter() - start > ARQ_TIME_LIMIT:
                break
        return done, time.perf_counter() - start
    finally:
        await pool.aclose()


def measure_process(url: str, path: Path, count: int, runs: int) -> dict[str, Any]:
    process = time_process(url, path, runs)
    return {
        "process_runs": runs,
        "process_seconds": round(process["wall"], 3),
        "process_seconds_each": [round(w, 3) for w in process["walls"]],
        "process_lines_per_s": round(count / process["wall"]),
        "process_lines_per_s_best": round(count / min(process["walls"])),
        "process_cpu_seconds": round(process["cpu"], 3),
        "process_peak_rss_mib": round(process["peak_rss_mib"], 1),
        "raw_pipeline_seconds": round(process["raw_wall"], 3),
        "raw_pipeline_seconds_each": [round(w, 3) for w in process["raw_walls"]],
        "raw_pipeline_lines_per_s": round(count / process["raw_wall"]),
        "ratio_process_vs_raw_pipeline": round(process["raw_wall"] / process["wall"], 2),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "input_mib": round(path.stat().st_size / 2**20, 1),
    }


def measure(url: str, redis_pid: int, lines: list[str], sample: int, out: Path) -> dict[str, Any]:
    client = redis.Redis.from_url(url)
    try:
        before = used_memory(client)
        enqueue = asyncio.run(time_enqueue(url, lines, redis_pid))
        bytes_per_prompt = (used_memory(client) - before) / len(lines)
        prompts = parse_prompt_lines(lines, default_model="gpt-4o", max_prompt_chars=32_000)
        export = asyncio.run(time_export(url, prompts, out))
        client.flushdb()
        payloads = [{"custom_id": p.custom_id, "messages": [m.model_dump() for m in p.messages]}
                    for p in prompts[:sample]]  # fmt: skip
        arq_before = used_memory(client)
        arq_jobs, arq_wall = asyncio.run(time_arq(url, payloads))
        arq_bytes = (used_memory(client) - arq_before) / arq_jobs
    finally:
        client.close()
    count = len(lines)
    return {
        "benchmark": "enqueue",
        "count": count,
        "validate_seconds": round(enqueue["validate"], 3),
        "validate_plus_write_seconds": round(enqueue["wall"], 3),
        "enqueue_prompts_per_s": round(count / enqueue["wall"]),
        "enqueue_client_cpu_seconds": round(enqueue["cpu"], 3),
        "enqueue_redis_cpu_seconds": round(enqueue["redis_cpu"], 3),
        "redis_bytes_per_queued_prompt": round(bytes_per_prompt),
        "export_seconds": round(export["wall"], 3),
        "export_lines_per_s": round(export["lines"] / export["wall"]),
        "export_mib": round(export["bytes"] / 2**20, 1),
        "arq_sample_jobs": arq_jobs,
        "arq_enqueue_jobs_per_s": round(arq_jobs / arq_wall),
        "ratio_enqueue_vs_arq": round((count / enqueue["wall"]) / (arq_jobs / arq_wall), 1),
        "arq_redis_bytes_per_job": round(arq_bytes),
        "producer_peak_rss_mib": round(peak_rss_mib(), 1),
    }


def report_process(f: dict[str, Any]) -> None:
    print(f"chatgptes enqueue of {f['count']:,} lines ({f['input_mib']} MiB) as a whole process, "
          f"median of {f['process_runs']}: {f['process_seconds']} s = "
          f"{f['process_lines_per_s']:,} lines/s (best run {f['process_lines_per_s_best']:,}/s), "
          f"CPU {f['process_cpu_seconds']} s; peak RSS {f['process_peak_rss_mib']} MiB "
          f"(runs: {f['process_seconds_each']})")  # fmt: skip
    print(f"reference, a raw redis-py pipeline writing the same lines, same rounds: "
          f"{f['raw_pipeline_seconds']} s = {f['raw_pipeline_lines_per_s']:,} lines/s "
          f"(runs: {f['raw_pipeline_seconds_each']}); enqueue/reference "
          f"{f['ratio_process_vs_raw_pipeline']}x; load average {f['load_average']}")  # fmt: skip


def report(f: dict[str, Any]) -> None:
    print(f"enqueue {f['count']:,} lines (validate {f['validate_seconds']} s + write): "
          f"{f['validate_plus_write_seconds']} s = {f['enqueue_prompts_per_s']:,} prompts/s; "
          f"client CPU {f['enqueue_client_cpu_seconds']} s, Redis CPU "
          f"{f['enqueue_redis_cpu_seconds']} s")  # fmt: skip
    print(f"arq enqueue_job ({f['arq_sample_jobs']:,} sample): {f['arq_enqueue_jobs_per_s']:,} "
          f"jobs/s; ours/arq {f['ratio_enqueue_vs_arq']}x")  # fmt: skip
    print(f"export {f['count']:,} results: {f['export_seconds']} s = "
          f"{f['export_lines_per_s']:,} lines/s ({f['export_mib']} MiB)")  # fmt: skip
    print(f"Redis bytes per queued prompt: ours {f['redis_bytes_per_queued_prompt']}, arq's "
          f"enqueue_job {f['arq_redis_bytes_per_job']}; producer peak RSS "
          f"{f['producer_peak_rss_mib']} MiB")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000, help="prompts to enqueue/export")
    parser.add_argument("--arq-sample", type=int, default=5_000, help="jobs for arq's enqueue_job")
    parser.add_argument("--process-runs", type=int, default=3,
                        help="cold runs of the chatgptes enqueue command (0: none)")  # fmt: skip
    parser.add_argument("--process-only", action="store_true",
                        help="only the whole-process runs (for a million lines)")  # fmt: skip
    parser.add_argument("--tiny", action="store_true", help="the smallest lines, no custom_id")
    args = parser.parse_args()
    if not 1 <= args.count <= 2_000_000 or not 1 <= args.arq_sample <= args.count:
        parser.error("need 1 <= --arq-sample <= --count <= 2,000,000")
    if args.process_only and args.process_runs < 1:
        parser.error("--process-only needs --process-runs >= 1")
    lines = (tiny_lines if args.tiny else prompt_lines)(args.count)
    figures: dict[str, Any] = {"benchmark": "enqueue", "count": args.count, "tiny": args.tiny}
    with tempfile.TemporaryDirectory() as tmp, redis_server(Path(tmp)) as (url, process):
        if args.process_runs:
            path = Path(tmp) / "prompts.jsonl"
            path.write_text("\n".join(lines) + "\n")
            figures.update(measure_process(url, path, args.count, args.process_runs))
            report_process(figures)
        if not args.process_only:
            results = Path(tmp) / "results.jsonl"
            figures.update(measure(url, process.pid, lines, args.arq_sample, results))
            report(figures)
    emit(figures)


if __name__ == "__main__":
    main()
