"""The arq side: the job function, the worker arq runs, and how it takes and ends chunks.

``chatgptes worker`` constructs a ``ChunkWorker``: arq's ``Worker`` given this
service's settings and a few public methods of its own. arq has no hooks for what a
queue of owned chunks needs (python-arq/arq#407: no heartbeat), so:

- arq's poll never picks jobs (``allow_pick_jobs`` stays False); the worker's own
  intake claims a chunk under a token when its requests would otherwise run dry, and
  hands it to arq's ``run_job`` like a picked job;
- ``finish_job`` and ``finish_failed_job`` end the worker's hold only if it still
  holds the chunk: a worker that lost a chunk changes nothing of it;
- ``heart_beat`` leaves arq's health key alone: the worker's own heartbeat renews its
  claims and reports it (``chatgptes workers --check``);
- ``run_job`` and ``close`` ride out a Redis that refuses arq's own bookkeeping;
- SIGTERM first drains (unsent prompts go back to the queue), then arq's own wait.

The module has no ``WorkerSettings``: arq's command builds a plain ``Worker``, which
knows none of the above. Run workers with ``chatgptes worker``.
"""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Any

import structlog
from arq import func
from arq.utils import timestamp_ms
from arq.worker import Retry, Worker
from pydantic import ValidationError

from contract.chunks import JOB_FUNCTION, json_dumps
from contract.logs import configure_logging
from contract.models import ChunkPayload
from contract.retrying import TRANSIENT, RedisBackoff, arq_pool, until_redis_answers
from worker.chunks import ChunkState
from worker.config import WorkerConfig
from worker.proxies import ProxyDefaults, ProxyPool
from worker.runtime import WorkerRuntime

log = structlog.get_logger("chatgptes.worker")
# A chunk handed back (the worker drains) runs again through arq's Retry, however often;
# a chunk whose holders lapse with it is stopped by its lapses (``chunk_lapse_limit``).
HAND_BACKS_ALLOWED = 1_000_000
EXIT_LOOP_DIED = 70  # EX_SOFTWARE: a loop of the worker died; its log line says which


async def run_chunk(ctx: dict[str, Any], payload: dict[str, Any]) -> dict[str, int]:
    """The arq job: every prompt of the chunk runs to its one result (or is handed back)."""
    runtime: WorkerRuntime = ctx["runtime"]
    claim = runtime.claim_of(ctx["job_id"])
    if claim is None:  # not claimed by this worker's intake: nothing of it is run here
        log.error("chunk.not_claimed", chunk=ctx["job_id"])
        raise Retry()
    try:
        chunk = ChunkPayload.model_validate(payload)
    except ValidationError as error:
        # No batch or index to store a result under: it is discarded, and the stranded
        # sweep queues again whatever prompts of its batch no chunk carries.
        log.error("chunk.unreadable", chunk=ctx["job_id"], error=str(error)[:500])
        runtime.unreadable_chunk(ctx["job_id"])
        return {"prompts": 0}
    state = await runtime.run_chunk(chunk, claim)
    # How it ended is the chunk's own state (``end_chunk`` reads it), not arq's verdict.
    return {"prompts": len(chunk.indices), "ended": state.value}


