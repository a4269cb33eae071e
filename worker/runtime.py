"""One worker process: the chunks it holds, the prompts in them, and the loops that serve them.

``run_chunk`` is the whole life of an arq job: start the chunk (one Redis call),
run every prompt of it concurrently through the shared policy, and return once
each has its durable result. The loops beside it (the lease broker, the result
writer, the heartbeat) are what make the cost per prompt small: they batch the
Redis work of every prompt in flight into a few calls.

The heartbeat keeps the worker's claims alive while it lives and only then: its
leases, the arq in-progress keys of the chunks it holds, its entry in the worker
registry. A worker that dies stops renewing them, and within ``lease_ttl`` its
slots come back and its chunks run again on another worker.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from arq.worker import Retry
from pydantic import ValidationError
from redis.asyncio import Redis

from contract import keys
from contract.ledger import PromptLedger, StartedPrompt
from contract.models import (
    ChunkPayload,
    JobError,
    JobResult,
    PromptRequest,
    job_id_for,
    utc_now,
)
from contract.retrying import RedisBackoff, until_redis_answers
from contract.stopping import BatchStopper, stopped_result
from worker.broker import LeaseBroker
from worker.client import ChatGptEsClient, ClientOptions
from worker.config import WorkerConfig
from worker.leases import LeaseBook
from worker.metrics import WorkerMetrics
from worker.proxies import ProxyDefaults, ProxyPool
from worker.results import ResultWriter
from worker.runner import Attempts, PromptRunner
from worker.sessions import SessionCache

log = structlog.get_logger("chatgptes.worker")
REGISTER_EVERY_SECONDS = 60.0
EVENTS_TTL_SECONDS = 7 * 24 * 3600


@dataclass
class HeldChunk:
    job_id: str
    batch_id: str
    prompts: int
    unsettled: int = 0
    started: float = field(default_factory=time.monotonic)


class WorkerRuntime:
    def __init__(self, config: WorkerConfig, redis: Redis) -> None:
        self.config = config
        self.redis = redis
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"
        self.ledger = PromptLedger(redis, ttl_seconds=config.result_ttl_seconds)
        self.stopper = BatchStopper(
            redis, queue_name=config.queue_name, ttl_seconds=config.result_ttl_seconds
        )
        self.pool = ProxyPool(
            config.proxies,
            config.proxies_file,
            ProxyDefaults(
                config.proxy_max_inflight, config.proxy_rate_per_second, config.proxy_burst
            ),
        )
        self.book = LeaseBook(
            redis,
            fleet_cap=config.fleet_max_inflight,
            burst=config.proxy_burst,
            ttl_seconds=config.lease_ttl_seconds,
            backoff_base_seconds=config.cooldown_base_seconds,
            backoff_cap_seconds=config.cooldown_cap_seconds,
        )
        self.writer = ResultWriter(self.ledger)
        self.metrics = WorkerMetrics()
        self.broker = LeaseBroker(
            self.book,
            max_inflight=config.worker_max_inflight,
            capacity_wait_limit=config.capacity_wait_limit_seconds,
            waiting_after=config.lease_wait_seconds,
            on_waiting=self._on_waiting,
            metrics=self.metrics,
        )
        self.sessions = SessionCache(
            redis,
            ttl_seconds=config.session_ttl_seconds,
            max_uses=config.session_max_uses,
            wait_seconds=config.request_timeout_seconds,
            metrics=self.metrics,
        )
        self.client = ChatGptEsClient(
            ClientOptions(
                base_url=config.upstream_url,
                impersonate=config.impersonate,
                connect_timeout=config.connect_timeout_seconds,
                request_timeout=config.request_timeout_seconds,
                language_instruction=config.language_instruction,
                max_connections=config.worker_max_inflight,
            )
        )
        self.stopping = asyncio.Event()
        self.runner = PromptRunner(
            config, self.ledger, self.book, self.broker, self.sessions, self.client,
            self.stopping, self.metrics,
        )  # fmt: skip
        self.held: dict[str, HeldChunk] = {}
        self.metrics_port: int | None = None
        self._tasks: list[asyncio.Task[Any]] = []

    async def start(self) -> None:
        self.metrics_port = self.metrics.start_server(self.config.metrics_port)
        if self.metrics_port is not None:
            log.info("metrics.serving", port=self.metrics_port, path="/metrics")
        await until_redis_answers("register", lambda: self.book.register(self.pool.identities))
        self._tasks = [
            asyncio.create_task(self.broker.run(), name="broker"),
            asyncio.create_task(self.writer.run(), name="results"),
            asyncio.create_task(self._heartbeat(), name="heartbeat"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.client.close()
        self.metrics.stop_server()
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.zrem(keys.workers_seen(), self.worker_id)
                pipe.delete(keys.worker_info(self.worker_id))
                await pipe.execute()
        except Exception:  # a worker that cannot say goodbye still stops; its entry expires
            log.info("worker.goodbye_skipped")

    def drain(self) -> None:
        """Stops taking leases: prompts not yet sent go back to the queue, the rest finish."""
        self.stopping.set()
        self.broker.drain()

    @property
    def unsettled(self) -> int:
        """Prompts of the held chunks still to settle (sending, waiting or backing off)."""
        return sum(chunk.unsettled for chunk in self.held.values())

    def wants_chunks(self) -> bool:
        """Whether one more chunk keeps requests flowing rather than piling up here.

        Prompts settle one by one, so the worker takes the next chunk while the last
        ones of a chunk are still out: there is always a prompt ready for a free lease.
        """
        if self.stopping.is_set():
            return False
        if self.unsettled >= 2 * self.config.worker_max_inflight:
            return False
        # As many ready as are out: when the requests out now come back, their slots are
        # refilled at once; more would only wait beside them for capacity.
        return self.broker.waiting < max(16, len(self.broker.held))

    async def run_chunk(self, payload: ChunkPayload, job_id: str) -> dict[str, int]:
        """Runs every prompt of the chunk to its result; ``Retry`` hands unsent ones back."""
        held = HeldChunk(job_id, payload.batch_id, len(payload.indices), len(payload.indices))
        self.held[job_id] = held
        outcome = "handed back"
        try:
            done = await self._run_chunk(payload, held)
            outcome = "done"
            return done
        finally:
            self.held.pop(job_id, None)
            self.metrics.chunk_finished(outcome)
            log.info(
                "chunk.finished", chunk=job_id, batch_id=payload.batch_id, outcome=outcome,
                prompts=len(payload.indices), seconds=round(time.monotonic() - held.started, 3),
            )  # fmt: skip

    async def _run_chunk(self, payload: ChunkPayload, held: HeldChunk) -> dict[str, int]:
        batch_id = payload.batch_id
        start = await until_redis_answers(
            "chunk start", lambda: self.ledger.start_chunk(batch_id, payload.indices)
        )
        if start.batch_state is None:
            log.warning("chunk.batch_gone", batch_id=batch_id, prompts=len(payload.indices))
            return {"prompts": 0}
        enqueued_at = start.created_at
        requests: list[tuple[PromptRequest, Attempts]] = []
        unreadable: list[JobResult] = []
        for prompt in start.prompts:
            if prompt.state_before in ("succeeded", "failed", "cancelled"):
                continue
            found = _request_of(batch_id, prompt, enqueued_at)
            if isinstance(found, JobResult):
                unreadable.append(found)
            else:
                requests.append(found)
        held.unsettled = len(requests) + len(unreadable)
        why = _stopped_why(start.batch_state)
        if why is None and start.past_its_window:
            await until_redis_answers("expire", lambda: self.stopper.expire(batch_id))
            why = "expired"
        if why is not None:
            await self._save_all([stopped_result(request, why) for request, _ in requests])
            await self._save_all(unreadable)
            return {"prompts": len(requests) + len(unreadable)}
        outcomes = await asyncio.gather(
            *(self._run_prompt(request, attempts, held) for request, attempts in requests),
            *(self._save(result) for result in unreadable),
        )
        handed_back = [
            request for request, done in zip(requests, outcomes, strict=False) if not done
        ]
        if handed_back:
            for request, _ in handed_back:
                self.writer.mark(batch_id, request.index, "queued")
            await self.writer.flush_marks()
            log.info("chunk.handed_back", batch_id=batch_id, prompts=len(handed_back))
            raise Retry()  # arq puts the chunk back where it was; settled prompts are skipped
        return {"prompts": len(requests)}

    async def _run_prompt(
        self, request: PromptRequest, attempts: Attempts, held: HeldChunk
    ) -> bool:
        """True once the prompt has its durable result; False if it was handed back unsent."""
        # Each prompt runs in a task of its own, so these stay with this prompt's lines.
        structlog.contextvars.bind_contextvars(
            job_id=request.job_id, batch_id=request.batch_id, custom_id=request.custom_id
        )
        try:
            result = await self.runner.run(request, attempts)
            if result is None:
                return False
            await self._save(result)
            return True
        finally:
            held.unsettled -= 1

    async def _save(self, result: JobResult) -> bool:
        await self.writer.save(result)
        self.metrics.prompt_finished(result.status, result.error.type if result.error else None)
        return True

    async def _save_all(self, results: Sequence[JobResult]) -> None:
        await asyncio.gather(*(self._save(result) for result in results))

    def _on_waiting(self, batch_id: str, index: int, waiting: bool) -> None:
        self.writer.mark(batch_id, index, "waiting" if waiting else "running")

    async def _heartbeat(self) -> None:
        """Renews what this worker holds and reports in, every ``heartbeat_seconds``."""
        backoff = RedisBackoff("heartbeat")
        registered_at = time.monotonic()
        while True:
            try:
                await self._beat()
                if time.monotonic() - registered_at > REGISTER_EVERY_SECONDS or self.pool.reload():
                    await self.book.register(self.pool.identities)
                    registered_at = time.monotonic()
            except Exception as error:  # Redis away, or a bug: keep beating, say it sparingly
                await backoff.wait(error)
                continue
            backoff.reset()
            await asyncio.sleep(self.config.heartbeat_seconds)

    async def _beat(self) -> None:
        ttl_ms = int(self.config.lease_ttl_seconds * 1000)
        await self.book.renew(list(self.broker.held.values()))
        now_ms = int(time.time() * 1000)
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in self.held:
                pipe.pexpire(keys.arq_in_progress(job_id), ttl_ms)
            pipe.zadd(keys.workers_seen(), {self.worker_id: now_ms})
            pipe.hset(keys.worker_info(self.worker_id), mapping=self.report())
            pipe.pexpire(keys.worker_info(self.worker_id), ttl_ms * 4)
            pipe.zremrangebyscore(keys.workers_seen(), "-inf", now_ms - ttl_ms * 4)
            pipe.pexpire(keys.workers_seen(), ttl_ms * 4)  # the last worker gone, it goes too
            await pipe.execute()
        await self.sessions.count_uses()
        for batch_id in await self.stopper.expire_due():
            log.info("batch.expired", batch_id=batch_id)
        self.metrics.gauges(
            in_flight=len(self.broker.held), waiting=self.broker.waiting, chunks=len(self.held)
        )
        if self.metrics_port is not None:  # only a scrape needs them: they visit every identity
            counts = await self.book.state_counts()
            counts["full"] = counts.pop("proxy_full", 0)
            self.metrics.identity_states(counts)
            self.metrics.queue_depth(await self.redis.zcard(self.config.queue_name))
        await self._add_up_fleet_counters()

    async def _add_up_fleet_counters(self) -> None:
        """This worker's errors by type and waits by reason, into the fleet's counters."""
        deltas = self.metrics.fleet_deltas()
        if not deltas:
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for name, count in deltas.items():
                    pipe.hincrby(keys.policy_events(), name, count)
                pipe.expire(keys.policy_events(), EVENTS_TTL_SECONDS)
                await pipe.execute()
        except BaseException:
            self.metrics.restore_fleet_deltas(deltas)  # counted at the next beat instead
            raise

    def report(self) -> dict[str, str | int]:
        """This worker as ``chatgptes workers`` shows it."""
        host, _, pid = self.worker_id.rpartition(":")
        return {
            "host": host,
            "pid": pid,
            "queue": self.config.queue_name,
            "in_flight": len(self.broker.held),
            "waiting": self.broker.waiting,
            "chunks": len(self.held),
            "prompts_held": self.unsettled,
            "chunks_done": self.metrics.chunks_done,
            "succeeded": self.metrics.prompts["succeeded"],
            "failed": self.metrics.prompts["failed"],
            "cancelled": self.metrics.prompts["cancelled"],
            "last_seen": int(time.time() * 1000),
            "heartbeat_seconds": self.config.heartbeat_seconds,
            "metrics_port": self.metrics_port or "",
            "stopping": int(self.stopping.is_set()),
        }


def _stopped_why(batch_state: str | None) -> str | None:
    """Why nothing more of a batch in this state may be sent (None: it may)."""
    if batch_state in ("cancelling", "cancelled"):
        return "cancelled"
    if batch_state in ("expiring", "expired"):
        return "expired"
    return None


def _request_of(
    batch_id: str, prompt: StartedPrompt, enqueued_at: datetime | None
) -> tuple[PromptRequest, Attempts] | JobResult:
    """The prompt's request and attempts, or a failed result if its record is unreadable."""
    try:
        request = PromptRequest.from_stored(
            prompt.request_json or b"", batch_id=batch_id, index=prompt.index,
            enqueued_at=enqueued_at or utc_now(),
        )  # fmt: skip
    except (ValidationError, ValueError):
        return _unreadable(batch_id, prompt.index, enqueued_at)
    return request, _attempts_of(prompt.attempts_json)


def _attempts_of(raw: bytes | None) -> Attempts:
    if not raw:
        return Attempts()
    try:
        data = json.loads(raw)
        started = data.get("started_at")
        return Attempts(
            total=int(data.get("total", 0)),
            started_at=datetime.fromtimestamp(float(started), UTC) if started else None,
        )
    except (ValueError, TypeError, AttributeError):
        return Attempts()


def _unreadable(batch_id: str, index: int, enqueued_at: datetime | None) -> JobResult:
    return JobResult(
        job_id=job_id_for(batch_id, index),
        batch_id=batch_id,
        custom_id="",
        status="failed",
        error=JobError(
            type="BadRequestData", message="the stored request is not one this worker can read"
        ),
        model="",
        enqueued_at=enqueued_at or utc_now(),
        finished_at=utc_now(),
    )
