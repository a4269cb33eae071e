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
takes and ends them (``contract/lua/*_chunk*.lua``), the heartbeat renews them
(``worker/lua/beat.lua``). A claim that lapsed stays lost: it is never renewed or
taken back. Leases are claims too, kept by the lease book.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from arq.constants import in_progress_key_prefix
from redis.asyncio import Redis

from contract import keys
from contract.chunks import arq_job
from contract.models import ChunkPayload
from contract.scripts import ScriptBook
from worker.config import claim_margin

# A chunk that this many holders lapsed with is a suspect: it runs alone on its worker, so
# that the next lapse is its own (a chunk that lost one holder is split, not isolated: a
# plain SIGKILL of a worker must not slow everything it held to one chunk at a time).
SUSPECT_LAPSES = 2
IDLE_WAIT_SECONDS = 5.0  # an idle worker looks at the queue at least this often


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
    lapses: int = 0  # earlier holders that lapsed with this chunk (died, or were cut off)

    @property
    def suspect(self) -> bool:
        return self.lapses >= SUSPECT_LAPSES


@dataclass(frozen=True)
class Taken:
    claims: list[ChunkClaim]
    suspect_waiting: bool  # a suspect was passed by: it needs a worker with free hands
    # How long before a held claim may lapse (a lapsed chunk is claimable then): an idle
    # worker looks again no later than that. None: no chunk is held.
    next_lapse_seconds: float | None = None


class ChunkClaims:
    """Takes and ends the chunk claims of one worker (the heartbeat renews them).

    The queue's chunks wait in arq's queue, or are held (``keys.held_chunks``): a claim
    takes the queue's head, wherever held chunks stood (``contract/lua/claim_chunks.lua``).
    """

    def __init__(self, redis: Redis, *, queue_name: str, ttl_seconds: float, keep_seconds: int):
        self.redis = redis
        self.queue_name = queue_name
        self.ttl_seconds = ttl_seconds
        self.ttl_ms = int(ttl_seconds * 1000)
        self.keep_seconds = keep_seconds
        self.scripts = ScriptBook(redis, "contract", ["claim_chunks", "end_chunk", "split_chunk"])

    def _queue_keys(self) -> list[str]:
        """The keys every chunk script names first: queue, held, places."""
        name = self.queue_name
        return [name, keys.held_chunks(name), keys.chunk_places(name)]

    async def take(self, want: int, *, hands_free: bool, skip: Sequence[str] = ()) -> Taken:
        """Claims up to ``want`` chunks from the queue's head, none of ``skip`` (chunks
        this worker lost and is still winding down: it would only hand them back).

        A suspect (``SUSPECT_LAPSES`` holders lapsed with it) is taken only with
        ``hands_free`` (this worker holds nothing), and then alone."""
        sent_at = time.monotonic()
        prefix = f"{secrets.token_hex(6)}."
        flat = await self.scripts.run(
            "claim_chunks",
            [*self._queue_keys(), keys.chunk_lapses(), keys.fleet_beat(), keys.fleet_quiet_end(),
             keys.work_marker(self.queue_name)],
            [want, in_progress_key_prefix, prefix, self.ttl_ms, self.keep_seconds,
             SUSPECT_LAPSES, int(hands_free), *skip],
        )  # fmt: skip
        until = sent_at + self.ttl_seconds - claim_margin(self.ttl_seconds)
        claims = [
            ChunkClaim(keys.decoded(flat[i]), keys.decoded(flat[i + 1]), until,
                       lapses=int(flat[i + 2]))
            for i in range(2, len(flat), 3)
        ]  # fmt: skip
        next_lapse = int(flat[1])
        return Taken(
            claims,
            suspect_waiting=bool(int(flat[0])),
            next_lapse_seconds=next_lapse / 1000 if next_lapse >= 0 else None,
        )

    async def wait_for_work(self, seconds: float) -> bool:
        """Blocks until a chunk is made claimable in this queue (True) or ``seconds`` pass
        (False): an idle worker sleeps here instead of polling the queue."""
        found = await self.redis.blpop([keys.work_marker(self.queue_name)], timeout=seconds)
        return found is not None

    async def end(
        self, claim: ChunkClaim, how: str, *, batch_id: str = "", indices: Sequence[int] = (),
        defer_ms: int = 0,
    ) -> int:  # fmt: skip
        """``done``, ``hand_back``, ``lapse`` or ``discard`` (``contract/lua/end_chunk.lua``).

        With the chunk's ``batch_id`` and prompt ``indices``: ``done`` with a prompt
        unsettled is a hand back instead (returns 2), and a chunk that goes back to the
        queue shows its unsettled prompts queued. Returns 1 when it ended as asked, 0 if
        the chunk was no longer this worker's."""
        chunk_id = claim.key
        ended = await self.scripts.run(
            "end_chunk",
            [*self._queue_keys(), keys.arq_in_progress(chunk_id), keys.arq_job(chunk_id),
             keys.arq_retry(chunk_id), keys.chunk_lapses(), keys.work_marker(self.queue_name),
             keys.batch_meta(batch_id), keys.batch_states(batch_id), keys.batch_counts(batch_id)],
            [chunk_id, claim.token, how, defer_ms, self.keep_seconds, *indices],
        )  # fmt: skip
        return int(ended)

    async def split(self, claim: ChunkClaim, batch_id: str, indices: list[int]) -> int:
        """Replaces a held chunk by one chunk per prompt of ``indices``, each inheriting the
        lapses counted so far, and shows those prompts queued, in one step; returns how many
        chunks were made (0: the chunk was no longer this worker's)."""
        ids = [f"{claim.key}/{index}" for index in indices]
        enqueue_ms = int(time.time() * 1000)
        args: list[str | int | bytes] = [claim.key, claim.token, claim.lapses,
                                         self.keep_seconds]  # fmt: skip
        for chunk_id, index in zip(ids, indices, strict=True):
            payload = ChunkPayload(batch_id=batch_id, indices=(index,))
            args += [chunk_id, arq_job(payload, enqueue_ms), index]
        made = await self.scripts.run(
            "split_chunk",
            [*self._queue_keys(), keys.arq_in_progress(claim.key), keys.arq_job(claim.key),
             keys.arq_retry(claim.key), keys.chunk_lapses(), keys.work_marker(self.queue_name),
             keys.batch_chunks(batch_id), keys.batch_states(batch_id), keys.batch_counts(batch_id),
             *(keys.arq_job(chunk_id) for chunk_id in ids)],
            args,
        )  # fmt: skip
        return int(made)


__all__ = [
    "IDLE_WAIT_SECONDS",
    "SUSPECT_LAPSES",
    "ChunkClaim",
    "ChunkClaims",
    "Claim",
    "Taken",
    "claim_margin",
]