class ChunkWorker(Worker):
    """arq's Worker serving one ``WorkerRuntime`` (see the module docstring)."""

    def __init__(self, config: WorkerConfig, **overrides: Any) -> None:
        self.config = config
        pool = arq_pool(config.redis_url)
        pool.job_serializer = json_dumps
        pool.job_deserializer = json.loads
        pool.default_queue_name = config.queue_name
        self.runtime = WorkerRuntime(config, pool)
        self.runtime.on_failure = self._loop_died
        self.exit_code = 0
        self._intake_backoff = RedisBackoff("intake")
        settings: dict[str, Any] = {
            "functions": [func(run_chunk, name=JOB_FUNCTION, max_tries=HAND_BACKS_ALLOWED)],
            "queue_name": config.queue_name,
            "redis_pool": pool,
            # A chunk may hold prompts that wait for capacity a long time: no arq timeout.
            "job_timeout": config.capacity_wait_limit_seconds + config.job_timeout_seconds + 60,
            "keep_result": 0,
            "poll_delay": 0.5,  # arq's own poll only reaps finished chunks: no hurry
            "max_tries": HAND_BACKS_ALLOWED,
            "job_completion_wait": config.shutdown_grace_seconds,
            "job_serializer": json_dumps,
            "job_deserializer": json.loads,
            "on_startup": self._start,
            "on_shutdown": self._stop,
            "ctx": {"config": config, "runtime": self.runtime},
            "log_results": False,
            "expires_extra_ms": config.result_ttl_seconds * 1000,
        }
        super().__init__(**{**settings, **overrides})
        self.allow_pick_jobs = False  # the intake claims chunks; arq's poll never picks one

    async def main(self) -> None:
        """arq's main, once Redis answers: its first command (an INFO) would end a worker
        started while Redis restarts with exit 1, where a running worker rides it out.
        Past ``redis_startup_wait_seconds`` the error stands (a wrong URL says so)."""
        await until_redis_answers(
            "start", self.pool.ping, within=self.config.redis_startup_wait_seconds
        )
        await super().main()

    async def _start(self, ctx: dict[str, Any]) -> None:
        configure_logging(self.config.log_format, self.config.log_level)
        await self.runtime.start(intake=self._intake)
        log.info(
            "worker.started",
            worker_id=self.runtime.worker_id,
            upstream=self.config.upstream_url,
            sites=self.runtime.sites.names,
            identities=len(self.runtime.sites.identities),
            shown=[identity.shown for identity in self.runtime.sites.identities[:5]],
            worker_max_inflight=self.config.worker_max_inflight,
            fleet_max_inflight=self.config.fleet_max_inflight,
            claim_ttl_seconds=self.config.claim_ttl_seconds,
        )
        for old, new in self.config.deprecated_in_use():
            log.warning(
                "settings.deprecated", setting=f"CHATGPTES_{old.upper()}",
                use=f"CHATGPTES_{new.upper()}",
            )  # fmt: skip

    async def _stop(self, ctx: dict[str, Any]) -> None:
        await self.runtime.stop()
        log.info("worker.stopped", exit_code=self.exit_code)

    async def _intake(self) -> None:
        """Claims a chunk whenever the worker's requests would otherwise run dry; with
        nothing to claim, sleeps on the queue's work marker until a chunk is made
        claimable or a held one may lapse (no polling of the queue)."""
        idle = self.config.poll_delay_seconds
        while True:
            if not self.runtime.wants_chunks():
                await asyncio.sleep(idle)  # a look at this worker's own state, not Redis
                continue
            try:
                claims = await self.runtime.take_chunks(1)
                if not claims:
                    await self.runtime.wait_for_work()
            except TRANSIENT as error:
                await self._intake_backoff.wait(error)
                continue
            self._intake_backoff.reset()
            for claim in claims:
                self.tasks[claim.key] = self.loop.create_task(
                    self.run_job(claim.key, timestamp_ms())
                )
            await asyncio.sleep(0)  # let the chunk start before looking again

    async def run_job(self, job_id: str, score: int) -> None:
        """arq's run_job; a Redis that refuses its own bookkeeping (reading the job,
        counting the try) hands the chunk back instead of crashing the worker."""
        try:
            await super().run_job(job_id, score)
        except TRANSIENT as error:
            log.warning("chunk.bookkeeping_refused", chunk=job_id, error=type(error).__name__)
            await self.runtime.end_chunk(job_id, unfinished=ChunkState.HANDED_BACK)

    async def close(self) -> None:
        try:
            await super().close()
        except TRANSIENT as error:  # a worker that cannot say goodbye still stops
            log.warning("worker.close_without_redis", error=type(error).__name__)

    async def heart_beat(self) -> None:
        """Nothing: the runtime's heartbeat renews the claims and reports the worker."""

    async def finish_job(
        self,
        job_id: str,
        finish: bool,
        result_data: bytes | None,
        result_timeout_s: float | None,
        keep_result_forever: bool,
        incr_score: int | None,
        keep_in_progress: float | None,
    ) -> None:
        # ``finish`` is arq's word (a job timeout counts as finished): the chunk's own state
        # says how it ended, and a chunk cut short is a lapse (worker.chunks).
        await self.runtime.end_chunk(job_id, defer_ms=incr_score or 0)

    async def finish_failed_job(self, job_id: str, result_data: bytes | None) -> None:
        # arq could not run it (its job is gone or unreadable): it leaves the queue.
        log.warning("chunk.refused_by_arq", chunk=job_id)
        self.runtime.unreadable_chunk(job_id)
        await self.runtime.end_chunk(job_id)

    def handle_sig_wait_for_completion(self, signum: signal.Signals) -> None:
        if not self.runtime.drain():
            return  # a second signal while draining changes nothing
        log.info(
            "worker.draining",
            signal=signal.Signals(signum).name,
            in_flight=len(self.runtime.broker.held),
            handed_back=self.runtime.broker.waiting,
            grace_seconds=self._job_completion_wait,
        )
        super().handle_sig_wait_for_completion(signum)

    def _loop_died(self) -> None:
        """A loop of the runtime died (logged with its traceback): the worker goes down."""
        if self.exit_code:
            return
        self.exit_code = EXIT_LOOP_DIED
        self.runtime.drain()
        self.handle_sig(signal.SIGTERM)


def use_uvloop() -> None:
    """The worker's event loop is uvloop's where it is installed (Linux, macOS): curl_cffi
    drives its sockets through the loop's readers, writers and timers, and uvloop does
    those in C (bench_throughput.py zero: docs/benchmarks.md)."""
    try:
        import uvloop
    except ImportError:  # e.g. Windows: asyncio's own loop, the same worker, a little slower
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def run_worker(config: WorkerConfig, *, burst: bool = False, max_jobs: int | None = None) -> int:
    """Runs a worker until it is stopped; returns its exit code."""
    configure_logging(config.log_format, config.log_level)
    # Fail before arq starts if the proxies cannot be read: a clear error, not a crash loop.
    ProxyPool(config.proxies, config.proxies_file, ProxyDefaults(1, 0, 1))
    if max_jobs is not None:
        config = config.model_copy(update={"max_jobs": max_jobs})
    use_uvloop()
    worker = ChunkWorker(config, burst=burst)
    try:
        worker.run()
    except asyncio.CancelledError:
        # arq's close can end in a cancellation while a worker whose loop died goes down:
        # the exit code still says why it went (70), not a traceback's 1.
        log.warning("worker.close_cancelled", exit_code=worker.exit_code)
    return worker.exit_code


__all__ = ["ChunkWorker", "run_chunk", "run_worker"]
