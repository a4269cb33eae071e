"""Stopping a batch early: ``cancel``, or its completion window ending (``expire``).

A stop is crash-consistent: whatever moment a process dies, every prompt still gets
its result, and running the stop again (a second ``cancel``, or the housekeeping
worker, which resumes every stop it finds unfinished) finishes it:

1. ``begin``, one atomic step: the batch says ``cancelling`` (or ``expiring``) and is
   marked stopped, so no lease is granted for it from that moment (the lease script
   reads the mark for every lease it grants). A worker sends a request only within
   ``SEND_WINDOW_SECONDS`` of learning its batch was not stopped (its lease's grant,
   or a check of the mark); ``cancel`` returns no sooner than that after the mark, so
   nothing of the batch reaches the site once ``cancel`` has returned.
2. ``step``, bounded and resumable: the prompts still queued, a slice at a time from a
   cursor kept in the batch record, get their stopped result (a prompt that has a
   result keeps it). Prompts a worker holds are left to that worker: it ends them
   stopped unless they were already on the wire, and if it died, the next holder of
   their chunk does.
3. When the cursor has passed the last prompt, the chunks no worker holds and whose
   prompts all have results leave the queue. The batch ends ``cancelled`` (or
   ``expired``) when its last prompt settles, in the same call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from redis.asyncio import Redis

from contract import keys
from contract.chunks import chunked, code_at
from contract.ledger import READ_BATCH, PromptLedger
from contract.models import JobError, JobResult, PromptRequest, iso_now, parse_timestamp
from contract.scripts import ScriptBook
from contract.states import CODE, STOPPING

STEP_PROMPTS = 2000  # prompts looked at per step
# A worker sends a request at most this long after it last learnt the batch was not
# stopped; ``cancel`` returns this long (and a margin for the worker's event loop)
# after the batch was marked stopped.
SEND_WINDOW_SECONDS = 0.5
CANCEL_SETTLES_SECONDS = SEND_WINDOW_SECONDS + 0.25
FORGET_MARKS_PER_CALL = 500
TAKE_CHUNKS = 200  # chunks looked at per call when a stopped batch's leave the queue
# The stop's cursor, kept in the batch record: the next index to look at, then these.
QUEUED_SETTLED = "settled"  # every prompt that was queued has its result
CHUNKS_TAKEN = "done"  # and the chunks that could leave the queue have left it


def stopped_result(request: PromptRequest, why: str) -> JobResult:
    """The result of a prompt its batch stopped before it was sent."""
    if why == "expired":
        message = "the batch's completion window ended before this prompt was sent"
        return JobResult.for_request(
            request, status="failed", error=JobError(type="Expired", message=message)
        )
    message = "the batch was cancelled before this prompt was sent"
    return JobResult.for_request(
        request, status="cancelled", error=JobError(type="Cancelled", message=message)
    )


def queued_in(states: bytes, start: int, stop: int) -> list[int]:
    """The indices in [start, stop) whose 4-bit state in ``states`` is queued."""
    return [index for index in range(start, stop) if code_at(states, index) == CODE["queued"]]


@dataclass(frozen=True)
class Stopping:
    """A batch whose stop is under way (or was, and may be unfinished)."""

    batch_id: str
    why: str  # cancelled or expired


class BatchStopper:
    def __init__(
        self,
        redis: Redis,
        *,
        queue_name: str,
        ttl_seconds: int,
        ledger: PromptLedger,
    ) -> None:
        self.redis = redis
        self.queue_name = queue_name
        self.ttl = ttl_seconds
        self.ledger = ledger  # the store's own: one set of its scripts per process
        self.scripts = ScriptBook(
            redis, "contract",
            ["begin_stop", "take_queued_chunks", "move_stop_cursor", "forget_stop_marks"],
        )  # fmt: skip

    async def cancel(self, batch_id: str) -> int:
        """Stops the batch; returns how many prompts were cancelled here and now. Returns
        once nothing more of it can reach the site (``SEND_WINDOW_SECONDS``)."""
        if await self.begin(batch_id, "cancelled") != STOPPING["cancelled"]:
            return 0
        marked = time.monotonic()  # the mark is written: the window runs from here
        settled = await self._all_steps(batch_id, "cancelled")
        await asyncio.sleep(max(0.0, marked + CANCEL_SETTLES_SECONDS - time.monotonic()))
        return settled

    async def expire(self, batch_id: str) -> int:
        """Ends a batch whose completion window passed: its unsent prompts end ``Expired``."""
        return await self.stop(batch_id, "expired")

    async def stop(self, batch_id: str, why: str) -> int:
        """Begins the stop (or resumes it) and takes it to its end; returns how many
        prompts it settled."""
        if await self.begin(batch_id, why) != STOPPING[why]:
            return 0
        return await self._all_steps(batch_id, why)

    async def _all_steps(self, batch_id: str, why: str) -> int:
        settled = 0
        while True:
            done, count = await self.step(batch_id, why)
            settled += count
            if done:
                return settled

    async def begin(self, batch_id: str, why: str) -> str | None:
        """Step 1: the batch stops taking leases; returns its state after."""
        state = await self.scripts.run(
            "begin_stop",
            [
                keys.batch_meta(batch_id),
                keys.stopped_batches(),
                keys.unfinished_stops(),
                keys.stop_marks_by_age(),
            ],
            [batch_id, iso_now(), int(time.time() * 1000), why, STOPPING[why], self.ttl],
        )
        return keys.decoded(state) if state else None

    async def step(self, batch_id: str, why: str, limit: int = STEP_PROMPTS) -> tuple[bool, int]:
        """Steps 2 and 3, a bounded part of them; returns (finished, prompts settled)."""
        state, total, cursor, created = await self.redis.hmget(
            keys.batch_meta(batch_id), "state", "total", "stop_cursor", "created_at"
        )
        # (A stop that ended ``cancelled`` or ``expired`` may still have chunks to take.)
        if state is None or keys.decoded(state) not in (STOPPING[why], why) or cursor is None:
            return True, 0  # gone, or never stopped for this reason
        where = keys.decoded(cursor)
        if where == CHUNKS_TAKEN:
            return True, 0
        if where == QUEUED_SETTLED or keys.decoded(state) == why:
            await self._take_chunks(batch_id)
            await self._move_cursor(batch_id, CHUNKS_TAKEN)
            return True, 0
        start = int(where)
        stop = min(start + limit, int(total or 0))
        states = await self.redis.getrange(keys.batch_states(batch_id), start // 2, stop // 2)
        offset = (start // 2) * 2
        indices = [offset + i for i in queued_in(states, start - offset, stop - offset)]
        settled = await self._settle(batch_id, indices, why, parse_timestamp(created))
        next_cursor = QUEUED_SETTLED if stop >= int(total or 0) else str(stop)
        await self._move_cursor(batch_id, next_cursor)
        return False, settled

    async def _move_cursor(self, batch_id: str, cursor: str) -> None:
        await self.scripts.run(
            "move_stop_cursor", [keys.batch_meta(batch_id), keys.unfinished_stops()],
            [batch_id, cursor, CHUNKS_TAKEN],
        )  # fmt: skip

    async def _settle(
        self, batch_id: str, indices: Sequence[int], why: str, created: datetime | None
    ) -> int:
        """Stops the queued prompts at ``indices``; a request that cannot be read gets its
        own result (failed ``BadRequestData``) instead, as it would have anywhere."""
        if not indices or created is None:
            return 0
        saved = 0
        for part in chunked(indices, READ_BATCH):
            found = await self.ledger.requests(batch_id, part, created)
            results = [
                stopped_result(one, why) if isinstance(one, PromptRequest) else one for one in found
            ]
            saved += await self.ledger.save_results(results, only_queued=True)
        return saved

    async def _take_chunks(self, batch_id: str) -> None:
        """Takes the batch's settled, unheld chunks out of the queue (those left hold
        prompts that a worker, the chunk's next holder, still has to settle)."""
        chunk_ids = sorted(
            keys.decoded(c) for c in await self.redis.smembers(keys.batch_chunks(batch_id))
        )
        queue = self.queue_name
        for part in chunked(chunk_ids, TAKE_CHUNKS):
            chunk_keys = [k for c in part for k in (keys.arq_job(c), keys.arq_in_progress(c))]
            await self.scripts.run(
                "take_queued_chunks",
                [queue, keys.held_chunks(queue), keys.chunk_places(queue), keys.chunk_lapses(),
                 keys.batch_states(batch_id), *chunk_keys],
                part,
            )  # fmt: skip

    async def unfinished(self, limit: int = 100) -> list[Stopping]:
        """Stops that have not reached their end, the oldest first (for the housekeeping
        worker, which resumes them): read from the unfinished ones only, never from every
        stop mark of the last days."""
        batch_ids = [
            keys.decoded(raw)
            for raw in await self.redis.zrange(keys.unfinished_stops(), 0, limit - 1)
        ]
        if not batch_ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for batch_id in batch_ids:
                pipe.hget(keys.stopped_batches(), batch_id)
                pipe.hmget(keys.batch_meta(batch_id), "state", "stop_cursor")
            replies = await pipe.execute()
        found, finished = [], []
        for batch_id, mark, (state, cursor) in zip(
            batch_ids, replies[::2], replies[1::2], strict=True
        ):
            why = keys.decoded(mark).split()[0] if mark else None
            if (
                why is None or state is None or keys.decoded(state) not in (STOPPING[why], why)
                or cursor is None or keys.decoded(cursor) == CHUNKS_TAKEN
            ):  # fmt: skip
                finished.append(batch_id)
            else:
                found.append(Stopping(batch_id, why))
        if finished:
            await self.redis.zrem(keys.unfinished_stops(), *finished)
        return found

    async def forget_old_marks(self) -> int:
        """Stopped marks older than the batches they name are dropped (a bounded number per
        call, aged on Redis's clock, which dated them); returns how many."""
        return int(
            await self.scripts.run(
                "forget_stop_marks", [keys.stopped_batches(), keys.stop_marks_by_age()],
                [self.ttl, FORGET_MARKS_PER_CALL],
            )
        )  # fmt: skip

    async def begin_due_expiries(self, limit: int = 50) -> list[str]:
        """Begins the stop of every batch whose completion window ended (the sweep);
        their steps are then run like any unfinished stop. Returns those begun."""
        now_ms = int(time.time() * 1000)
        due = [
            keys.decoded(raw)
            for raw in await self.redis.zrangebyscore(
                keys.batch_deadlines(), "-inf", now_ms, start=0, num=limit
            )
        ]
        begun = []
        for batch_id in due:
            if await self.begin(batch_id, "expired") == STOPPING["expired"]:
                begun.append(batch_id)
            await self.redis.zrem(keys.batch_deadlines(), batch_id)
        return begun


__all__ = ["BatchStopper", "Stopping", "queued_in", "stopped_result"]
