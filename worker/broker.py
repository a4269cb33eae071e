"""A lease's whole life in the worker: asked for, waited on, handed out, renewed, given back.

The broker is the one owner of leases. A prompt asks it for one (``lease``), sends
under it (``charge`` for the handshake's extra page GET) and gives it back with what
happened (``succeeded``, ``failed`` with the upstream error, or ``unused``); the
heartbeat renews the leases it holds (``held``) and tells it which were lost. All of
that becomes one Redis call at a time (the returns since the last call, then an
acquire for every prompt waiting), so the policy's cost is paid per call, not per
prompt. Leases go to the waiting prompts round-robin across batches, in arrival
order within a batch, so a small batch that arrives behind a big one is served from
its first lease: the prompts a call asks for are picked before it is made, and each
lease granted goes to the prompt it was asked for (its slot).

What an outcome says about the identity that carried it (its cooldown) is decided
here, from the error's class: a bad exit cools and the prompt moves on to another.

Waiting for capacity is not failing: a prompt waits here without spending any
budget, however long, until ``capacity_wait_limit`` (then ``NoCapacityError``).
A stopped batch's waiting prompts (cancelled, or past its completion window) are
let go (``BatchStopped``) by the same call that would have given them a lease: the
lease script reads the stop mark of every lease's batch as it grants it. A lease is
sent under within ``SEND_WINDOW_SECONDS`` of that call, or its batch's mark is read
again first (``confirm_running``), so nothing of a batch leaves once ``cancel`` has
returned. No lease is taken while ``holding_back()`` says the worker could not store
what new requests would bring (Redis refusing writes), nor once the worker drains.

The broker's loops (its turns, the look at long waits, the wait for room) run under the
worker's supervisor: one that dies takes the worker down, never silently.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import structlog

from contract.errors import ServiceError
from contract.retrying import TRANSIENT, RedisBackoff
from contract.stopping import SEND_WINDOW_SECONDS
from worker.errors import QuotaExceeded, UpstreamError, Verdict
from worker.leases import Cooldown, Exchange, Grants, Lease, LeaseBook, exchange_all
from worker.lifecycle import Lifecycle
from worker.metrics import WorkerMetrics
from worker.routing import SiteRouter

log = structlog.get_logger("chatgptes.broker")
HOUSEKEEPING_SECONDS = 0.5
# While the fleet (or every identity) is full, a worker blocks on the room marker instead
# of polling, until a release wakes it or the first lease may expire (a dead worker's are
# reaped by a call then), and at least this often.
ROOM_WAIT_SECONDS = 5.0
WAIT_LOG_SECONDS = 10.0  # one line per interval about waiting prompts, not one per prompt
OK = Cooldown(verdict="ok")
NEUTRAL = Cooldown(verdict="none")


class BatchStopped(ServiceError):
    """The prompt's batch was cancelled or expired while it waited; it must not be sent."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why  # "cancelled" or "expired"


class Draining(ServiceError):
    """The worker is shutting down: the prompt goes back to the queue unsent."""


class NoCapacityError(ServiceError):
    """No identity had room for longer than the capacity wait limit."""


@dataclass(frozen=True)
class Rests:
    """How long an identity rests after the site blocked it or it used its quota."""

    block_seconds: float = 300.0
    quota_seconds: float = 3600.0


def cooldown_for(error: UpstreamError, rests: Rests) -> Cooldown:
    """Maps an error to how long its identity rests: never less than the site asked for."""
    if error.verdict is Verdict.NONE:
        return NEUTRAL
    floor = error.retry_after or 0.0
    if isinstance(error, QuotaExceeded):
        floor = max(floor, rests.quota_seconds)
    elif error.verdict is Verdict.QUARANTINE:
        floor = max(floor, rests.block_seconds)
    return Cooldown(verdict=error.verdict.value, floor_seconds=floor, reason=error.kind)


@dataclass(eq=False)
class Waiter:
    batch_id: str
    index: int
    future: asyncio.Future[Lease]
    site: str | None = None  # the one site the prompt may be sent to (None: any)
    since: float = field(default_factory=time.monotonic)
    shown_waiting: bool = False


