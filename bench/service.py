"""The service under load, for the bench scripts: workers started, a batch timed, costs read.

Works against the code on ``PYTHONPATH`` (or the checkout), old or new: it only uses
``producer.api.BatchQueue`` and the ``chatgptes worker`` command, and passes settings
through ``CHATGPTES_*`` variables, so the same script measures before and after.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from harness import cpu_seconds, http_json, peak_rss_mib

from contract.config import QueueSettings
from contract.models import Message
from producer.api import BatchQueue
from producer.inputs import PromptLine
from simulator.local import running

QUEUE = "bench:queue"
POLL_SECONDS = 0.05


def prompt_lines(count: int, tag: str) -> list[PromptLine]:
    """Distinct prompts (the simulator's ledger tells a duplicate answer from a new one)."""
    return [
        PromptLine(n + 1, f"{tag}-{n}", (Message(role="user", content=f"{tag} prompt {n}"),),
                   "gpt-4o")
        for n in range(count)
    ]  # fmt: skip


@dataclass
class Fleet:
    """Worker processes of one phase, with what they cost."""

    processes: list[subprocess.Popen[Any]] = field(default_factory=list)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def cpu(self) -> list[float]:
        return [cpu_seconds(pid) for pid in self.pids]

    def peak_rss_mib(self) -> float:
        return max(peak_rss_mib(pid) for pid in self.pids)


def worker_argv() -> list[str]:
    # -P: the checkout the bench runs from must not shadow the code on PYTHONPATH.
    return [sys.executable, "-P", "-m", "chatgptes", "worker"]


@contextmanager
def workers(count: int, env: dict[str, str], logs: Path) -> Iterator[Fleet]:
    fleet = Fleet()
    with ExitStack() as stack:
        for n in range(count):
            log = logs / f"worker-{n}-{time.monotonic_ns()}.log"
            fleet.processes.append(stack.enter_context(running(worker_argv(), log=log, env=env)))
        yield fleet


def worker_env(redis_url: str, site_url: str, **settings: object) -> dict[str, str]:
    env = {
        "CHATGPTES_REDIS_URL": redis_url,
        "CHATGPTES_QUEUE_NAME": QUEUE,
        "CHATGPTES_UPSTREAM_URL": site_url,
        "CHATGPTES_LOG_LEVEL": "WARNING",
        "CHATGPTES_LOG_FORMAT": "json",
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
    }
    env.update({f"CHATGPTES_{k.upper()}": str(v) for k, v in settings.items()})
    return env


Sampler = Callable[[float], None]  # called with the perf_counter the batch began at
SAMPLE_SECONDS = 0.2


async def _run_batch(
    url: str, lines: list[PromptLine], timeout: float, every: Sampler | None = None
) -> tuple[Any, str]:
    settings = QueueSettings(redis_url=url, queue_name=QUEUE)
    async with BatchQueue.connect(settings) as queue:
        began = time.perf_counter()
        batch = await queue.enqueue(lines)
        deadline = time.monotonic() + timeout
        sampled = 0.0
        while True:
            status = await queue.status(batch.batch_id)
            if every is not None and time.perf_counter() - sampled >= SAMPLE_SECONDS:
                sampled = time.perf_counter()
                every(began)
            if status.done or time.monotonic() > deadline:
                return status, batch.batch_id
            await asyncio.sleep(POLL_SECONDS)


def run_batch(url: str, count: int, tag: str, timeout: float, every: Sampler | None = None) -> Any:
    """Enqueues ``count`` prompts and waits for the batch; ``every`` samples on the way."""
    status, _ = asyncio.run(_run_batch(url, prompt_lines(count, tag), timeout, every))
    if not status.done:
        raise TimeoutError(f"batch {tag} not done in {timeout}s: {status}")
    return status


def flush(url: str) -> None:
    with redis.Redis.from_url(url) as client:
        client.flushdb()
        client.config_resetstat()


def command_calls(url: str) -> int:
    with redis.Redis.from_url(url, decode_responses=True) as client:
        stats = client.info("commandstats")
    return sum(int(v["calls"]) for v in stats.values())


def sim_counts(stats_url: str) -> dict[str, int]:
    stats = http_json(stats_url)
    replies = stats["replies"]
    identities = stats["identities"].values()
    return {
        "page": stats["requests"]["page"],
        "ajax": stats["requests"]["ajax"],
        "success": replies["success"],
        "rate_limited": replies["rate_limited"],
        "bans": replies["banned"],
        "violations": sum(i.get("violations", 0) for i in identities),
        "identities_used": sum(1 for i in identities if i.get("ajax", 0) > 0),
        "duplicates": stats.get("answered_duplicates", 0),
    }


@contextmanager
def profiled(pid: int, out: Path | None) -> Iterator[None]:
    """py-spy samples the process while the block runs (when ``out`` is given)."""
    if out is None or shutil.which("py-spy", path=str(Path(sys.executable).parent)) is None:
        yield
        return
    spy = Path(sys.executable).parent / "py-spy"
    argv = [str(spy), "record", "--pid", str(pid), "--rate", "250", "--format", "raw",
            "--output", str(out), "--nonblocking"]  # fmt: skip
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)  # py-spy attaches before the load starts
        yield
    finally:
        process.send_signal(2)
        process.wait(timeout=30)


