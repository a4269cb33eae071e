"""One prompt's way through the policy: lease, session, exchange, outcome, result.

The runner asks the broker for a lease and hands back the outcome; the broker and
the lease book decide waits, cooldowns and rotation. Every failure is charged to
the identity that carried it: a bad exit cools and the prompt moves on to another;
the prompt itself spends its budget only on what could be the site's fault, and
fails only when that budget is gone.

Nothing is sent under a claim the worker may have lost: right before the page GET
and the POST, the chunk's claim and the lease must both still be known good
(``Claim.valid``), and right before the POST the batch must be known running within
``SEND_WINDOW_SECONDS`` (``LeaseBroker.confirm_running``: nothing of a cancelled batch
reaches the site once ``cancel`` returned). If a claim's time is up, the runner gives
the lease back and waits for the next renewal to say whether the chunk is still this
worker's; a chunk that was lost ends its prompts here, unsent (``ChunkLost``), for its
new holder to run.

``run`` returns the prompt's one result, or None when the worker drains and the
prompt goes back to the queue unsent. While the POST is on the wire the prompt's
index is in ``chunk.sending``: the worker lets those finish whatever else happens.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from contract.errors import ServiceError
from contract.ledger import PromptLedger
from contract.models import JobError, JobResult, PromptRequest
from contract.redaction import redact_text
from contract.retrying import TRANSIENT, RedisBackoff, until_redis_answers
from contract.stopping import stopped_result
from worker.broker import BatchStopped, Draining, LeaseBroker, NoCapacityError
from worker.chunks import HeldChunk
from worker.config import WorkerConfig
from worker.errors import SessionStale, UpstreamError, Verdict
from worker.leases import Lease
from worker.lifecycle import Lifecycle
from worker.metrics import WorkerMetrics
from worker.prompt import Shaped
from worker.sessions import SessionCache, SiteSession
from worker.sites import SiteSet
from worker.tokens import usage_of

log = structlog.get_logger("chatgptes.worker")
# Failures that are the exit's alone: the prompt moves to another at once, no backoff.
_MOVE_ON = (Verdict.COOL, Verdict.QUARANTINE, Verdict.DOWN)


class ChunkLost(ServiceError):
    """The worker no longer holds the prompt's chunk: its new holder runs the prompt."""


class _NotHeld(Exception):
    """The chunk's claim or the lease is not known good right now: nothing may be sent."""


class _Late(Exception):
    """The lease waited for another prompt's handshake: its moment in the identity's rate
    has passed, and every prompt that waited would reach the site at once. It is given
    back and a new one taken, paced like any other."""


@dataclass
class Attempts:
    """Failed attempts so far (kept in Redis across re-runs of the chunk) and when it began."""

    total: int = 0
    started_at: datetime | None = None


