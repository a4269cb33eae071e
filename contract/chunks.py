"""arq's queue as this service uses it: chunks of prompts, their IDs, their order.

The queue only carries chunks: a few bytes naming prompt indices of one batch,
serialised the way arq serialises a job (JSON, never pickle). Chunks of all active
batches take turns: a new batch's chunk *i* is scored just after the queue's head
plus *i*, so it lines up beside the chunks already waiting instead of behind all of
them (round-robin across batches, input order within one).
"""

from __future__ import annotations

import json
import math
import secrets
import time
from collections.abc import Sequence
from typing import Any

from arq.jobs import serialize_job
from redis.asyncio import Redis

from contract import keys
from contract.models import ChunkPayload
from contract.scripts import ScriptBook
from contract.states import CODE

JOB_FUNCTION = "run_chunk"
MIN_CHUNKS = 8  # a small batch is still spread over several chunks (and workers)


def json_dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), default=str).encode()


def chunked(indices: Sequence[int], size: int) -> list[list[int]]:
    return [list(indices[start : start + size]) for start in range(0, len(indices), size)]


def chunk_size_for(total: int, chunk_size: int) -> int:
    """Prompts per chunk: ``chunk_size``, smaller for a small batch so several workers share it."""
    return max(1, min(chunk_size, math.ceil(total / MIN_CHUNKS)))


def arq_job(payload: ChunkPayload, enqueue_ms: int) -> bytes:
    """The chunk as arq stores a job: ``run_chunk(payload)``."""
    return serialize_job(
        JOB_FUNCTION, (payload.model_dump(),), {}, None, enqueue_ms, serializer=json_dumps
    )


SWEEP_STEP = 100  # active batches looked at per call of the stranded sweep

Cursor = tuple[float, int]  # a walk's place in a sorted set: a score, and how many at it were seen
WALK_START: Cursor = (float("-inf"), 0)


async def _walk(
    redis: Redis, key: str, after: Cursor, limit: int
) -> tuple[list[str], Cursor | None]:
    """Up to ``limit`` members of a sorted set past ``after``, and the cursor past them (None
    at the end). The cursor counts the members seen at its score, so members that share a
    score (batches of one millisecond) are never skipped at a step's edge."""
    score, seen = after
    found = await redis.zrangebyscore(key, score, "+inf", start=seen, num=limit, withscores=True)
    if not found:
        return [], None
    last = float(found[-1][1])
    at_last = sum(1 for _, s in found if float(s) == last)
    cursor = (last, seen + at_last if last == score else at_last)
    return [keys.decoded(member) for member, _ in found], cursor


DEFAULT_QUEUE = "chatgptes:queue"  # the queue of a batch whose record names none


class ChunkQueue:
    def __init__(self, redis: Redis, *, queue_name: str, ttl_seconds: int) -> None:
        self.redis = redis
        self.queue_name = queue_name
        self.ttl = ttl_seconds
        self.scripts = ScriptBook(
            redis, "contract", ["find_stranded", "requeue_stranded", "adopt_batches"]
        )

    async def active(
        self, after: Cursor, limit: int = SWEEP_STEP
    ) -> tuple[list[str], Cursor | None]:
        """A step of a walk over the queue's active batches, oldest first: the batches after
        ``after`` and where the next step starts (None once the walk is over)."""
        return await _walk(self.redis, keys.active_batches(self.queue_name), after, limit)

    async def adopt(self, after: Cursor, limit: int = SWEEP_STEP) -> Cursor | None:
        """One step of a walk over the registry of batches, listing among this queue's active
        batches the running ones of it that are not listed (published before the active set
        existed, or by an older producer). Returns where the next step starts, or None once
        the registry is walked."""
        batch_ids, cursor = await _walk(self.redis, keys.batches_created(), after, limit)
        if batch_ids:
            await self.scripts.run(
                "adopt_batches",
                [keys.active_batches(self.queue_name), *(keys.batch_meta(b) for b in batch_ids)],
                [self.queue_name, int(self.queue_name == DEFAULT_QUEUE), self.ttl, *batch_ids],
            )
        return cursor

    async def stranded(self, batch_ids: Sequence[str]) -> list[str]:
        """Which of these batches of the queue have unsettled prompts that no chunk of the
        queue carries; those that ended leave the active set (one call)."""
        if not batch_ids:
            return []
        name = self.queue_name
        per_batch = [
            key for batch_id in batch_ids
            for key in (keys.batch_meta(batch_id), keys.batch_counts(batch_id),
                        keys.batch_chunks(batch_id))
        ]  # fmt: skip
        found = await self.scripts.run(
            "find_stranded",
            [keys.active_batches(name), name, keys.held_chunks(name), *per_batch],
            list(batch_ids),
        )
        return [keys.decoded(batch_id) for batch_id in found]

    async def requeue_stranded(self, batch_id: str, chunk_size: int) -> int:
        """Queues again the batch's unsettled prompts if no chunk of the queue carries them
        (the housekeeper's sweep: a safety net, so that ``wait``, ``retry`` and ``cancel``
        end even after a chunk was lost). Returns how many prompts were queued again."""
        states = await self.redis.get(keys.batch_states(batch_id)) or b""
        total = int(await self.redis.hget(keys.batch_meta(batch_id), "total") or 0)
        unsettled = [i for i in range(total) if code_at(states, i) < CODE["succeeded"]]
        if not unsettled:
            return 0
        chunks = chunked(unsettled, chunk_size_for(len(unsettled), chunk_size))
        sweep = secrets.token_hex(3)  # the chunks' IDs: new ones, whatever was swept before
        ids = [f"{batch_id}:s{sweep}:{n}" for n in range(len(chunks))]
        enqueue_ms = int(time.time() * 1000)
        args: list[str | int | float | bytes] = [self.ttl, len(chunks), batch_id]
        for chunk_id, indices in zip(ids, chunks, strict=True):
            payload = ChunkPayload(batch_id=batch_id, indices=tuple(indices))
            args += [chunk_id, arq_job(payload, enqueue_ms)]
        args += unsettled
        name = self.queue_name
        return int(
            await self.scripts.run(
                "requeue_stranded",
                [name, keys.held_chunks(name), keys.batch_chunks(batch_id),
                 keys.batch_states(batch_id), keys.batch_counts(batch_id),
                 keys.batch_meta(batch_id), keys.work_marker(name), keys.active_batches(name),
                 *(keys.arq_job(chunk_id) for chunk_id in ids)],
                args,
            )
        )  # fmt: skip


def code_at(states: bytes, index: int) -> int:
    """The 4-bit state code of ``index`` in a batch's state bit field."""
    byte = states[index // 2] if index // 2 < len(states) else 0
    return byte >> 4 if index % 2 == 0 else byte & 0x0F


__all__ = [
    "JOB_FUNCTION", "SWEEP_STEP", "ChunkQueue", "arq_job", "chunk_size_for", "chunked",
    "code_at", "json_dumps",
]  # fmt: skip
