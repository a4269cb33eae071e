"""The heartbeat renews what this worker holds, and nothing else, about once a second.

One script call per beat (``worker/lua/beat.lua``): the chunk claims, the leases, and
the worker's line in the registry that ``workers`` and ``top`` read. Each renewal
answers with what was lost, and the holders are told:
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
from arq.constants import in_progress_key_prefix
from redis.asyncio import Redis

from contract import keys
from contract.redaction import redact_text
from contract.retrying import TRANSIENT
from contract.scripts import ScriptBook
from worker.claims import ChunkClaim, ChunkClaims, Claim, claim_margin
from worker.leases import POLICY_TTL_SECONDS, Lease, LeaseBook, renewal_tokens

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
        self.scripts = ScriptBook(redis, "worker", ["beat"])
        self.report_ttl_ms = int(ttl * 4000)  # a report outlives a few missed beats
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
        until = sent_at + self.ttl - claim_margin(self.ttl)
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
        if not isinstance(reply, list):
            return []
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
        """One call (beat.lua); its reply: [the chunk IDs lost, the lease tokens lost]."""
        tokens = renewal_tokens(leases)
        pairs = [part for claim in claims for part in (claim.key, claim.token)]
        report = [part for item in self.report().items() for part in item]
        args = [
            self.book.ttl_ms, POLICY_TTL_SECONDS * 1000, self.chunks.ttl_ms,
            in_progress_key_prefix, self.report_ttl_ms, self.worker_id,
            sum(1 for lease in leases if lease.is_probe), len(tokens), len(claims),
            len(report) // 2, *tokens, *pairs, *report,
        ]  # fmt: skip
        keys_ = [
            *self.book.keys, keys.workers_seen(), keys.worker_info(self.worker_id),
            keys.held_chunks(self.chunks.queue_name), keys.chunk_lapses(), keys.fleet_beat(),
            keys.fleet_quiet_end(),
        ]  # fmt: skip
        return list(await self.scripts.run("beat", keys_, args))

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