class PromptRunner:
    def __init__(
        self,
        config: WorkerConfig,
        ledger: PromptLedger,
        broker: LeaseBroker,
        sessions: SessionCache,
        sites: SiteSet,
        lifecycle: Lifecycle,
        metrics: WorkerMetrics,
    ) -> None:
        self.config = config
        self.ledger = ledger
        self.broker = broker
        self.sessions = sessions
        self.sites = sites
        self.lifecycle = lifecycle
        self.metrics = metrics

    async def run(
        self, request: PromptRequest, attempts: Attempts, chunk: HeldChunk
    ) -> JobResult | None:
        """The prompt's one result, or None if it goes back to the queue unsent.

        Raises ``ChunkLost`` when its chunk is no longer this worker's."""
        started = attempts.started_at or datetime.now(UTC)
        if request.site is not None and request.site not in self.sites:
            known = ", ".join(self.sites.names)
            message = f"the prompt is pinned to site {request.site!r}; this fleet's are {known}"
            return _failed(request, started, JobError(type="UnknownSite", message=message), 0)
        try:
            return await self._until_settled(request, started, attempts, chunk)
        except BatchStopped as stopped:
            return stopped_result(request, stopped.why)
        except (Draining, ChunkLost, asyncio.CancelledError):
            raise
        except NoCapacityError as error:
            error_ = JobError(type="NoCapacity", message=str(error))
        except TimeoutError:
            message = f"no result within {self.config.job_timeout_seconds:.0f}s of sending"
            error_ = JobError(type="JobTimeout", message=message)
        except Exception as error:
            # A bug must still leave the prompt its one result, not a silent failure.
            log.exception("prompt.crashed")
            error_ = JobError(
                type="WorkerError", message=redact_text(f"{type(error).__name__}: {error}")
            )
        return _failed(request, started, error_, attempts.total)

    async def _until_settled(
        self, request: PromptRequest, started: datetime, attempts: Attempts, chunk: HeldChunk
    ) -> JobResult:
        stale_retried = False
        redis_backoff = RedisBackoff(f"prompt {request.job_id}")
        active = 0.0  # time spent sending or backing off; waiting for capacity is free
        while True:
            if active > self.config.job_timeout_seconds:
                raise TimeoutError
            lease = await self.broker.lease(request.batch_id, request.index, request.site)
            began = time.monotonic()
            try:
                async with asyncio.timeout(self.config.job_timeout_seconds - active):
                    answer = await self._exchange(lease, request, chunk)
            except _NotHeld:
                self.broker.unused(lease)
                if not await chunk.claim.settle():
                    raise ChunkLost from None
                continue
            except _Late:
                self.broker.unused(lease)
                continue
            except UpstreamError as error:
                self.broker.failed(lease, error)
                self.metrics.upstream_error(error.kind, lease.identity.site)
                kind = error.kind
                # The attempt as the prompt's page shows it: the identity by its redacted name.
                said = {"identity": lease.identity.name, "message": redact_text(error.message),
                        "site": lease.identity.site}  # fmt: skip
                spent, attempts.total = await until_redis_answers(
                    "attempts",
                    lambda kind=kind, said=said: self.ledger.spend(  # type: ignore[misc]
                        request.batch_id, request.index, kind, started, **said
                    ),
                )
                log.warning(
                    "upstream.error", error=error.kind, detail=error.message, spent=spent,
                    attempt=attempts.total, identity=lease.identity.name,
                )  # fmt: skip
                if not error.retryable or spent > self.config.budget_for(error.kind):
                    return _failed(request, started, _job_error(error), attempts.total,
                                   site=lease.identity.site)  # fmt: skip
                active += time.monotonic() - began
                if isinstance(error, SessionStale) and not stale_retried:
                    stale_retried = True
                    continue
                if error.verdict in _MOVE_ON:
                    continue  # that exit rests now; the next lease goes to another
                pause = self._backoff(spent)
                active += pause
                await self._pause(pause)
                continue
            except TRANSIENT as error:
                # Redis went away mid-exchange (the session, a rate charge): not the site's
                # doing, and no budget spent; the prompt tries again when Redis is back.
                self.broker.unused(lease)
                await redis_backoff.wait(error)
                continue
            except BaseException:
                # Not the site's doing (shutdown, a timeout, a bug): free the slot now.
                self.broker.unused(lease)
                raise
            self.broker.succeeded(lease)
            return JobResult.for_request(
                request,
                status="succeeded",
                content=answer.text,
                attempts=attempts.total + 1,
                started_at=started,
                usage=usage_of(request, answer.text),
                cut=answer.cut,
                tool_calls=answer.tool_calls,
                site=lease.identity.site or None,
            )

    async def _exchange(self, lease: Lease, request: PromptRequest, chunk: HeldChunk) -> Shaped:
        identity = lease.identity
        ready = self.sessions.ready(identity.name)
        handshook = []

        async def handshake() -> SiteSession:
            handshook.append(True)
            return await self._handshake(lease, chunk)

        session = await self.sessions.get(identity.name, handshake)
        if not ready and not handshook:
            raise _Late  # waited for another prompt's page GET (see _Late)
        await self.broker.on_time(lease)
        while True:  # a read of the batch's mark slower than the send window: read again
            await self.broker.confirm_running(lease, request.batch_id)
            self._may_send(lease, chunk)  # nothing awaited between this check and the send
            if self.broker.fresh(lease):
                break
        chunk.sending.add(request.index)  # from here on the request may reach the site
        began = time.monotonic()
        try:
            return await self.sites.client_for(identity).ask(
                identity, session, request.messages, request.model, request.params
            )
        except BaseException as error:
            chunk.sending.discard(request.index)
            if isinstance(error, UpstreamError) and error.drops_session:
                await self.sessions.drop(identity.name, session)
            raise
        finally:
            self.metrics.request_finished("ajax", time.monotonic() - began)

    async def _handshake(self, lease: Lease, chunk: HeldChunk) -> SiteSession:
        await self.broker.on_time(lease)
        self._may_send(lease, chunk)
        began = time.monotonic()
        try:
            session = await self.sites.client_for(lease.identity).handshake(lease.identity)
        finally:
            self.metrics.request_finished("page", time.monotonic() - began)
        await self.broker.charge(lease)  # the page GET was one more request from this exit
        return session

    def _may_send(self, lease: Lease, chunk: HeldChunk) -> None:
        """Right before a request leaves (after its pace and any read of its batch's mark,
        with nothing awaited between this and the send): only while the worker runs (a
        drain takes no new request: ``Draining``) and the chunk's claim and the lease are
        both known good (else ``_NotHeld``)."""
        if not self.lifecycle.running:
            raise Draining
        if not (chunk.claim.valid() and lease.claim.valid()):
            raise _NotHeld

    def _backoff(self, spent: int) -> float:
        ceiling = min(self.config.backoff_cap_seconds, self.config.backoff_base_seconds * 2**spent)
        return max(0.05, random.uniform(0, ceiling))

    async def _pause(self, seconds: float) -> None:
        """Sleeps a backoff, cut short when the worker drains (the prompt is handed back)."""
        try:
            await asyncio.wait_for(self.lifecycle.draining.wait(), seconds)
        except TimeoutError:
            return
        raise Draining


def _job_error(error: UpstreamError) -> JobError:
    return JobError(type=error.kind, message=error.message)


def _failed(
    request: PromptRequest, started: datetime, error: JobError, total: int, *, site: str = ""
) -> JobResult:
    return JobResult.for_request(
        request, status="failed", error=error, attempts=total, started_at=started,
        site=site or None,
    )  # fmt: skip
