"""What a worker holds, under tokens it can check: its chunks of prompts and its leases.

A claim is a token in Redis that expires unless its holder renews it (the
heartbeat does, every second or so). The holder also keeps, in its own memory,
the moment until which it *knows* the claim is still its own: when it sent the
last renewal that succeeded, plus the TTL, less a margin. Redis expires the claim
no sooner than that, so a worker that asks ``Claim.valid()`` right before it sends
a request never sends under a claim that may have lapsed, however long it was
frozen, swapped out or cut off. When the claim's time is up, the holder waits for
the next renewal to say whether it is still its own (``Claim.settle``).

A chunk claim is the value of arq's in-progress key of the chunk; ``ChunkClaims``
takes and ends them (``worker/lua/*_chunk*.lua``), the heartbeat renews them
(``worker/lua/beat.lua``). Leases are claims too, kept by the lease book.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field

from arq.constants import in_progress_key_prefix
from arq.utils import timestamp_ms
from redis.asyncio import Redis

from contract import keys
from contract.chunks import arq_job
from contract.models import ChunkPayload
from contract.scripts import ScriptBook

HEAD_SCAN = 512  # queue entries looked at per claim for a chunk no other worker holds
# A chunk that this many holders died with is a suspect: it runs alone on its worker, so
# that the next death is its own (a chunk that lost one holder is split, not isolated: a
# plain SIGKILL of a worker must not slow everything it held to one chunk at a time).
SUSPECT_DEATHS = 2


def margin_for(ttl_seconds: float) -> float:
    """How much sooner than Redis a holder stops trusting its claim: clocks and the wire."""
    return max(0.25, ttl_seconds * 0.1)


@dataclass(eq=False)
class Claim:
    """One thing held under a token, good until ``valid_until`` (this process's clock)."""

    key: str
    token: str
    valid_until: float
    lost: bool = False
    _changed: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    def valid(self) -> bool:
        """Whether the holder may still act on it now (send a request under it)."""
        return not self.lost and time.monotonic() < self.valid_until

    def renewed(self, until: float) -> None:
        if not self.lost:
            self.valid_until = max(self.valid_until, until)
            self._tell()

    def lose(self) -> None:
        self.lost = True
        self._tell()

    async def settle(self) -> bool:
        """Waits until the claim is known to be held (True) or lost (False)."""
        while not self.valid():
            if self.lost:
                return False
            await self._changed.wait()
            self._changed.clear()
        return True

    def _tell(self) -> None:
        self._changed.set()


@dataclass(eq=False)
class ChunkClaim(Claim):
    lapses: int = 0  # earlier holders that died with this chunk

    @property
    def suspect(self) -> bool:
        return self.lapses >= SUSPECT_DEATHS


@dataclass(frozen=True)
class Taken:
    claims: list[ChunkClaim]
    suspect_waiting: bool  # a suspect was passed by: it needs a worker with free hands


class ChunkClaims:
    """Takes and ends the chunk claims of one worker (the heartbeat renews them)."""

    def __init__(self, redis: Redis, *, queue_name: str, ttl_seconds: float, keep_seconds: int):
        self.redis = redis
        self.queue_name = queue_name
        self.ttl_seconds = ttl_seconds
        self.ttl_ms = int(ttl_seconds * 1000)
        self.keep_seconds = keep_seconds
        self.scripts = ScriptBook(redis, "worker", ["claim_chunks", "end_chunk", "split_chunk"])

    async def take(self, want: int, *, hands_free: bool) -> Taken:
        """Claims up to ``want`` due chunks no worker holds (the queue's head first).

        A suspect (``SUSPECT_DEATHS`` holders died with it) is taken only with
        ``hands_free`` (this worker holds nothing), and then alone."""
        sent_at = time.monotonic()
        prefix = f"{secrets.token_hex(6)}."
        flat = await self.scripts.run(
            "claim_chunks",
            [self.queue_name, keys.chunk_runs()],
            [timestamp_ms(), want, in_progress_key_prefix, HEAD_SCAN, prefix, self.ttl_ms,
             self.keep_seconds, SUSPECT_DEATHS, int(hands_free)],
        )  # fmt: skip
        until = sent_at + self.ttl_seconds - margin_for(self.ttl_seconds)
        claims = [
            ChunkClaim(keys.decoded(flat[i]), keys.decoded(flat[i + 1]), until,
                       lapses=int(flat[i + 2]))
            for i in range(1, len(flat), 3)
        ]  # fmt: skip
        return Taken(claims, suspect_waiting=bool(int(flat[0])))

    async def end(self, claim: ChunkClaim, how: str, defer_ms: int = 0) -> bool:
        """``done``, ``hand_back`` or ``lapse``; False if the chunk was no longer this one's."""
        chunk_id = claim.key
        ended = await self.scripts.run(
            "end_chunk",
            [
                self.queue_name,
                keys.arq_in_progress(chunk_id),
                keys.arq_job(chunk_id),
                keys.arq_retry(chunk_id),
                keys.chunk_runs(),
            ],
            [chunk_id, claim.token, how, defer_ms],
        )
        return bool(ended)

    async def split(self, claim: ChunkClaim, batch_id: str, indices: list[int]) -> int:
        """Replaces a held chunk by one chunk per prompt of ``indices``, each inheriting the
        deaths counted so far; returns how many were made (0: no longer this one's)."""
        ids = [f"{claim.key}/{index}" for index in indices]
        enqueue_ms = int(time.time() * 1000)
        args: list[str | int | bytes] = [claim.key, claim.token, claim.lapses,
                                         self.keep_seconds * 1000]  # fmt: skip
        for chunk_id, index in zip(ids, indices, strict=True):
            payload = ChunkPayload(batch_id=batch_id, indices=(index,))
            args += [chunk_id, arq_job(payload, enqueue_ms)]
        made = await self.scripts.run(
            "split_chunk",
            [
                self.queue_name,
                keys.arq_in_progress(claim.key),
                keys.arq_job(claim.key),
                keys.arq_retry(claim.key),
                keys.chunk_runs(),
                keys.batch_chunks(batch_id),
                *(keys.arq_job(chunk_id) for chunk_id in ids),
            ],
            args,
        )
        return int(made)


__all__ = [
    "HEAD_SCAN",
    "SUSPECT_DEATHS",
    "ChunkClaim",
    "ChunkClaims",
    "Claim",
    "Taken",
    "margin_for",
]
