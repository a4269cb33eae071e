"""The producer's side of a batch: staged, published as chunks, read, cancelled, retried.

Every prompt's request and result live in the batch's own hashes, its state in a
bit field with exact counts beside it (``contract.states``). A batch is written in
two steps, so that an interrupted enqueue leaves nothing a worker could run: first
its requests are staged (the batch says ``validating`` and expires soon), then one
MULTI/EXEC publishes it (the chunks, the counts, the real TTL) all at once.
The worker's side is ``contract.ledger``, arq's queue ``contract.chunks``, and
stopping a batch early ``contract.stopping``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from redis.asyncio import Redis

from contract import keys
from contract.chunks import ChunkQueue, chunk_size_for, chunked
from contract.ledger import PromptLedger, state_keys
from contract.models import BatchStatus, PromptRequest, iso_now, parse_timestamp
from contract.outbox import EVENT_KEEP_SECONDS, event_keys, new_event_id
from contract.scripts import ScriptBook
from contract.states import CODE, FINAL_STATES, PROMPT_STATES
from contract.stopping import BatchStopper

WRITE_BATCH = 1000  # requests per HSET while staging; results per HMGET while reading
STAGING_TTL_SECONDS = 3600  # an enqueue that never publishes leaves nothing for long

_TIMESTAMPS = ("created_at", "in_progress_at", "expires_at", "completed_at", "failed_at",
               "expiring_at", "expired_at", "cancelling_at", "cancelled_at")  # fmt: skip
_META_FIELDS = ("state", "total", "completion_window", "metadata", "errors", *_TIMESTAMPS)


def _status(batch_id: str, meta: list[Any], raw_counts: list[Any]) -> BatchStatus | None:
    fields = dict(zip(_META_FIELDS, meta, strict=True))
    if fields["state"] is None or fields["total"] is None:
        return None
    counts = dict(zip(PROMPT_STATES, (int(c or 0) for c in raw_counts), strict=True))
    total = int(fields["total"])
    state = keys.decoded(fields["state"])
    if state == "validating":
        counts["queued"] = total
    settled = sum(counts[s] for s in FINAL_STATES)
    return BatchStatus(
        batch_id=batch_id,
        state=state,
        total=total,
        queued=counts["queued"],
        in_progress=counts["running"],
        waiting=counts["waiting"],
        succeeded=counts["succeeded"],
        failed=counts["failed"],
        cancelled=counts["cancelled"],
        done=(settled >= total and state != "validating") or state == "failed",
        completion_window=keys.decoded(fields["completion_window"] or b"24h"),
        metadata=json.loads(fields["metadata"]) if fields["metadata"] else {},
        errors=json.loads(fields["errors"]) if fields["errors"] else [],
        **{name: parse_timestamp(fields[name]) for name in _TIMESTAMPS},
    )


def _register(pipe: Any, batch_id: str, now_ms: int, ttl: int) -> None:
    """Lists the batch in the registry that ``batches`` and ``top`` read (kept as long)."""
    pipe.zadd(keys.batches_created(), {batch_id: now_ms})
    pipe.zremrangebyscore(keys.batches_created(), "-inf", now_ms - ttl * 1000)
    pipe.expire(keys.batches_created(), ttl)


class BatchStore:
    def __init__(self, redis: Redis, *, queue_name: str, ttl_seconds: int) -> None:
        self.redis = redis
        self.queue_name = queue_name
        self.ttl = ttl_seconds
        self.queue = ChunkQueue(redis, queue_name=queue_name, ttl_seconds=ttl_seconds)
        self.ledger = PromptLedger(redis, ttl_seconds=ttl_seconds)
        self.stopper = BatchStopper(redis, queue_name=queue_name, ttl_seconds=ttl_seconds)
        self.scripts = ScriptBook(redis, "contract", ["requeue_failed", "record_failed"])

    async def state(self, batch_id: str) -> str | None:
        raw = await self.redis.hget(keys.batch_meta(batch_id), "state")
        return keys.decoded(raw) if raw else None

    async def discard(self, batch_id: str) -> None:
        await self.redis.delete(*keys.batch_keys(batch_id))

    async def stage(
        self,
        batch_id: str,
        meta: dict[str, str],
        requests: Sequence[str],
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """Writes the batch record and its requests (by index), not yet visible to workers."""
        meta_key, requests_key = keys.batch_meta(batch_id), keys.batch_requests(batch_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(*keys.batch_keys(batch_id))
            pipe.hset(meta_key, mapping={**meta, "state": "validating"})
            pipe.expire(meta_key, STAGING_TTL_SECONDS)
            await pipe.execute()
        for start in range(0, len(requests), WRITE_BATCH * 8):
            async with self.redis.pipeline(transaction=False) as pipe:
                for offset in range(
                    start, min(start + WRITE_BATCH * 8, len(requests)), WRITE_BATCH
                ):
                    part = requests[offset : offset + WRITE_BATCH]
                    pipe.hset(
                        requests_key,
                        mapping=dict(zip(range(offset, offset + len(part)), part, strict=True)),
                    )
                pipe.expire(requests_key, STAGING_TTL_SECONDS)
                await pipe.execute()
            if progress is not None:
                progress(min(start + WRITE_BATCH * 8, len(requests)))

    async def publish(self, batch_id: str, total: int, chunk_size: int) -> int:
        """Makes a staged batch runnable in one MULTI/EXEC; returns how many chunks it has."""
        chunks = chunked(range(total), chunk_size_for(total, chunk_size))
        ids = [f"{batch_id}:{n}" for n in range(len(chunks))]
        now = iso_now()
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                keys.batch_meta(batch_id),
                mapping={"state": "in_progress", "in_progress_at": now, "chunks": len(chunks)},
            )
            pipe.hset(keys.batch_counts(batch_id), mapping={s: 0 for s in PROMPT_STATES})
            pipe.hset(keys.batch_counts(batch_id), "queued", total)
            await self.queue.add(pipe, batch_id, ids, chunks)
            for key in keys.batch_keys(batch_id):
                pipe.expire(key, self.ttl)
            now_ms = int(time.time() * 1000)
            _register(pipe, batch_id, now_ms, self.ttl)
            expires_ms = await self.redis.hget(keys.batch_meta(batch_id), "expires_ms")
            if expires_ms is not None:
                pipe.zadd(keys.batch_deadlines(), {batch_id: int(expires_ms)})
                pipe.expire(keys.batch_deadlines(), self.ttl)
            await pipe.execute()
        return len(chunks)

    async def record_failed(
        self, batch_id: str, meta: dict[str, str], errors: Sequence[dict[str, object]]
    ) -> bool:
        """A batch whose input was refused: nothing to run, its errors kept (``failed``), and
        its ``batch.failed`` event written in the same step. False if it was already."""
        record = {**meta, "errors": json.dumps(list(errors))}
        event_id = new_event_id(batch_id)
        others = [key for key in keys.batch_keys(batch_id) if key != keys.batch_meta(batch_id)]
        recorded = await self.scripts.run(
            "record_failed",
            [keys.batch_meta(batch_id), keys.batches_created(), *event_keys(event_id), *others],
            [batch_id, self.ttl, iso_now(), int(time.time() * 1000), event_id,
             EVENT_KEEP_SECONDS, *(item for pair in record.items() for item in pair)],
        )  # fmt: skip
        return bool(recorded)

    async def status(self, batch_id: str) -> BatchStatus | None:
        (found,) = await self.statuses([batch_id])
        return found

    async def statuses(self, batch_ids: Sequence[str]) -> list[BatchStatus | None]:
        """Each batch's status (None where it is gone), in one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for batch_id in batch_ids:
                pipe.hmget(keys.batch_meta(batch_id), *_META_FIELDS)
                pipe.hmget(keys.batch_counts(batch_id), *PROMPT_STATES)
            replies = await pipe.execute()
        return [
            _status(batch_id, meta, counts)
            for batch_id, meta, counts in zip(batch_ids, replies[::2], replies[1::2], strict=True)
        ]

    async def recent(self, limit: int) -> list[BatchStatus]:
        """The newest batches first, from the registry (never a keyspace scan)."""
        ids = [
            keys.decoded(raw)
            for raw in await self.redis.zrevrange(keys.batches_created(), 0, limit - 1)
        ]
        found = await self.statuses(ids)
        gone = [batch_id for batch_id, status in zip(ids, found, strict=True) if status is None]
        if gone:  # expired batches leave the registry as they are noticed
            await self.redis.zrem(keys.batches_created(), *gone)
        return [status for status in found if status is not None]

    async def created_at(self, batch_id: str) -> datetime | None:
        return parse_timestamp(await self.redis.hget(keys.batch_meta(batch_id), "created_at"))

    async def requests(
        self, batch_id: str, indices: Sequence[int], enqueued_at: datetime
    ) -> list[PromptRequest]:
        """The requests at these indices (those still there), in their order."""
        return await self.ledger.requests(batch_id, indices, enqueued_at)

    async def raw_results(self, batch_id: str, indices: Sequence[int]) -> list[bytes | None]:
        """The stored result lines (native JSON) at these indices, None where there is none."""
        found: list[bytes | None] = []
        for part in chunked(indices, WRITE_BATCH):
            found += await self.redis.hmget(keys.batch_results(batch_id), part)
        return found

    async def prompt_state(self, batch_id: str, index: int) -> tuple[str, int]:
        """(state, failed attempts so far) of one prompt."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.execute_command("BITFIELD", keys.batch_states(batch_id), "GET", "u4", f"#{index}")
            pipe.hget(keys.batch_attempts(batch_id), index)
            (code,), attempts = await pipe.execute()
        total = json.loads(attempts).get("total", 0) if attempts else 0
        return PROMPT_STATES[code], int(total)

    async def indices_in(self, batch_id: str, state: str, total: int) -> list[int]:
        """Every index in ``state``, read from the bit field in one GET."""
        raw = await self.redis.get(keys.batch_states(batch_id)) or b""
        code = CODE[state]
        found = []
        for index in range(total):
            byte = raw[index // 2] if index // 2 < len(raw) else 0
            if (byte >> 4 if index % 2 == 0 else byte & 0x0F) == code:
                found.append(index)
        return found

    async def cancel(self, batch_id: str) -> int:
        """Stops the batch (``contract.stopping``); returns how many were cancelled here."""
        return await self.stopper.cancel(batch_id)

    async def requeue_failed(self, batch_id: str, chunk_size: int) -> int:
        """Queues the failed prompts again under their own job IDs; returns how many."""
        total = int(await self.redis.hget(keys.batch_meta(batch_id), "total") or 0)
        failed = await self.indices_in(batch_id, "failed", total)
        moved: list[int] = []
        for part in chunked(failed, WRITE_BATCH):
            done = await self.scripts.run(
                "requeue_failed", state_keys(batch_id), [iso_now(), *part]
            )
            moved += [int(i) for i in done]
        if not moved:
            return 0
        round_ = await self.redis.hincrby(keys.batch_meta(batch_id), "retries", 1)
        chunks = chunked(moved, chunk_size_for(len(moved), chunk_size))
        ids = [f"{batch_id}:r{round_}:{n}" for n in range(len(chunks))]
        async with self.redis.pipeline(transaction=True) as pipe:
            await self.queue.add(pipe, batch_id, ids, chunks)
            for key in keys.batch_keys(batch_id):
                pipe.expire(key, self.ttl)
            await pipe.execute()
        return len(moved)


__all__ = ["WRITE_BATCH", "BatchStore"]
