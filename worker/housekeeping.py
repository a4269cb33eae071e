"""The chores beside the work, in bounded steps, off the heartbeat.

Each worker, every ``TICK_SECONDS``, does its own: counts its site sessions' uses,
adds its error and wait counters to the fleet's, updates its gauges, and announces
its identities again when its proxies file changed, every ``REGISTER_EVERY_SECONDS``,
or at once when the lease script finds its pool empty (Redis restarted empty).

One worker at a time (the holder of the ``housekeeper`` lock, taken and renewed
under a token) also does the fleet's chores, each a bounded step that resumes where
the last one stopped, even in another worker after a crash:

- begins the stop of batches whose completion window ended, and takes every
  unfinished stop (cancel or expiry) a step further (``contract.stopping``);
- re-queues the prompts of a batch that no queued chunk carries (the sweep);
- deregisters identities and pools no worker has announced for a while.

A step that finds nothing costs a call or two; no chore visits every prompt or
every identity at once.

Each chore runs on its own: one that fails (a bug, a record nobody can read) is logged
with its traceback, counted (``chatgptes_chore_failures_total``) and tried again after
a backoff that grows while it keeps failing; it never stops another chore, nor the
worker. A chore failing now shows in ``chatgptes workers --check`` and ``top`` with its
reason, until it succeeds again.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from redis.asyncio import Redis

from contract import keys
from contract.chunks import WALK_START, ChunkQueue, Cursor
from contract.redaction import redact_text
from contract.retrying import TRANSIENT, RedisBackoff
from contract.scripts import ScriptBook
from contract.stopping import BatchStopper
from worker.metrics import WorkerMetrics
from worker.sessions import SessionCache
from worker.sites import SiteSet

log = structlog.get_logger("chatgptes.housekeeping")
TICK_SECONDS = 1.0
REGISTER_EVERY_SECONDS = 60.0
REREGISTER_AT_MOST_EVERY = 2.0  # when the pool was found empty
FORGET_AFTER_SECONDS = 3 * REGISTER_EVERY_SECONDS  # an identity nobody announced since
LOCK_SECONDS = 10.0
LOCK_TRY_SECONDS = 5.0  # a worker without the lock asks for it this often, not every tick
FLEET_CHORES_SECONDS = 2.0  # the holder renews the lock and does the fleet's chores
STEP_BUDGET_SECONDS = 0.2  # stop steps per tick, at most this long
SWEEP_EVERY_SECONDS = 30.0
FORGET_EVERY_SECONDS = 60.0
CHORE_RETRY_SECONDS = (1.0, 60.0)  # a failing chore waits this long at first, at most
COUNT_EVERY_SECONDS = 15.0
EVENTS_TTL_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True)
class ChoreFailure:
    """A chore failing now: how often in a row, why (its error's type), when to try again."""

    times: int
    reason: str
    retry_at: float

    @classmethod
    def next(cls, before: ChoreFailure | None, error: Exception) -> ChoreFailure:
        times = (before.times if before else 0) + 1
        first, cap = CHORE_RETRY_SECONDS
        wait = min(cap, first * 2 ** (times - 1))
        return cls(times, redact_text(type(error).__name__)[:80], time.monotonic() + wait)


class Housekeeper:
    def __init__(
        self,
        redis: Redis,
        *,
        worker_id: str,
        sites: SiteSet,
        sessions: SessionCache,
        stopper: BatchStopper,
        queue: ChunkQueue,
        metrics: WorkerMetrics,
        chunk_size: int,
        gauges: Callable[[], None],
        counting: Callable[[], bool],
    ) -> None:
        self.redis = redis
        self.worker_id = worker_id
        self.sites = sites
        self.book = sites.first.book  # for the fleet's chores on identities, any site's does
        self.sessions = sessions
        self.stopper = stopper
        self.queue = queue
        self.metrics = metrics
        self.chunk_size = chunk_size
        self.gauges = gauges
        self.counting = counting
        self.locks = ScriptBook(redis, "worker", ["renew_lock", "unlock"])
        self.holds_fleet_chores = False
        self._token = f"{worker_id}:{secrets.token_hex(6)}"
        self._registered_at = time.monotonic()
        self._reregister_asked = False
        self._last_reregister = 0.0
        self._due: dict[str, float] = {}
        self._backoff = RedisBackoff("housekeeping")
        self.failing: dict[str, ChoreFailure] = {}  # chore → how it fails, while it does
        self._sweep_cursor: Cursor | None = None  # where the sweep's pass is (None: between)
        self._stuck_stops: dict[str, ChoreFailure] = {}  # batch ID → its stop's failing step
        self._adopt_cursor: Cursor | None = WALK_START  # None: the registry was walked

    def pool_looks_empty(self) -> None:
        """The lease script found this worker's pool empty: announce it again soon."""
        self._reregister_asked = True

    async def run(self) -> None:
        try:
            while True:
                try:
                    await self.tick()
                except TRANSIENT as error:
                    await self._backoff.wait(error)
                    continue
                self._backoff.reset()
                await asyncio.sleep(TICK_SECONDS)
        finally:
            await self.let_go()

    async def tick(self) -> None:
        """One turn of this worker's chores, then, if it holds the lock, the fleet's."""
        await self._chore("sessions", self.sessions.count_uses)
        await self._chore("counters", self._add_up_fleet_counters)
        await self._chore("gauges", self._count_states)
        await self._chore("register", self._register_if_due)
        every = FLEET_CHORES_SECONDS if self.holds_fleet_chores else LOCK_TRY_SECONDS
        if self._due_now("fleet", every) and await self._hold_lock():
            await self._chore("expiry", self._begin_expiries)
            await self._chore("stops", self._step_stops)
            if self._due_now("sweep", SWEEP_EVERY_SECONDS) or self._sweep_cursor is not None:
                await self._chore("sweep", self._sweep)
            if self._due_now("forget", FORGET_EVERY_SECONDS):
                await self._chore("forget", self._forget)

    async def _chore(self, name: str, chore: Callable[[], Awaitable[object]]) -> None:
        """Runs one chore, isolated: a Redis outage is the tick's to wait out (raised);
        any other error is logged, counted and tried again after a backoff (the stops,
        each batch's own: see ``_step_stops``)."""
        failure = self.failing.get(name)
        if failure is not None and time.monotonic() < failure.retry_at and name != "stops":
            return
        try:
            await chore()
        except TRANSIENT:
            raise
        except Exception as error:
            self.failing[name] = failure = ChoreFailure.next(failure, error)
            self.metrics.chore_failed(name)
            log.exception(
                "housekeeping.chore_failed", chore=name, times=failure.times,
                retry_in=round(failure.retry_at - time.monotonic(), 1),
            )  # fmt: skip
            return
        if self.failing.pop(name, None) is not None:
            log.info("housekeeping.chore_recovered", chore=name)

    def failing_summary(self) -> str:
        """The chores failing now, for the worker's report: ``name: Error (n times)``."""
        return "; ".join(
            f"{name}: {failure.reason} ({failure.times} times)"
            for name, failure in sorted(self.failing.items())
        )

    async def let_go(self) -> None:
        """Gives the fleet's chores to another worker at once (on stop)."""
        if not self.holds_fleet_chores:
            return
        self.holds_fleet_chores = False
        try:
            await self.locks.run("unlock", [keys.housekeeper()], [self._token])
        except Exception:  # its lock expires on its own
            log.info("housekeeping.unlock_skipped")

    # -- this worker's ------------------------------------------------------------------

    async def _count_states(self) -> None:
        self.gauges()
        if self.counting() and self._due_now("count", COUNT_EVERY_SECONDS):
            counts: dict[str, int] = {}
            for site in self.sites:
                for state, count in (await site.book.state_counts()).items():
                    counts[state] = counts.get(state, 0) + count
            counts["full"] = counts.pop("proxy_full", 0)
            self.metrics.identity_states(counts)

    async def _register_if_due(self) -> None:
        now = time.monotonic()
        asked = self._reregister_asked and now - self._last_reregister >= REREGISTER_AT_MOST_EVERY
        reloaded = any([site.pool.reload() for site in self.sites])  # each file looked at
        if asked or reloaded or now - self._registered_at >= REGISTER_EVERY_SECONDS:
            self._reregister_asked = False
            await self.sites.register()
            self._registered_at = self._last_reregister = time.monotonic()
            if reloaded:
                log.info("proxies.reloaded", identities=len(self.sites.identities))
            elif asked:
                log.info("identities.registered_again", identities=len(self.sites.identities))

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
            self.metrics.restore_fleet_deltas(deltas)  # counted at the next turn instead
            raise

    # -- the fleet's, one worker at a time -------------------------------------------------

    async def _hold_lock(self) -> bool:
        lock_ms = int(LOCK_SECONDS * 1000)
        if self.holds_fleet_chores:
            held = await self.locks.run("renew_lock", [keys.housekeeper()], [self._token, lock_ms])
        else:
            held = await self.redis.set(keys.housekeeper(), self._token, nx=True, px=lock_ms)
        if bool(held) != self.holds_fleet_chores:
            log.info("housekeeping.fleet_chores", held=bool(held))
        self.holds_fleet_chores = bool(held)
        return self.holds_fleet_chores

    async def _begin_expiries(self) -> None:
        for batch_id in await self.stopper.begin_due_expiries():
            log.info("batch.expiring", batch_id=batch_id)

    async def _step_stops(self) -> None:
        """Takes the unfinished stops a step further, within a time budget. A stop whose
        step fails waits its own backoff; the others go on (one bad batch stops no other);
        the chore then says it failed, naming the error."""
        deadline = time.monotonic() + STEP_BUDGET_SECONDS
        first_error: Exception | None = None
        for stopping in await self.stopper.unfinished():
            stuck = self._stuck_stops.get(stopping.batch_id)
            if stuck is not None and time.monotonic() < stuck.retry_at:
                continue
            try:
                while time.monotonic() < deadline:
                    finished, _ = await self.stopper.step(stopping.batch_id, stopping.why)
                    if finished:
                        break
                    await asyncio.sleep(0)  # one step at a time: the worker's prompts go on
            except TRANSIENT:
                raise
            except Exception as error:
                self._stuck_stops[stopping.batch_id] = ChoreFailure.next(stuck, error)
                first_error = first_error or error
                continue
            self._stuck_stops.pop(stopping.batch_id, None)
            if time.monotonic() >= deadline:
                break
        if first_error is not None:
            raise first_error

    async def _sweep(self) -> None:
        """One bounded step of a pass over this queue's active batches (every batch that may
        have prompts to run, however old), resumed at the next tick until the pass ends:
        the unsettled prompts of a batch no chunk carries are queued again. A worker's
        first passes also walk the registry of batches, for running ones of this queue
        the active set does not list (published before it existed)."""
        deadline = time.monotonic() + STEP_BUDGET_SECONDS
        while self._adopt_cursor is not None and time.monotonic() < deadline:
            self._adopt_cursor = await self.queue.adopt(self._adopt_cursor)
        while time.monotonic() < deadline:
            found, self._sweep_cursor = await self.queue.active(self._sweep_cursor or WALK_START)
            if self._sweep_cursor is None:
                return  # the pass is over; the next one when it is due
            for batch_id in await self.queue.stranded(found):
                queued = await self.queue.requeue_stranded(batch_id, self.chunk_size)
                if queued:
                    log.warning("batch.stranded_requeued", batch_id=batch_id, prompts=queued)
            await asyncio.sleep(0)

    async def _forget(self) -> None:
        forgotten = await self.book.forget_unannounced(FORGET_AFTER_SECONDS)
        if forgotten:
            log.info("identities.forgotten", identities=forgotten)
        await self.stopper.forget_old_marks()

    def _due_now(self, chore: str, every: float) -> bool:
        now = time.monotonic()
        if now < self._due.get(chore, 0.0):
            return False
        self._due[chore] = now + every
        return True
