"""One prompt's way through the policy: lease, session, exchange, outcome, result.

The runner asks the policy for a lease and hands back the outcome; the policy
decides waits, cooldowns and rotation. It returns only when the prompt has its
one result, or raises arq's ``Retry`` to come back later (a capacity wait or a
backoff), which spends no failure budget.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from arq.worker import Retry
from redis.asyncio import Redis
from redis.exceptions import RedisError

from contract import keys
from contract.batches import BatchStore
from contract.models import JobError, JobResult, PromptRequest
from contract.redaction import redact_text
from worker.client import ChatGptEsClient
from worker.config import WorkerConfig
from worker.connections import HttpSessions
from worker.errors import SessionStale, UpstreamError, Verdict
from worker.health import NEUTRAL, OK, cooldown_for
from worker.leases import Lease, LeaseBook, NoCapacity
from worker.proxies import Identity, ProxyPool
from worker.sessions import SessionStore

log = structlog.get_logger("chatgptes.worker")
WAIT_LOG_INTERVAL = 10.0
REDIS_ERROR_DEFER_SECONDS = 5.0


class CapacityExhausted(Exception):
    """The job found no capacity for longer than ``capacity_wait_limit_seconds``."""


@dataclass
class Policy:
    """The shared policy as the runner sees it."""

    config: WorkerConfig
    pool: ProxyPool
    leases: LeaseBook
    sessions: SessionStore


class PromptRunner:
    def __init__(
        self,
        redis: Redis,
        batches: BatchStore,
        policy: Policy,
        client: ChatGptEsClient,
        http: HttpSessions,
    ) -> None:
        self.redis = redis
        self.batches = batches
        self.policy = policy
        self.config = policy.config
        self.client = client
        self.http = http
        self._wait_logged_at: dict[str, float] = {}

    async def run(self, request: PromptRequest) -> None:
        """Runs one prompt to its result, or raises ``Retry`` to come back later."""
        structlog.contextvars.bind_contextvars(
            job_id=request.job_id, batch_id=request.batch_id, custom_id=request.custom_id
        )
        started = await self.batches.start(request)
        if started is None:
            log.info("job.skipped", reason="already has a result or was cancelled")
            return
        started_at = datetime.fromtimestamp(started[0], UTC)
        attempts_before = started[1]
        try:
            async with asyncio.timeout(self.config.job_timeout_seconds):
                result = await self._attempt_until_settled(request, started_at, attempts_before)
        except TimeoutError:
            error = JobError(
                type="JobTimeout", message=f"no result within {self.config.job_timeout_seconds}s"
            )
            result = await self._failed(request, started_at, error)
        except CapacityExhausted as exhausted:
            error = JobError(type="NoCapacity", message=str(exhausted))
            result = await self._failed(request, started_at, error)
        except (asyncio.CancelledError, Retry):
            await asyncio.shield(self.batches.unmark(request))
            raise
        except RedisError as error:
            log.warning("job.redis_error", error=redact_text(str(error)))
            raise Retry(defer=REDIS_ERROR_DEFER_SECONDS) from None
        except Exception as error:
            # A bug must still leave the job its one result, not a silent arq failure.
            log.exception("job.crashed")
            message = redact_text(f"{type(error).__name__}: {error}")
            result = await self._failed(
                request, started_at, JobError(type="WorkerError", message=message)
            )
        await self.batches.save_result(result)
        log.info("job.finished", status=result.status, attempts=result.attempts)

    async def _attempt_until_settled(
        self, request: PromptRequest, started: datetime, attempts_before: int
    ) -> JobResult:
        stale_retried = False
        total = attempts_before
        while True:
            lease = await self._lease(request)
            try:
                answer = await self._exchange(lease.identity, request)
            except UpstreamError as error:
                await self.policy.leases.release(lease, cooldown_for(error, self.config))
                spent, total = await self._spend(request, error.kind)
                log.warning(
                    "upstream.error", identity=lease.identity.name, error=error.kind,
                    detail=error.message, spent=spent, total=total,
                )  # fmt: skip
                if not error.retryable or spent > self.config.budget_for(error.kind):
                    return await self._failed(request, started, _job_error(error), total)
                if isinstance(error, SessionStale) and not stale_retried:
                    stale_retried = True
                    continue
                if error.verdict is not Verdict.NONE:
                    continue  # the identity is cooled now; the next lease goes elsewhere
                await self.batches.mark_waiting(request)
                raise Retry(defer=self._backoff(spent)) from None
            except BaseException:
                # Not the site's doing (shutdown, a Redis error): free the slot now, not at expiry.
                await asyncio.shield(self.policy.leases.release(lease, NEUTRAL))
                raise
            await self.policy.leases.release(lease, OK)
            # Success needs no write of its own: the attempts hash goes with the result.
            return JobResult.for_request(
                request, status="succeeded", content=answer, attempts=total + 1, started_at=started
            )

    async def _exchange(self, identity: Identity, request: PromptRequest) -> str:
        http = await self.http.get(identity)
        session = await self.policy.sessions.get(identity.name, lambda: self.client.handshake(http))
        try:
            return await self.client.ask(http, session, request.messages, request.model)
        except UpstreamError as error:
            if error.drops_session:
                await self.policy.sessions.drop(identity.name, session)
            raise

    async def _lease(self, request: PromptRequest) -> Lease:
        """A lease within the bounded wait, or a deferral that spends no failure budget."""
        deadline = time.monotonic() + self.config.lease_wait_seconds
        while True:
            self.policy.pool.reload()
            outcome = await self.policy.leases.try_acquire(self.policy.pool.identities)
            if isinstance(outcome, Lease):
                if outcome.is_probe:
                    log.info("identity.probe", identity=outcome.identity.name)
                return outcome
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                await self._defer_for_capacity(request, outcome)
            await asyncio.sleep(min(outcome.wait_seconds, remaining, 0.25))

    async def _defer_for_capacity(self, request: PromptRequest, refusal: NoCapacity) -> None:
        waited = await self._waiting_since(request)
        if waited > self.config.capacity_wait_limit_seconds:
            raise CapacityExhausted(
                f"no identity had capacity for {waited:.0f}s (last: {refusal.reason})"
            )
        self._log_wait(refusal)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hincrby(keys.policy_events(), "deferred_for_capacity", 1)
            pipe.hincrby(keys.policy_events(), f"no_capacity:{refusal.reason}", 1)
            await pipe.execute()
        await self.batches.mark_waiting(request)
        defer = max(refusal.wait_seconds, 0.5) * random.uniform(1.0, 1.5)
        raise Retry(defer=min(defer, 60.0))

    async def _waiting_since(self, request: PromptRequest) -> float:
        key = keys.attempts(request.job_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(key, "waiting_since", time.time())
            pipe.hget(key, "waiting_since")
            _, since = await pipe.execute()
        return time.time() - float(since)

    def _log_wait(self, refusal: NoCapacity) -> None:
        now = time.monotonic()
        if now - self._wait_logged_at.get(refusal.reason, 0.0) >= WAIT_LOG_INTERVAL:
            self._wait_logged_at[refusal.reason] = now
            log.warning(
                "capacity.waiting", reason=refusal.reason, retry_in=round(refusal.wait_seconds, 2)
            )

    async def _spend(self, request: PromptRequest, kind: str) -> tuple[int, int]:
        """Counts one failed attempt of ``kind``; returns (spent of kind, total)."""
        key = keys.attempts(request.job_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hincrby(key, kind, 1)
            pipe.hincrby(key, "total", 1)
            pipe.hdel(key, "waiting_since")
            spent, total, _ = await pipe.execute()
        return int(spent), int(total)

    def _backoff(self, spent: int) -> float:
        ceiling = min(self.config.backoff_cap_seconds, self.config.backoff_base_seconds * 2**spent)
        return max(0.1, random.uniform(0, ceiling))

    async def _failed(
        self, request: PromptRequest, started: datetime, error: JobError, total: int | None = None
    ) -> JobResult:
        if total is None:
            raw = await self.redis.hget(keys.attempts(request.job_id), "total")
            total = int(raw or 0)
        return JobResult.for_request(
            request, status="failed", error=error, attempts=total, started_at=started
        )


def _job_error(error: UpstreamError) -> JobError:
    return JobError(type=error.kind, message=error.message)
