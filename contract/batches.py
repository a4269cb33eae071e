"""The producer's side of a batch: claimed, staged, published as chunks, read, cancelled,
retried.

Every prompt's request and result live in the batch's own hashes, its state in a
bit field with exact counts beside it (``contract.states``). An enqueue first claims
the batch ID (one script: the ID is free, or nobody else holds it), then stages the
requests and the chunks part by part under its owner token (the batch says
``validating``; staged parts expire within the hour; a part written by an enqueue that
lost its claim is refused), then one script publishes it all at once: the counts, the
real TTL, the chunks in the queue. Until then no worker sees any of it.
The worker's side is ``contract.ledger``, arq's queue ``contract.chunks``, and
stopping a batch early ``contract.stopping``.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from redis.asyncio import Redis

from contract import keys
from contract.chunks import arq_job, chunk_size_for, chunked, code_at
from contract.errors import ServiceError
from contract.ledger import PromptLedger, state_keys
from contract.models import (
    BatchStatus,
    ChunkPayload,
    JobResult,
    PromptRequest,
    iso_now,
    parse_timestamp,
)
from contract.outbox import EVENT_KEEP_SECONDS, event_keys
from contract.scripts import ScriptBook
from contract.states import CODE, FINAL_STATES, PROMPT_STATES
from contract.stopping import BatchStopper

WRITE_BATCH = 1000  # requests per script call while staging; results per HMGET while reading
CHUNKS_PER_CALL = 500  # chunks staged (or retried) per script call
RETRY_LOOKS = 5  # a retry looks at its batch's chunks again this often while they change
STAGING_TTL_SECONDS = 3600  # an enqueue that never publishes leaves nothing for long
# A staging left unwritten this long was abandoned (its enqueue died): its ID may be taken.
STAGING_IDLE_SECONDS = 60
RETRYABLE_STATES = ("in_progress", "completed")


class ClaimLost(ServiceError, RuntimeError):
    """The enqueue no longer owns the batch it was staging: nothing more was written."""

    def __init__(self, batch_id: str) -> None:
        super().__init__(
            f"batch {batch_id} was taken by another enqueue while this one staged it "
            f"(its staging sat idle over {STAGING_IDLE_SECONDS} s); nothing was enqueued"
        )


class RetryRefused(ServiceError, ValueError):
    """``retry`` of a batch that was stopped (cancelled or expired): its history stays."""

    def __init__(self, batch_id: str, state: str) -> None:
        self.state = state
        super().__init__(
            f"batch {batch_id} is {state}: retry is refused, so that what it ended with "
            "stays as it is; enqueue the prompts again as a new batch"
        )


_TIMESTAMPS = ("created_at", "in_progress_at", "expires_at", "completed_at", "failed_at",
               "expiring_at", "expired_at", "cancelling_at", "cancelled_at")  # fmt: skip
_META_FIELDS = ("state", "total", "completion_window", "metadata", "errors", *_TIMESTAMPS)


def _status(batch_id: str, meta: list[Any], raw_counts: dict[Any, Any]) -> BatchStatus | None:
    fields = dict(zip(_META_FIELDS, meta, strict=True))
    if fields["state"] is None or fields["total"] is None:
        return None
    found = {keys.decoded(name): int(count) for name, count in raw_counts.items()}
    counts = {state: found.get(state, 0) for state in PROMPT_STATES}
    by_site = {
        name.removeprefix("site:"): count
        for name, count in sorted(found.items())
        if name.startswith("site:")
    }
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
        answered_by_site=by_site,
        **{name: parse_timestamp(fields[name]) for name in _TIMESTAMPS},
    )


class BatchStore:
    def __init__(self, redis: Redis, *, queue_name: str, ttl_seconds: int) -> None:
        self.redis = redis
        self.queue_name = queue_name
        self.ttl = ttl_seconds
        self.ledger = PromptLedger(redis, ttl_seconds=ttl_seconds)
        self.stopper = BatchStopper(
            redis, queue_name=queue_name, ttl_seconds=ttl_seconds, ledger=self.ledger
        )
        self.scripts = ScriptBook(
            redis,
            "contract",
            ["claim_batch", "stage_requests", "stage_chunks", "publish_batch", "release_batch",
             "requeue_failed", "record_failed"],
        )  # fmt: skip

    async def state(self, batch_id: str) -> str | None:
        raw = await self.redis.hget(keys.batch_meta(batch_id), "state")
        return keys.decoded(raw) if raw else None

    async def discard(self, batch_id: str) -> None:
        await self.redis.delete(*keys.batch_keys(batch_id))

    async def claim(self, batch_id: str, owner: str, meta: dict[str, str]) -> str | None:
        """Claims the ID for ``owner`` and writes the batch record (``validating``).

        Returns None when claimed, or the state of the batch that holds the ID. A
        staging nobody has written for ``STAGING_IDLE_SECONDS`` may be claimed again.
        """
        # The queue it runs in: sweeps of other queues on the same Redis leave it alone.
        fields = [item for pair in {**meta, "queue": self.queue_name}.items() for item in pair]
        claimed, *state = await self.scripts.run(
            "claim_batch",
            keys.batch_keys(batch_id),
            [owner, STAGING_TTL_SECONDS, STAGING_IDLE_SECONDS * 1000, *fields],
        )
        return None if int(claimed) else keys.decoded(state[0])

    async def stage(self, batch_id: str, owner: str, start: int, requests: Sequence[str]) -> None:
        """Stages requests (JSON, as ``StoredRequest`` writes them) under indices ``start``…,
        not yet visible to workers.

        ``ClaimLost`` if ``owner`` no longer holds the batch (then nothing was written).
        """
        meta_keys = [keys.batch_meta(batch_id), keys.batch_requests(batch_id)]

        def build(pipe: Any) -> None:
            for offset in range(0, len(requests), WRITE_BATCH):
                part = "\n".join(requests[offset : offset + WRITE_BATCH])
                args = [owner, STAGING_TTL_SECONDS, start + offset, part]
                self.scripts.queue(pipe, "stage_requests", meta_keys, args)

        if not all(int(written) for written in await self.scripts.pipelined(build)):
            raise ClaimLost(batch_id)

    async def publish(self, batch_id: str, owner: str, total: int, chunk_size: int) -> int:
        """Makes a staged batch runnable in one step; returns how many chunks it has.

        Its chunks are staged first, a part at a time (invisible, expiring with the
        staging), then one script queues them all. ``ClaimLost`` if ``owner`` lost it.
        """
        size = chunk_size_for(total, chunk_size)
        count = -(-total // size)
        enqueue_ms = int(time.time() * 1000)
        for first in range(0, count, CHUNKS_PER_CALL):
            numbers = range(first, min(first + CHUNKS_PER_CALL, count))
            ids = [f"{batch_id}:{n}" for n in numbers]
            args: list[str | bytes | int] = [owner, STAGING_TTL_SECONDS]
            for chunk_id, n in zip(ids, numbers, strict=True):
                indices = tuple(range(n * size, min((n + 1) * size, total)))
                args += (chunk_id, arq_job(ChunkPayload(batch_id=batch_id, indices=indices),
                                           enqueue_ms))  # fmt: skip
            chunk_keys = [keys.arq_job(chunk_id) for chunk_id in ids]
            staged = await self.scripts.run(
                "stage_chunks",
                [keys.batch_meta(batch_id), keys.batch_chunks(batch_id), *chunk_keys],
                args,
            )
            if not int(staged):
                raise ClaimLost(batch_id)
        batch_keys = keys.batch_keys(batch_id)
        published, chunks = await self.scripts.run(
            "publish_batch",
            [keys.batch_meta(batch_id), keys.batch_counts(batch_id), self.queue_name,
             keys.batches_created(), keys.batch_deadlines(), keys.work_marker(self.queue_name),
             keys.active_batches(self.queue_name), *batch_keys,
             *(keys.arq_job(f"{batch_id}:{n}") for n in range(count))],
            [owner, batch_id, total, len(batch_keys), self.ttl, iso_now()],
        )  # fmt: skip
        if not int(published):
            raise ClaimLost(batch_id)
        return int(chunks)

    async def release(self, batch_id: str, owner: str) -> bool:
        """Takes back what ``owner`` staged and frees the ID (if it still holds it)."""
        released = await self.scripts.run("release_batch", keys.batch_keys(batch_id), [owner])
        return bool(int(released))

    async def record_failed(
        self,
        batch_id: str,
        meta: dict[str, str],
        errors: Sequence[dict[str, object]],
        *,
        project: str | None = None,
    ) -> bool:
        """A batch whose input was refused: nothing to run, its errors kept (``failed``), and
        its ``batch.failed`` event written in the same step, if an endpoint is configured for
        ``project`` (the batch's record, which would say, is written after). False if it
        was already."""
        record = {**meta, "errors": json.dumps(list(errors))}
        known = {batch_id: project} if project is not None else None
        event_id = (await self.ledger.endpoints.event_ids([batch_id], projects=known))[batch_id]
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
                pipe.hgetall(keys.batch_counts(batch_id))  # the states', and each site's
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
    ) -> list[PromptRequest | JobResult]:
        """The requests at these indices (those still there), in their order; an unreadable
        one is its failed ``BadRequestData`` result instead."""
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
        return [index for index in range(total) if code_at(raw, index) == code]

    async def cancel(self, batch_id: str) -> int:
        """Stops the batch (``contract.stopping``); returns how many were cancelled here."""
        return await self.stopper.cancel(batch_id)

    async def requeue_failed(
        self, batch_id: str, chunk_size: int, *, only: Sequence[int] | None = None
    ) -> int:
        """Queues the failed prompts again under their own job IDs; returns how many.
        ``only``: just those of these indices (the console retries only the failures a
        new try may mend, or one prompt).

        ``RetryRefused`` unless the batch is in progress or completed: the script that
        moves the prompts reads the state, so a batch stopped meanwhile is left alone.
        """
        total = int(await self.redis.hget(keys.batch_meta(batch_id), "total") or 0)
        failed = await self.indices_in(batch_id, "failed", total)
        if only is not None:
            chosen = set(only)
            failed = [index for index in failed if index in chosen]
        state = await self.state(batch_id)
        if state not in RETRYABLE_STATES:
            raise RetryRefused(batch_id, state or "gone")
        if not failed:
            return 0
        for _ in range(RETRY_LOOKS):
            moved = await self._requeue(batch_id, failed, chunk_size)
            if moved is not None:
                return moved
        raise RuntimeError(f"retry of {batch_id}: its chunks kept changing; try again")

    async def _requeue(self, batch_id: str, failed: list[int], chunk_size: int) -> int | None:
        """One look at the batch's chunks, then the script that moves the prompts (None:
        a chunk the look found ended meanwhile: look again)."""
        carriers, carried = await self._carriers(batch_id, failed)
        fresh = [index for index in failed if index not in carried]
        round_ = secrets.token_hex(3)  # the new chunks' IDs (no write before the script)
        chunks = chunked(fresh, chunk_size_for(len(fresh), chunk_size)) if fresh else []
        enqueue_ms = int(time.time() * 1000)
        moved = 0
        for first in range(0, max(len(chunks), 1), CHUNKS_PER_CALL):
            part = chunks[first : first + CHUNKS_PER_CALL]
            ids = [f"{batch_id}:r{round_}:{n}" for n in range(first, first + len(part))]
            moving = sorted(carried) if first == 0 else []
            args: list[str | bytes | int] = [iso_now(), self.ttl, batch_id, len(carriers),
                                             len(moving), *carriers, *moving]  # fmt: skip
            for chunk_id, indices in zip(ids, part, strict=True):
                job = arq_job(ChunkPayload(batch_id=batch_id, indices=tuple(indices)), enqueue_ms)
                args += (chunk_id, job, len(indices), *indices)
            queue = self.queue_name
            state_then, count = await self.scripts.run(
                "requeue_failed",
                [*state_keys(batch_id), keys.batch_chunks(batch_id), queue,
                 keys.batch_requests(batch_id), keys.work_marker(queue),
                 keys.active_batches(queue), keys.held_chunks(queue),
                 *(keys.arq_job(c) for c in carriers), *(keys.arq_job(c) for c in ids)],
                args,
            )  # fmt: skip
            if int(count) < 0:
                return None
            if keys.decoded(state_then or b"gone") not in RETRYABLE_STATES:
                if moved:  # stopped half-way: what was queued is the stop's to end
                    break
                raise RetryRefused(batch_id, keys.decoded(state_then or b"gone"))
            moved += int(count)
        return moved

    async def _carriers(self, batch_id: str, failed: Sequence[int]) -> tuple[list[str], set[int]]:
        """The batch's chunks still in the queue (waiting or held) that carry one of the
        ``failed`` prompts, and those prompts: the chunk runs them again, not a new one."""
        chunk_ids = sorted(
            keys.decoded(c) for c in await self.redis.smembers(keys.batch_chunks(batch_id))
        )
        if not chunk_ids:
            return [], set()
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zmscore(self.queue_name, chunk_ids)
            pipe.zmscore(keys.held_chunks(self.queue_name), chunk_ids)
            waiting, held = await pipe.execute()
        queued = [c for c, w, h in zip(chunk_ids, waiting, held, strict=True) if w or h]
        jobs = await self.redis.mget([keys.arq_job(c) for c in queued]) if queued else []
        wanted, carriers, carried = set(failed), [], set()
        for chunk_id, job in zip(queued, jobs, strict=True):
            try:
                indices = set(json.loads(job)["a"][0]["indices"]) if job else set()
            except (ValueError, KeyError, IndexError, TypeError):
                continue
            if indices & wanted:
                carriers.append(chunk_id)
                carried |= indices & wanted
        return carriers, carried


__all__ = ["STAGING_IDLE_SECONDS", "WRITE_BATCH", "BatchStore", "ClaimLost", "RetryRefused"]