# Told when a prompt starts to show as waiting (True) and when it stops (False).
StateHook = Callable[[str, int, bool], None]


class LeaseBroker:
    def __init__(
        self,
        book: LeaseBook | Mapping[str, LeaseBook],
        *,
        lifecycle: Lifecycle,
        max_inflight: int,
        capacity_wait_limit: float,
        waiting_after: float,
        rests: Rests | None = None,
        on_waiting: StateHook | None = None,
        on_no_identity: Callable[[], None] | None = None,
        holding_back: Callable[[], bool] = lambda: False,
        metrics: WorkerMetrics | None = None,
        poll_seconds: float = 0.025,
        burst: int = 2,
        weights: Mapping[str, float] | None = None,
    ) -> None:
        # One lease book per site (a fleet of one: one book); the first serves the calls
        # that are the fleet's whatever the site (stop marks, the room marker).
        self.books = {book.site_name: book} if isinstance(book, LeaseBook) else dict(book)
        self.book = next(iter(self.books.values()))
        self.router = SiteRouter({site: (weights or {}).get(site, 1.0) for site in self.books})
        self.lifecycle = lifecycle
        self.max_inflight = max_inflight
        self.capacity_wait_limit = capacity_wait_limit
        self.waiting_after = waiting_after
        self.rests = rests or Rests()
        self.on_waiting = on_waiting
        self.on_no_identity = on_no_identity
        self.holding_back = holding_back
        self.metrics = metrics or WorkerMetrics()
        self.poll_seconds = poll_seconds
        self.burst = burst
        self.held: dict[str, Lease] = {}
        self.stopped: dict[str, str] = {}  # batch ID → why
        self.last_refusal = "ready"
        self._waiting: OrderedDict[str, deque[Waiter]] = OrderedDict()
        self._returns: list[tuple[Lease, Cooldown]] = []
        self._strangers: list[tuple[str, str]] = []  # (site, token)
        self._wake = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._room: asyncio.Task[None] | None = None
        self._sent_at: dict[str, float] = {}  # identity → its next request's moment (GCRA)
        self._redis_backoff = RedisBackoff("broker")
        self._wait_logged_at = -WAIT_LOG_SECONDS
        lifecycle.on_drain(self._let_waiters_go)

    @property
    def waiting(self) -> int:
        return sum(len(queue) for queue in self._waiting.values())

    # -- what a prompt does with a lease, in order --------------------------------------

    async def lease(self, batch_id: str, index: int, site: str | None = None) -> Lease:
        """A lease for the prompt at ``index`` of ``batch_id`` (at ``site`` if it is pinned
        to one); waits as long as capacity takes."""
        if not self.lifecycle.running:
            raise Draining
        if batch_id in self.stopped:
            raise BatchStopped(self.stopped[batch_id])
        waiter = Waiter(batch_id, index, asyncio.get_running_loop().create_future(), site)
        self._waiting.setdefault(batch_id, deque()).append(waiter)
        self._wake.set()
        try:
            return await waiter.future
        except asyncio.CancelledError:
            self._forget(waiter)
            future = waiter.future
            if future.done() and not future.cancelled() and future.exception() is None:
                self.unused(future.result())  # handed out just as the prompt was cancelled
            raise

    async def on_time(self, lease: Lease) -> None:
        """Waits, if need be, so that this worker's requests through ``lease``'s identity
        leave no closer together than its rate allows (the same GCRA as the lease book,
        kept here at the moment of sending). The book paces the grants; but a grant sent
        late (the event loop was busy, a handshake was awaited) would reach the site
        beside the grants made after it, a burst the site answers with a 429."""
        identity = lease.identity
        if identity.rate_per_second <= 0:
            return
        interval = 1.0 / identity.rate_per_second
        now = time.monotonic()
        due = max(self._sent_at.get(identity.name, now), now)
        self._sent_at[identity.name] = due + interval
        wait = due - interval * (self.burst - 1) - now
        if wait > 0:
            await asyncio.sleep(wait)

    async def charge(self, lease: Lease) -> None:
        """One more request under ``lease`` than the lease itself (the handshake's page GET)."""
        await self.books[self._site_of(lease)].charge(lease.identity)

    async def confirm_running(self, lease: Lease, batch_id: str) -> None:
        """Right before sending: if the lease last learnt its batch was running more than
        ``SEND_WINDOW_SECONDS`` ago (a handshake, a pace), reads the batch's stop mark
        again; ``BatchStopped`` if it was stopped meanwhile. The read takes time too: the
        caller asks ``fresh`` after it (and after its own checks) before it sends."""
        if self.fresh(lease):
            return
        asked_at = time.monotonic()
        why = await self.book.stopped(batch_id)
        if why is not None:
            self.stop_batch(batch_id, why)
            raise BatchStopped(why)
        lease.checked_at = asked_at

    @staticmethod
    def fresh(lease: Lease) -> bool:
        """Whether the lease learnt its batch was running within ``SEND_WINDOW_SECONDS``."""
        return time.monotonic() - lease.checked_at <= SEND_WINDOW_SECONDS

    def succeeded(self, lease: Lease) -> None:
        self._give_back(lease, OK)

    def failed(self, lease: Lease, error: UpstreamError) -> None:
        """The request under ``lease`` failed with ``error``: its identity is charged for it."""
        self._give_back(lease, cooldown_for(error, self.rests))

    def unused(self, lease: Lease) -> None:
        """Nothing was learnt about the identity (not sent, a bug, a shutdown)."""
        self._give_back(lease, NEUTRAL)

    def lost(self, tokens: Sequence[str]) -> None:
        """The heartbeat found these leases gone (reaped while this worker looked dead)."""
        for token in tokens:
            lease = self.held.pop(token, None)
            if lease is not None:
                lease.claim.lose()
        if tokens:
            log.warning("leases.lost", leases=len(tokens))

    def stop_batch(self, batch_id: str, why: str) -> None:
        self.stopped[batch_id] = why
        for waiter in self._waiting.pop(batch_id, ()):
            if not waiter.future.done():
                waiter.future.set_exception(BatchStopped(why))

    # -- the loop: one Redis call per turn ------------------------------------------------

    async def run(self) -> None:
        """The broker's loops: its turns (one Redis call per turn, for every return and
        every waiter) and its look at long waits. Either failing fails both (the worker's
        supervisor sees it), and so does a wait for room that failed (not a Redis outage:
        a bug)."""
        try:
            async with asyncio.TaskGroup() as loops:
                loops.create_task(self._turns(), name="broker-turns")
                loops.create_task(self._watch_waits(), name="broker-waits")
        except BaseExceptionGroup as failed:  # the first loop's error is the broker's
            raise failed.exceptions[0] from None
        finally:
            if self._room is not None:
                self._room.cancel()

    async def _watch_waits(self) -> None:
        """Every ``HOUSEKEEPING_SECONDS``: long waits are shown as waiting, hopeless ones
        end (off the loop's Redis turns: a worker waiting on a full fleet asks Redis only
        when room may have been made)."""
        while True:
            await asyncio.sleep(HOUSEKEEPING_SECONDS)
            self._housekeeping()

    async def _turns(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            self._room_failed()
            returns, self._returns = self._returns, []
            strangers, self._strangers = self._strangers, []
            want = min(self.waiting, self.max_inflight - len(self.held))
            if not self.lifecycle.running or self.holding_back():
                want = 0
            if not returns and not strangers and want <= 0:
                if self.waiting and self.holding_back():
                    self._wake_in(self.poll_seconds * 4)
                continue
            slots = self._reserve(want)
            routes = self.router.route([waiter.site for waiter in slots])
            parts = self._exchanges(returns, strangers, slots, routes)
            try:
                replies = await exchange_all(parts)
            except TRANSIENT as error:
                self._returns[:0] = returns
                self._strangers[:0] = strangers
                self._unreserve(slots)
                await self._redis_backoff.wait(error)
                self._wake.set()
                continue
            self._redis_backoff.reset()
            granted, refusals = 0, []
            routed: set[int] = set()
            for part, grants in zip(parts, replies, strict=True):
                site = part.book.site_name
                asked = routes.get(site, [])
                routed.update(asked)
                if grants is None:
                    continue
                self.router.told(site, len(asked), len(grants.by_slot), grants.reason,
                                 grants.wait_seconds)  # fmt: skip
                self._hand_out(grants, [slots[n] for n in asked])
                granted += len(grants.by_slot)
                if len(grants.by_slot) < len(asked):
                    refusals.append(grants)
            self._unreserve([waiter for n, waiter in enumerate(slots) if n not in routed])
            self._next_turn(want, granted, refusals)

    def _exchanges(
        self,
        returns: list[tuple[Lease, Cooldown]],
        strangers: list[tuple[str, str]],
        slots: Sequence[Waiter],
        routes: dict[str, list[int]],
    ) -> list[Exchange]:
        """One exchange per site: the leases it gets back, the prompts routed to it."""
        return [
            Exchange(
                book,
                [(lease, cooldown) for lease, cooldown in returns
                 if self._site_of(lease) == site],
                [slots[n].batch_id for n in routes.get(site, ())],
                [token for of, token in strangers if of == site],
            )
            for site, book in self.books.items()
        ]  # fmt: skip

    def _site_of(self, lease: Lease) -> str:
        site = lease.identity.site
        return site if site in self.books else next(iter(self.books))

    def _next_turn(self, want: int, granted: int, refusals: list[Grants]) -> None:
        """When to look again: at once while there is more to do, when room is made for
        a full fleet, or when the first refusal may change (a rate token, a cooldown, a
        site's rest)."""
        if not (self.waiting and granted < want):
            if self.waiting or self._returns:
                self._wake.set()
            return
        if any(grants.reason in ("fleet_full", "proxy_full") for grants in refusals):
            wait = min(grants.wait_seconds for grants in refusals)
            self._wait_for_room(min(wait, ROOM_WAIT_SECONDS))
            return
        waits = [grants.wait_seconds for grants in refusals]
        rest = self.router.next_rest_end()
        if rest is not None:
            waits.append(rest)
        self._wake_in(min([*waits, self.poll_seconds * 4]))

    def _reserve(self, want: int) -> list[Waiter]:
        """The next ``want`` waiters, batches taking turns: the prompts this call asks for."""
        slots = []
        while len(slots) < want:
            waiter = self._next_waiter()
            if waiter is None:
                break
            slots.append(waiter)
        return slots

    def _unreserve(self, slots: Sequence[Waiter]) -> None:
        """Waiters asked for but not served go back first in line, in their order (those
        of a batch that stopped meanwhile are let go, and all of them once the worker
        drains)."""
        for waiter in reversed(slots):
            if waiter.future.done():
                continue
            if not self.lifecycle.running:  # the worker drains: back to the queue unsent
                waiter.future.set_exception(Draining())
                continue
            if waiter.batch_id in self.stopped:
                waiter.future.set_exception(BatchStopped(self.stopped[waiter.batch_id]))
                continue
            queue = self._waiting.get(waiter.batch_id)
            if queue is None:
                queue = self._waiting[waiter.batch_id] = deque()
            queue.appendleft(waiter)
            self._waiting.move_to_end(waiter.batch_id, last=False)

    def _give_back(self, lease: Lease, cooldown: Cooldown) -> None:
        if self.held.pop(lease.token, None) is None:
            return  # given back already, or lost
        self._returns.append((lease, cooldown))
        self._wake.set()

    def _hand_out(self, grants: Grants, slots: Sequence[Waiter]) -> None:
        for batch_id, why in grants.stopped.items():
            self.stop_batch(batch_id, why)
        if grants.strangers:  # never this worker's to use: back at the next call
            self._strangers += [(grants.site, token) for token in grants.strangers]
            log.warning("leases.not_ours", leases=len(grants.strangers))
            self._wake.set()
        unserved = []
        for slot, waiter in enumerate(slots):
            lease = grants.by_slot.get(slot)
            if lease is None:
                unserved.append(waiter)
                continue
            self.held[lease.token] = lease
            if (
                waiter.future.done() or waiter.batch_id in self.stopped
                or not self.lifecycle.running
            ):  # fmt: skip
                self.unused(lease)  # its prompt went away, its batch stopped, or we drain
                unserved.append(waiter)
                continue
            waiter.future.set_result(lease)
            if waiter.shown_waiting and self.on_waiting is not None:
                self.on_waiting(waiter.batch_id, waiter.index, False)
        self._unreserve(unserved)
        if not grants.by_slot and self.waiting:
            self.last_refusal = grants.reason
            if grants.reason == "no_identity" and self.on_no_identity is not None:
                self.on_no_identity()

    def _next_waiter(self) -> Waiter | None:
        """The oldest waiter of the batch whose turn it is; batches take turns."""
        while self._waiting:
            batch_id, queue = next(iter(self._waiting.items()))
            self._waiting.move_to_end(batch_id)
            while queue:
                waiter = queue.popleft()
                if not waiter.future.done():
                    if not queue:
                        del self._waiting[batch_id]
                    return waiter
            del self._waiting[batch_id]
        return None

    def _housekeeping(self) -> None:
        """Marks long waits as waiting (status shows them) and ends hopeless ones."""
        now = time.monotonic()
        for waiter in self._all_waiters():
            waited = now - waiter.since
            if waiter.future.done():
                continue
            if waited > self.capacity_wait_limit:
                waiter.future.set_exception(
                    NoCapacityError(
                        f"no identity had capacity for {waited:.0f}s (last: {self.last_refusal})"
                    )
                )
            elif waited > self.waiting_after and not waiter.shown_waiting:
                waiter.shown_waiting = True
                reason = self.last_refusal
                self.metrics.capacity_wait(reason)
                if self.on_waiting is not None:
                    self.on_waiting(waiter.batch_id, waiter.index, True)
                if now - self._wait_logged_at >= WAIT_LOG_SECONDS:
                    self._wait_logged_at = now
                    log.warning("capacity.waiting", reason=reason, waiting=self.waiting)

    def _let_waiters_go(self) -> None:
        """The worker drains: every waiting prompt goes back to the queue unsent."""
        for waiter in self._all_waiters():
            if not waiter.future.done():
                waiter.future.set_exception(Draining())
        self._waiting.clear()
        self._wake.set()

    def _all_waiters(self) -> list[Waiter]:
        return [waiter for queue in self._waiting.values() for waiter in queue]

    def _forget(self, waiter: Waiter) -> None:
        queue = self._waiting.get(waiter.batch_id)
        if queue is not None and waiter in queue:
            queue.remove(waiter)
            if not queue:
                del self._waiting[waiter.batch_id]

    def _wait_for_room(self, seconds: float) -> None:
        """Sleeps until a slot is freed in the fleet (another worker's release wakes this
        one through the room marker), a local event, or ``seconds``: no polling."""
        if self._room is not None and not self._room.done():
            return  # one blocked pop at a time; whatever wakes first wakes the loop

        async def wait() -> None:
            try:
                await self.book.wait_for_room(seconds)
            except TRANSIENT as error:
                await self._redis_backoff.wait(error)
            finally:
                self._wake.set()  # a failure is raised by the turns loop (_room_failed)

        self._room = asyncio.create_task(wait(), name="broker-room")

    def _room_failed(self) -> None:
        """Raises the error a wait for room ended with (the turns loop dies of it, and the
        supervisor sees it): a wait that failed is never dropped on the floor."""
        room = self._room
        if room is not None and room.done() and not room.cancelled():
            self._room = None
            error = room.exception()
            if error is not None:
                raise error

    def _wake_in(self, seconds: float) -> None:
        if self._timer is not None and not self._timer.cancelled():
            if self._timer.when() <= asyncio.get_running_loop().time() + seconds:
                return
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(seconds, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._wake.set()
