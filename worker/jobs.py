"""The arq side: the job function, worker start-up and shut-down, and WorkerSettings.

Run with ``chatgptes worker`` or ``arq worker.jobs.WorkerSettings``; both run the
same settings and the same start-up, which adopts arq's running ``Worker`` into
``ChunkWorker``. arq has no hooks for what a queue of long chunks needs
(python-arq/arq#407: no heartbeat), so ChunkWorker overrides four things only:

- the in-progress key lives a lease TTL, renewed by the heartbeat, not the job
  timeout: a dead worker's chunks run again within seconds;
- the poll takes a chunk only while the worker's requests would otherwise run dry,
  skips chunks other workers hold in one call, and rides out a Redis restart;
- SIGTERM first drains (unsent prompts go back to the queue), then arq's own wait;
- a Redis error in arq's own bookkeeping is logged, never a crash.
"""

from __future__ import annotations

import json
import signal
import sys
from typing import Any

import structlog
from arq import func
from arq.constants import in_progress_key_prefix
from arq.utils import timestamp_ms
from arq.worker import Worker
from pydantic import ValidationError

from contract.chunks import JOB_FUNCTION, json_dumps
from contract.logs import configure_logging
from contract.models import ChunkPayload
from contract.redaction import redact_text
from contract.retrying import TRANSIENT, RedisBackoff, arq_redis_settings
from worker.config import WorkerConfig
from worker.proxies import ProxyDefaults, ProxyPool
from worker.runtime import WorkerRuntime

log = structlog.get_logger("chatgptes.worker")
# A chunk asks to run again (hand-back) through arq's Retry; budgets are ours, per prompt.
ARQ_MAX_TRIES = 1_000_000
HEAD_SCAN = 512  # queue entries looked at per poll for a chunk no other worker holds

# KEYS: queue. ARGV: now (ms), how many, in-progress key prefix, how far to look.
# The first chunks due that no worker holds (arq keeps held ones in the queue).
_FREE_CHUNKS = """
-- (A score of 0 or less is not a chunk: arq would never start it, so it must not block.)
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '(0', ARGV[1], 'LIMIT', 0, tonumber(ARGV[4]))
local free = {}
for _, id in ipairs(ids) do
  if redis.call('EXISTS', ARGV[3] .. id) == 0 then
    free[#free + 1] = id
    if #free >= tonumber(ARGV[2]) then break end
  end
end
return free
"""


async def run_chunk(ctx: dict[str, Any], payload: dict[str, Any]) -> dict[str, int]:
    """The arq job: every prompt of the chunk runs to its one result (or is handed back)."""
    try:
        chunk = ChunkPayload.model_validate(payload)
    except ValidationError as error:
        # No batch or index to store a result under: all that can be done is say so.
        log.error("chunk.unreadable", job_id=ctx.get("job_id"), error=str(error)[:500])
        return {"prompts": 0}
    runtime: WorkerRuntime = ctx["runtime"]
    return await runtime.run_chunk(chunk, ctx["job_id"])


class ChunkWorker(Worker):
    """arq's Worker, with the four changes the module docstring lists (see ``adopt``)."""

    runtime: WorkerRuntime
    _stopping: bool
    _redis_backoff: RedisBackoff
    _free_chunks: Any

    async def _poll_iteration(self) -> None:
        try:
            await self._take_chunks()
            self._reap_finished()
            await self.heart_beat()
        except TRANSIENT as error:
            await self._redis_backoff.wait(error)
            return
        self._redis_backoff.reset()

    async def _take_chunks(self) -> None:
        if self._stopping or not self.allow_pick_jobs or self.job_counter >= self.max_jobs:
            return
        if not self.runtime.wants_chunks():
            return
        free = await self._free_chunks(
            keys=[self.queue_name],
            args=[timestamp_ms(), 1, in_progress_key_prefix, HEAD_SCAN],
        )
        if free:
            await self.start_jobs(free)

    def _reap_finished(self) -> None:
        for job_id, task in list(self.tasks.items()):
            if task.done():
                del self.tasks[job_id]
                error = task.exception() if not task.cancelled() else None
                if error is not None:  # arq's own bookkeeping failed (Redis): the chunk re-runs
                    log.warning("chunk.bookkeeping_failed", job_id=job_id, error=repr(error)[:300])

    def handle_sig_wait_for_completion(self, signum: signal.Signals) -> None:
        if self._stopping:
            return  # a second signal while draining changes nothing
        self._stopping = True
        log.info(
            "worker.draining",
            signal=signal.Signals(signum).name,
            in_flight=len(self.runtime.broker.held),
            handed_back=self.runtime.broker.waiting,
            grace_seconds=self._job_completion_wait,
        )
        self.runtime.drain()
        super().handle_sig_wait_for_completion(signum)

    async def close(self) -> None:
        try:
            await super().close()
        except TRANSIENT as error:
            log.warning("worker.close_without_redis", error=redact_text(str(error)))


