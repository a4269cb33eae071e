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
import time
from collections.abc import Sequence
from typing import Any

from arq.jobs import serialize_job
from redis.asyncio import Redis

from contract import keys
from contract.models import ChunkPayload
from contract.scripts import ScriptBook

JOB_FUNCTION = "run_chunk"
MIN_CHUNKS = 8  # a small batch is still spread over several chunks (and workers)
TAKE_PER_CALL = 1000  # chunks looked at per call when a stopped batch's are taken back


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


class ChunkQueue:
    def __init__(self, redis: Redis, *, queue_name: str, ttl_seconds: int) -> None:
        self.redis = redis
        self.queue_name = queue_name
        self.ttl = ttl_seconds
        self.scripts = ScriptBook(redis, "contract", ["take_queued_chunks"])

    async def add(
        self, pipe: Any, batch_id: str, ids: Sequence[str], chunks: Sequence[Sequence[int]]
    ) -> None:
        """Queues the chunks in ``pipe`` (the caller's MULTI), beside those already waiting."""
        head = await self.redis.zrange(self.queue_name, 0, 0, withscores=True)
        first = max(head[0][1], 1.0) if head else 1.0  # arq never starts a job scored 0
        enqueue_ms = int(time.time() * 1000)
        for chunk_id, indices in zip(ids, chunks, strict=True):
            job = arq_job(ChunkPayload(batch_id=batch_id, indices=tuple(indices)), enqueue_ms)
            pipe.set(keys.arq_job(chunk_id), job, px=self.ttl * 1000)
        pipe.zadd(self.queue_name, {chunk_id: first + n for n, chunk_id in enumerate(ids)})
        pipe.sadd(keys.batch_chunks(batch_id), *ids)

    async def take_free(self, batch_id: str) -> list[int]:
        """Takes the batch's chunks no worker holds out of the queue; returns their indices."""
        chunk_ids = sorted(
            keys.decoded(c) for c in await self.redis.smembers(keys.batch_chunks(batch_id))
        )
        taken: list[int] = []
        for part in chunked(chunk_ids, TAKE_PER_CALL):
            job_keys = [k for c in part for k in (keys.arq_job(c), keys.arq_in_progress(c))]
            for raw in await self.scripts.run(
                "take_queued_chunks", [self.queue_name, *job_keys], part
            ):
                if raw:
                    taken += ChunkPayload.model_validate(json.loads(raw)["a"][0]).indices
        return taken


__all__ = ["JOB_FUNCTION", "ChunkQueue", "arq_job", "chunk_size_for", "chunked", "json_dumps"]
