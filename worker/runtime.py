"""One worker process: the chunks it holds, the prompts in them, and the loops that serve them.

``run_chunk`` runs a chunk (``worker.chunks.HeldChunk`` holds its life): start it
(one Redis call), run every prompt of it concurrently through the shared policy, and
return once each has its durable result (done), once the unsent ones are to go back to
the queue (handed back: the worker drains), or once the chunk is no longer this
worker's (lost). ``end_chunk`` then ends it as its state says, and only so.
The loops beside it, each watched by the supervisor, are what make the cost per
prompt small and the claims safe:

- the lease broker batches every prompt's lease traffic into few Redis calls;
- the result writer batches the results;
- the heartbeat renews the chunk claims and the leases, and nothing else;
- the housekeeper does the chores, in bounded steps.

A chunk is held under a claim (``worker.claims``). When the heartbeat finds one lost
(the worker was frozen or cut off past the claim's TTL and another worker took the
chunk), the chunk's prompts that are not on the wire are cancelled at once, unsent;
those on the wire finish and their results are stored (the first result wins).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

import structlog
from redis.asyncio import Redis

from contract import keys
from contract.chunks import ChunkQueue
from contract.ledger import PromptLedger
from contract.models import (
    ChunkPayload,
    JobError,
    JobResult,
    PromptRequest,
    stored_prompt,
    utc_now,
)
from contract.retrying import until_redis_answers
from contract.states import FINAL_STATES
from contract.stopping import BatchStopper, stopped_result
from worker.broker import Draining, LeaseBroker, Rests
from worker.chunks import ChunkState, HeldChunk
from worker.claims import IDLE_WAIT_SECONDS, ChunkClaim, ChunkClaims
from worker.config import WorkerConfig
from worker.heartbeat import Heartbeat
from worker.housekeeping import Housekeeper
from worker.lifecycle import Lifecycle
from worker.metrics import WorkerMetrics
from worker.results import ResultWriter
from worker.runner import Attempts, ChunkLost, PromptRunner
from worker.sessions import SessionCache
from worker.sites import SiteSet
from worker.supervision import Supervisor
from worker.webhooks import WebhookDeliverer, WebhookOptions

log = structlog.get_logger("chatgptes.worker")


class WorkerRuntime:
    def __init__(self, config: WorkerConfig, redis: Redis) -> None:
        self.config = config
        self.redis = redis
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"
        self.lifecycle = Lifecycle()
        ttl = config.result_ttl_seconds
        self.ledger = PromptLedger(redis, ttl_seconds=ttl)
        self.stopper = BatchStopper(
            redis, queue_name=config.queue_name, ttl_seconds=ttl, ledger=self.ledger
        )
        self.queue = ChunkQueue(redis, queue_name=config.queue_name, ttl_seconds=ttl)
        self.claims = ChunkClaims(
            redis, queue_name=config.queue_name, ttl_seconds=config.claim_ttl_seconds,
            keep_seconds=ttl,
        )  # fmt: skip
        self.sites = SiteSet(config, redis)
        # The fleet's first site's identities, book and client (a fleet of one has no other).
        first = self.sites.first
        self.pool, self.book, self.client = first.pool, first.book, first.client
        self.writer = ResultWriter(self.ledger)
        self.metrics = WorkerMetrics()
        self.sessions = SessionCache(
            redis,
            ttl_seconds=config.session_ttl_seconds,
            max_uses=config.session_max_uses,
            wait_seconds=config.request_timeout_seconds,
            metrics=self.metrics,
        )
        self.housekeeper = Housekeeper(
            redis, worker_id=self.worker_id, sites=self.sites, sessions=self.sessions,
            stopper=self.stopper, queue=self.queue, metrics=self.metrics,
            chunk_size=config.chunk_size, gauges=self._gauges,
            counting=lambda: self.metrics_port is not None,
        )  # fmt: skip
        self.broker = LeaseBroker(
            {site.name: site.book for site in self.sites},
            lifecycle=self.lifecycle,
            max_inflight=config.worker_max_inflight,
            capacity_wait_limit=config.capacity_wait_limit_seconds,
            waiting_after=config.lease_wait_seconds,
            rests=Rests(config.block_cooldown_seconds, config.quota_cooldown_seconds),
            on_waiting=self._on_waiting,
            on_no_identity=self.housekeeper.pool_looks_empty,
            holding_back=lambda: self.writer.holding,
            metrics=self.metrics,
            burst=config.proxy_burst,
            weights={site.name: site.settings.weight for site in self.sites},
        )
        self.runner = PromptRunner(
            config, self.ledger, self.broker, self.sessions, self.sites, self.lifecycle,
            self.metrics,
        )  # fmt: skip
        self.heartbeat = Heartbeat(
            redis, chunks=self.claims, book=self.book, worker_id=self.worker_id,
            interval=config.heartbeat_seconds, ttl=config.claim_ttl_seconds,
            held_chunks=lambda: [c.claim for c in self.held.values() if not c.claim.lost],
            held_leases=lambda: list(self.broker.held.values()),
            report=self.report, lost_chunks=self._chunks_lost, lost_leases=self.broker.lost,
        )  # fmt: skip
        self.webhooks = WebhookDeliverer(
            redis,
            WebhookOptions.from_config(config),
            worker_id=self.worker_id,
            metrics=self.metrics,
        )
        self.supervisor = Supervisor(self._loop_died)
        self.on_failure: Callable[[], None] = lambda: None  # the worker's way down (arq's)
        self.held: dict[str, HeldChunk] = {}
        self.suspect_waiting = False
        self.next_lapse_seconds: float | None = None  # when a held claim may lapse (claims)
        self.metrics_port: int | None = None

    # -- the worker's life ------------------------------------------------------------------

    async def start(self, **loops: Callable[[], Awaitable[None]]) -> None:
        """Registers the identities, then runs the loops (and ``loops``), each watched."""
        self.lifecycle.start()
        self.metrics_port = self.metrics.start_server(self.config.metrics_port)
        if self.metrics_port is not None:
            log.info("metrics.serving", port=self.metrics_port, path="/metrics")
        await until_redis_answers("register", self.sites.register)
        self.supervisor.start("heartbeat", self.heartbeat.run)
        self.supervisor.start("broker", self.broker.run)
        self.supervisor.start("results", self.writer.run)
        self.supervisor.start("housekeeping", self.housekeeper.run)
        self.supervisor.start("webhooks", self.webhooks.run)
        self.supervisor.start("throughput", lambda: self.metrics.throughput.run(self.redis))
        for name, loop in loops.items():
            self.supervisor.start(name, loop)

    def drain(self) -> bool:
        """Takes nothing more: prompts not yet sent go back to the queue, the rest finish."""
        return self.lifecycle.drain()

    async def stop(self) -> None:
        self.lifecycle.stop()
        await self.supervisor.stop()
        await self.housekeeper.let_go()
        await self.sites.close()
        self.metrics.stop_server()
        failed = self.supervisor.failed
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                if failed is None:
                    pipe.zrem(keys.workers_seen(), self.worker_id)
                    pipe.delete(keys.worker_info(self.worker_id))
                else:  # `workers --check` shows why it went, until its entry expires
                    pipe.hset(keys.worker_info(self.worker_id), "went_down", failed)
                    pipe.pexpire(keys.worker_info(self.worker_id), self.heartbeat.report_ttl_ms)
                await pipe.execute()
        except Exception:  # a worker that cannot say goodbye still stops; its entry expires
            log.info("worker.goodbye_skipped")

    def _loop_died(self, name: str, error: BaseException | None) -> None:
        self.on_failure()

    # -- chunks -----------------------------------------------------------------------------

    @property
    def unsettled(self) -> int:
        """Prompts of the held chunks still to settle (sending, waiting or backing off)."""
        return sum(chunk.unsettled for chunk in self.held.values())

    def wants_chunks(self) -> bool:
        """Whether one more chunk keeps requests flowing rather than piling up here.

        Prompts settle one by one, so the worker takes the next chunk while the last
        ones of a chunk are still out: there is always a prompt ready for a free lease.
        """
        if not self.lifecycle.running or self.writer.holding:
            return False
        if self.config.max_jobs is not None and len(self.held) >= self.config.max_jobs:
            return False
        if self.held and (self.suspect_waiting or any(c.claim.suspect for c in self.held.values())):
            return False  # a suspect runs alone: empty hands first, then it, then the rest
        if any(chunk.starting for chunk in self.held.values()):
            return False  # one chunk starts at a time: its prompts count before the next
        if self.unsettled >= 2 * self.config.worker_max_inflight:
            return False
        # As many ready as are out: when the requests out now come back, their slots are
        # refilled at once; more would only wait beside them for capacity.
        return self.broker.waiting < max(16, len(self.broker.held))

    async def take_chunks(self, want: int) -> list[ChunkClaim]:
        """Claims up to ``want`` chunks from the queue's head; they are held from now on.

        A suspect chunk (its holders kept lapsing) is taken only with empty hands, and
        alone: when one waits, this worker takes nothing more until its hands are empty.
        """
        winding_down = [key for key, chunk in self.held.items() if chunk.claim.lost]
        taken = await self.claims.take(want, hands_free=not self.held, skip=winding_down)
        self.suspect_waiting = taken.suspect_waiting
        self.next_lapse_seconds = taken.next_lapse_seconds
        claims = []
        for claim in taken.claims:
            if claim.key in self.held:  # a lost hold of it is still winding down here
                await self.claims.end(claim, "hand_back")
                continue
            self.held[claim.key] = HeldChunk(claim)
            claims.append(claim)
        return claims

    async def wait_for_work(self) -> None:
        """Sleeps until a chunk is made claimable, or a held one may lapse (then a claim
        takes it back to the queue), or ``IDLE_WAIT_SECONDS``: an idle worker's wait."""
        wait = IDLE_WAIT_SECONDS
        if self.next_lapse_seconds is not None:
            wait = min(wait, self.next_lapse_seconds + 0.05)
        await self.claims.wait_for_work(max(wait, 0.05))

    async def run_chunk(self, payload: ChunkPayload, claim: ChunkClaim) -> ChunkState:
        """Runs every prompt of the chunk to its result, unless it is handed back or lost;
        returns how it ended (``end_chunk`` then ends it so)."""
        chunk = self.held.setdefault(claim.key, HeldChunk(claim))
        chunk.batch_id, chunk.indices = payload.batch_id, payload.indices
        chunk.move(ChunkState.RUNNING)
        try:
            chunk.move(await self._run_chunk(payload, chunk))
        except Exception:
            log.exception("chunk.crashed", chunk=claim.key, batch_id=payload.batch_id)
            chunk.move(ChunkState.LAPSED)
        finally:
            chunk.starting = False
        if chunk.claim.lost and chunk.state is not ChunkState.SPLIT:
            chunk.state = ChunkState.LOST  # whatever it found, another worker holds it now
        self.metrics.chunk_finished(chunk.state.value)
        log.info(
            "chunk.finished", chunk=claim.key, batch_id=payload.batch_id,
            outcome=chunk.state.value, prompts=len(payload.indices),
            seconds=round(time.monotonic() - chunk.began, 3),
        )  # fmt: skip
        return chunk.state

    def unreadable_chunk(self, chunk_id: str) -> None:
        """arq, or the payload's check, could not read the chunk: it is discarded."""
        chunk = self.held.get(chunk_id)
        if chunk is not None and chunk.state is ChunkState.CLAIMED:
            chunk.move(ChunkState.DISCARDED)

    async def end_chunk(
        self, chunk_id: str, *, defer_ms: int = 0, unfinished: ChunkState = ChunkState.LAPSED
    ) -> None:
        """Ends this worker's hold on a chunk as its state says (``worker.chunks.END``):
        nothing if it is no longer this worker's; one that has not ended is ``unfinished``."""
        chunk = self.held.pop(chunk_id, None)
        if chunk is None:
            return
        how = chunk.end_how(unfinished)
        if how is None:
            return
        try:
            ended = await asyncio.wait_for(
                until_redis_answers(
                    "chunk end",
                    lambda: self.claims.end(
                        chunk.claim, how, batch_id=chunk.batch_id, indices=chunk.indices,
                        defer_ms=defer_ms,
                    ),
                ),
                self.config.claim_ttl_seconds,
            )  # fmt: skip
        except TimeoutError:  # its claim lapses instead; the next holder finds it settled
            log.warning("chunk.end_skipped", chunk=chunk_id, how=how)
            return
        if ended == 2:
            log.error("chunk.done_refused", chunk=chunk_id, batch_id=chunk.batch_id)

    def claim_of(self, chunk_id: str) -> ChunkClaim | None:
        chunk = self.held.get(chunk_id)
        return chunk.claim if chunk is not None else None

    def _chunks_lost(self, chunk_ids: list[str]) -> None:
        for chunk_id in chunk_ids:
            chunk = self.held.get(chunk_id)
            if chunk is None:
                continue
            for index, task in chunk.tasks.items():
                if index not in chunk.sending:
                    task.cancel()  # not sent: the chunk's new holder runs it

    async def _run_chunk(self, payload: ChunkPayload, chunk: HeldChunk) -> ChunkState:
        batch_id = payload.batch_id
        start = await until_redis_answers(
            "chunk start", lambda: self.ledger.start_chunk(batch_id, payload.indices)
        )
        if start.batch_state is None:
            log.warning("chunk.batch_gone", batch_id=batch_id, prompts=len(payload.indices))
            return ChunkState.DONE
        enqueued_at = start.created_at or utc_now()
        requests: list[tuple[PromptRequest, Attempts]] = []
        unreadable: list[JobResult] = []
        for prompt in start.prompts:
            if prompt.state_before in FINAL_STATES:
                continue
            found = stored_prompt(prompt.request_json or b"", batch_id=batch_id,
                                  index=prompt.index, enqueued_at=enqueued_at)  # fmt: skip
            if isinstance(found, JobResult):
                unreadable.append(found)
            else:
                requests.append((found, _attempts_of(prompt.attempts_json)))
        chunk.unsettled = len(requests) + len(unreadable)
        chunk.starting = False
        why = _stopped_why(start.batch_state)
        if why is None and start.past_its_window:
            await until_redis_answers("expire", lambda: self.stopper.begin(batch_id, "expired"))
            why = "expired"
        if why is not None:
            await self._save_all([*(stopped_result(r, why) for r, _ in requests), *unreadable])
            return ChunkState.DONE
        lapses = chunk.claim.lapses
        if lapses >= self.config.chunk_lapse_limit:
            await self._save_all([*(_crashed(r, lapses) for r, _ in requests), *unreadable])
            return ChunkState.DONE
        if lapses and len(requests) > 1:
            # Its holders lapsed with it: one prompt a chunk from now on, so that a prompt
            # that kills workers is found alone and the others are not failed with it.
            await self._save_all(unreadable)
            indices = [request.index for request, _ in requests]
            if await self.claims.split(chunk.claim, batch_id, indices):
                log.warning("chunk.split", chunk=chunk.key, lapses=lapses, prompts=len(indices))
                return ChunkState.SPLIT
            chunk.claim.lose()  # refused: the chunk is no longer this worker's
            return ChunkState.LOST
        for request, attempts in requests:
            chunk.tasks[request.index] = asyncio.create_task(
                self._run_prompt(request, attempts, chunk)
            )
        outcomes = await asyncio.gather(
            *chunk.tasks.values(),
            *(self._save(result) for result in unreadable),
            return_exceptions=True,
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException) and not isinstance(
                outcome, asyncio.CancelledError
            ):
                raise outcome
        if chunk.claim.lost:
            return ChunkState.LOST
        handed_back = [r for r, done in zip(requests, outcomes, strict=False) if done is None]
        if handed_back:  # its end shows them queued, if the chunk is still this worker's
            log.info("chunk.handed_back", batch_id=batch_id, prompts=len(handed_back))
            return ChunkState.HANDED_BACK
        return ChunkState.DONE

    async def _run_prompt(
        self, request: PromptRequest, attempts: Attempts, chunk: HeldChunk
    ) -> bool | None:
        """True once the prompt has its durable result; None if it was handed back unsent."""
        # Each prompt runs in a task of its own, so these stay with this prompt's lines.
        structlog.contextvars.bind_contextvars(
            job_id=request.job_id, batch_id=request.batch_id, custom_id=request.custom_id
        )
        try:
            try:
                result = await self.runner.run(request, attempts, chunk)
            except (Draining, ChunkLost):
                return None
            if result is None:
                return None
            await self._save(result)
            return True
        finally:
            chunk.sending.discard(request.index)
            chunk.unsettled -= 1

    async def _save(self, result: JobResult) -> bool:
        await self.writer.save(result)
        self.metrics.prompt_finished(
            result.status, result.error.type if result.error else None, result.site
        )
        return True

    async def _save_all(self, results: Sequence[JobResult]) -> None:
        await asyncio.gather(*(self._save(result) for result in results))

    def _on_waiting(self, batch_id: str, index: int, waiting: bool) -> None:
        self.writer.mark(batch_id, index, "waiting" if waiting else "running")

    def _gauges(self) -> None:
        self.metrics.gauges(
            in_flight=len(self.broker.held), waiting=self.broker.waiting, chunks=len(self.held)
        )

    def report(self) -> dict[str, str | int | float]:
        """This worker as ``chatgptes workers`` shows it (written by every heartbeat)."""
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
            "stopping": int(not self.lifecycle.running),
            "results_held": self.writer.pending,
            "chores_failing": self.housekeeper.failing_summary(),
        }


def _stopped_why(batch_state: str | None) -> str | None:
    """Why nothing more of a batch in this state may be sent (None: it may)."""
    if batch_state in ("cancelling", "cancelled"):
        return "cancelled"
    if batch_state in ("expiring", "expired"):
        return "expired"
    return None


def _crashed(request: PromptRequest, lapses: int) -> JobResult:
    message = (
        f"the worker running this prompt's chunk died or was cut off {lapses} times; "
        "it is not run again (a prompt that kills workers would take the fleet down)"
    )
    return JobResult.for_request(
        request, status="failed", error=JobError(type="WorkerCrashed", message=message)
    )


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


__all__ = ["WorkerRuntime"]