def adopt(worker: Worker, runtime: WorkerRuntime, config: WorkerConfig) -> ChunkWorker:
    """Turns arq's running Worker into a ChunkWorker serving ``runtime``."""
    if not isinstance(worker, ChunkWorker):
        worker.__class__ = ChunkWorker
    chunk_worker: ChunkWorker = worker  # type: ignore[assignment]
    chunk_worker.runtime = runtime
    chunk_worker._stopping = False
    chunk_worker._redis_backoff = RedisBackoff("poll")
    chunk_worker._free_chunks = worker.pool.register_script(_FREE_CHUNKS)
    # Held chunks are renewed by the heartbeat; a dead worker's expire within the lease TTL.
    chunk_worker.in_progress_timeout_s = config.lease_ttl_seconds
    if worker._handle_signals and worker._job_completion_wait:
        # arq bound its handlers to the old class's methods: bind them again.
        for signum in (signal.SIGINT, signal.SIGTERM):
            worker._add_signal_handler(signum, chunk_worker.handle_sig_wait_for_completion)
    return chunk_worker


def _running_worker() -> Worker | None:
    """The arq Worker whose ``main`` is calling us (on_startup runs inside it)."""
    frame = sys._getframe(1)
    while frame is not None:
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, Worker):
            return candidate
        frame = frame.f_back  # type: ignore[assignment]
    return None


async def startup(ctx: dict[str, Any]) -> None:
    config: WorkerConfig = ctx["config"]
    configure_logging(config.log_format, config.log_level)  # again: the arq command set its own
    runtime = WorkerRuntime(config, ctx["redis"])
    await runtime.start()
    ctx["runtime"] = runtime
    worker = _running_worker()
    if worker is not None:
        adopt(worker, runtime, config)
    else:  # not under arq's Worker.main: tests calling startup directly
        log.warning("worker.not_adopted")
    log.info(
        "worker.started",
        worker_id=runtime.worker_id,
        upstream=config.upstream_url,
        identities=len(runtime.pool.identities),
        shown=[identity.shown for identity in runtime.pool.identities[:5]],
        worker_max_inflight=config.worker_max_inflight,
        fleet_max_inflight=config.fleet_max_inflight,
    )


async def shutdown(ctx: dict[str, Any]) -> None:
    if "runtime" in ctx:
        await ctx["runtime"].stop()
    log.info("worker.stopped")


def worker_settings(config: WorkerConfig, **overrides: Any) -> dict[str, Any]:
    """Keyword arguments for ``arq.Worker``, tuned for chunks of I/O-bound prompts."""
    # A chunk may hold prompts that wait for capacity a long time: arq must not time it out.
    chunk_timeout = config.capacity_wait_limit_seconds + config.job_timeout_seconds + 60
    settings: dict[str, Any] = {
        "functions": [func(run_chunk, name=JOB_FUNCTION, max_tries=ARQ_MAX_TRIES)],
        "queue_name": config.queue_name,
        "redis_settings": arq_redis_settings(config.redis_url),
        "max_jobs": config.max_jobs or config.worker_max_inflight,
        "job_timeout": chunk_timeout,
        "keep_result": 0,
        "poll_delay": config.poll_delay_seconds,
        "max_tries": ARQ_MAX_TRIES,
        "job_completion_wait": config.shutdown_grace_seconds,
        "job_serializer": json_dumps,
        "job_deserializer": json.loads,
        "on_startup": startup,
        "on_shutdown": shutdown,
        "ctx": {"config": config},
        "log_results": False,
        "health_check_interval": config.heartbeat_seconds * 2,
        "expires_extra_ms": config.result_ttl_seconds * 1000,
    }
    settings.update(overrides)
    return settings


def run_worker(config: WorkerConfig, *, burst: bool = False, max_jobs: int | None = None) -> None:
    configure_logging(config.log_format, config.log_level)
    # Fail before arq starts if the proxies cannot be read: a clear error, not a crash loop.
    ProxyPool(config.proxies, config.proxies_file, ProxyDefaults(1, 0, 1))
    overrides: dict[str, Any] = {"burst": burst}
    if max_jobs is not None:
        overrides["max_jobs"] = max_jobs
    Worker(**worker_settings(config, **overrides)).run()


def __getattr__(name: str) -> Any:
    """``arq worker.jobs.WorkerSettings`` works too; settings are read when asked for."""
    if name == "WorkerSettings":
        config = WorkerConfig()
        configure_logging(config.log_format, config.log_level)
        return worker_settings(config)
    raise AttributeError(name)


__all__ = ["ChunkWorker", "adopt", "run_chunk", "run_worker", "worker_settings"]
