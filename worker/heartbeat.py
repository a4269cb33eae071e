"""The heartbeat renews what this worker holds, and nothing else, about once a second.

One round trip per beat: the chunk claims (``renew_chunks.lua``), the leases
(``renew_leases.lua``), and the worker's line in the registry that ``workers`` and
``top`` read. Each renewal answers with what was lost, and the holders are told:
a lost chunk's unsent prompts are dropped, a lost lease is never sent under. A
renewal that succeeds moves each claim's ``valid_until`` to when the beat was sent
plus the TTL, less a margin (``worker.claims``).

Nothing else runs here: expiry, stop steps, counts and proxies are the
housekeeper's, so a long chore never delays a renewal. A beat that gets no answer
within half the TTL is given up, and the next one is sent on time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from contract import keys
from contract.redaction import redact_text
from contract.retrying import TRANSIENT
from worker.claims import ChunkClaim, ChunkClaims, Claim, margin_for
from worker.leases import Lease, LeaseBook

log = structlog.get_logger("chatgptes.heartbeat")
QUIET_SECONDS = 60.0  # one line about failing beats per this long, not one per beat


class Heartbeat:
    def __init__(
        self,
        redis: Redis,
        *,
        chunks: ChunkClaims,
        book: LeaseBook,
        worker_id: str,
        interval: float,
        ttl: float,
        held_chunks: Callable[[], Sequence[ChunkClaim]],
        held_leases: Callable[[], Sequence[Lease]],
        report: Callable[[], Mapping[str, str | int | float]],
        lost_chunks: Callable[[list[str]], None],
        lost_leases: Callable[[list[str]], None],
    ) -> None:
        self.redis = redis
        self.chunks = chunks
        self.book = book
        self.worker_id = worker_id
        self.interval = interval
        self.ttl = ttl
        self.held_chunks = held_chunks
        self.held_leases = held_leases
        self.report = report
        self.lost_chunks = lost_chunks
        self.lost_leases = lost_leases
        self.beats = 0
        self.missed = 0
        self._failing_since: float | None = None
        self._logged_at = -QUIET_SECONDS

    async def run(self) -> None:
        while True:
            began = time.monotonic()
            await self.beat()
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - began)))

    async def beat(self) -> bool:
        """One renewal of everything held; False if Redis gave no answer in time."""
        claims = list(self.held_chunks())
        leases = list(self.held_leases())
        sent_at = time.monotonic()
        try:
            async with asyncio.timeout(self.ttl / 2):
                replies = await self._send(claims, leases)
        except (TimeoutError, *TRANSIENT) as error:
            self._missed(error)
            return False
        until = sent_at + self.ttl - margin_for(self.ttl)
        lost_chunks = self._told(replies[0], claims, lambda claim: claim.key, until)
        lease_claims = [lease.claim for lease in leases]
        lost_leases = self._told(replies[1], lease_claims, lambda claim: claim.token, until)
        if lost_chunks:
            log.warning("chunks.lost", chunks=len(lost_chunks))
            self.lost_chunks(lost_chunks)
        if lost_leases:
            self.lost_leases(lost_leases)
        self.beats += 1
        if self._failing_since is not None:
            log.info("heartbeat.back", after=round(time.monotonic() - self._failing_since, 1))
            self._failing_since = None
        return True

    @staticmethod
    def _told(
        reply: object, claims: Sequence[Claim], name: Callable[[Claim], str], until: float
    ) -> list[str]:
        """Applies one renewal's reply (the names of the claims lost): the lost lose, the
        rest are renewed until ``until``. Returns the names lost."""
        if isinstance(reply, BaseException) or not isinstance(reply, list):
            return []  # this renewal failed alone: nothing learnt, nothing renewed
        lost = {keys.decoded(item) for item in reply}
        found = []
        for claim in claims:
            if name(claim) in lost:
                claim.lose()
                found.append(name(claim))
            else:
                claim.renewed(until)
        return found

    async def _send(self, claims: list[ChunkClaim], leases: list[Lease]) -> list[Any]:
        for attempt in (1, 2):
            async with self.redis.pipeline(transaction=False) as pipe:
                self.chunks.queue_renewal(pipe, claims)
                self.book.queue_renewal(pipe, leases)
                self._queue_report(pipe)
                replies = await pipe.execute(raise_on_error=False)
            if not any(isinstance(reply, NoScriptError) for reply in replies[:2]):
                break
            if attempt == 1:  # Redis restarted and forgot the scripts
                await self.chunks.scripts.load()
                await self.book.scripts.load()
        for reply in replies[:2]:
            if isinstance(reply, TRANSIENT):
                raise reply
        return replies

    def _queue_report(self, pipe: Any) -> None:
        ttl_ms = int(self.ttl * 1000)
        now_ms = int(time.time() * 1000)
        worker = keys.worker_info(self.worker_id)
        pipe.zadd(keys.workers_seen(), {self.worker_id: now_ms})
        pipe.hset(worker, mapping=dict(self.report()))
        pipe.pexpire(worker, ttl_ms * 4)
        pipe.zremrangebyscore(keys.workers_seen(), "-inf", now_ms - ttl_ms * 4)
        pipe.pexpire(keys.workers_seen(), ttl_ms * 4)  # the last worker gone, it goes too

    def _missed(self, error: BaseException) -> None:
        self.missed += 1
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
        if now - self._logged_at >= QUIET_SECONDS:
            self._logged_at = now
            log.warning(
                "heartbeat.missed",
                error=redact_text(f"{type(error).__name__}: {error}")[:300],
                failing_for=round(now - self._failing_since, 1),
            )