_PACKAGES = ("curl_cffi", "redis", "arq", "pydantic", "json", "structlog", "asyncio",
             "worker", "contract", "producer")  # fmt: skip


def _package(frame: str) -> str:
    for package in _PACKAGES:
        if f"({package}/" in frame or f"/{package}/" in frame:
            return package
    return "event loop" if "selectors.py" in frame else "other"


def profile_summary(path: Path, top: int = 12) -> dict[str, Any]:
    """Where the samples went: own time by package and by function, and the exchange's share."""
    if not path.exists():
        return {}
    own: dict[str, int] = {}
    by_package: dict[str, int] = {}
    in_exchange = total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        own[frames[-1]] = own.get(frames[-1], 0) + count
        package = _package(frames[-1])
        by_package[package] = by_package.get(package, 0) + count
        if any("(worker/client.py" in frame for frame in frames):
            in_exchange += count
    if not total:
        return {}
    ranked = sorted(own.items(), key=lambda item: -item[1])[:top]
    return {
        "samples": total,
        "own_time_by_package": {
            p: round(n / total, 3) for p, n in sorted(by_package.items(), key=lambda i: -i[1])
        },
        "share_inside_the_http_exchange": round(in_exchange / total, 3),
        "own_time_top": [(name, round(n / total, 3)) for name, n in ranked],
    }


def measure(
    url: str, fleet: Fleet, stats_url: str, count: int, tag: str, timeout: float, *,
    redis_pid: int, sim_pid: int, profile: Path | None = None, every: Sampler | None = None,
) -> dict[str, Any]:  # fmt: skip
    """One timed batch, from its enqueue to its last result: prompts/s, CPU per prompt of
    each process, Redis calls, site counts."""
    sim_before = sim_counts(stats_url)
    calls_before = command_calls(url)
    cpu_before = fleet.cpu(), cpu_seconds(sim_pid), cpu_seconds(redis_pid)
    with profiled(fleet.pids[0], profile):
        start = time.perf_counter()
        status = run_batch(url, count, tag, timeout, every)
        wall = time.perf_counter() - start
    worker_cpu = sum(fleet.cpu()) - sum(cpu_before[0])
    sim_cpu, redis_cpu = (
        cpu_seconds(sim_pid) - cpu_before[1],
        cpu_seconds(redis_pid) - cpu_before[2],
    )
    sim_after = sim_counts(stats_url)
    site = {k: sim_after[k] - sim_before[k] for k in sim_after if k != "identities_used"}
    site["identities_used"] = sim_after["identities_used"]
    figures = {
        "prompts": count,
        "seconds": round(wall, 3),
        "prompts_per_s": round(count / wall, 1),
        "succeeded": status.succeeded,
        "failed": status.failed,
        "worker_cpu_ms_per_prompt": round(worker_cpu / count * 1000, 3),
        "simulator_cpu_ms_per_prompt": round(sim_cpu / count * 1000, 3),
        "redis_cpu_ms_per_prompt": round(redis_cpu / count * 1000, 3),
        "redis_commands_per_prompt": round((command_calls(url) - calls_before) / count, 2),
        "worker_peak_rss_mib": round(fleet.peak_rss_mib(), 1),
        "site": site,
        "requests_per_prompt": round((site["page"] + site["ajax"]) / count, 4),
    }  # fmt: skip
    if profile is not None:
        figures["profile"] = profile_summary(profile)
    return figures


def dump(path: Path | None, figures: dict[str, Any]) -> None:
    if path is not None:
        path.write_text(json.dumps(figures, indent=2, sort_keys=True))
