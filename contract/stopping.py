"""Stopping a batch early: ``cancel``, or its completion window ending (``expire``).

From the moment a batch is marked stopped, no lease is granted for it (the lease
script reads the same mark), so nothing more of it leaves for the site; the
prompts no worker holds end with a stopped result here, those a worker holds end
there, unless they were already on the wire.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from redis.asyncio import Redis

from contract import keys
from contract.chunks import ChunkQueue, chunked
from contract.ledger import READ_BATCH, PromptLedger
from contract.models import JobError, JobResult, PromptRequest, iso_now, parse_timestamp
from contract.scripts import ScriptBook
from contract.states import STOPPING


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


class BatchStopper:
    def __init__(self, redis: Redis, *, queue_name: str, ttl_seconds: int) -> None:
        self.redis = redis
        self.ttl = ttl_seconds
        self.queue = ChunkQueue(redis, queue_name=queue_name, ttl_seconds=ttl_seconds)
        self.ledger = PromptLedger(redis, ttl_seconds=ttl_seconds)
        self.scripts = ScriptBook(redis, "contract", ["begin_stop"])

    async def cancel(self, batch_id: str) -> int:
        """Stops the batch: queued chunks are taken back and their prompts cancelled; prompts
        a worker holds end cancelled there unless already on the wire. Returns how many
        prompts were cancelled here."""
        return await self.stop(batch_id, "cancelled")

    async def expire(self, batch_id: str) -> int:
        """Ends a batch whose completion window passed: its unsent prompts end ``Expired``."""
        return await self.stop(batch_id, "expired")

    async def stop(self, batch_id: str, why: str) -> int:
        now_ms = int(time.time() * 1000)
        await self._mark_stopped(batch_id, why, now_ms)
        state = await self.scripts.run(
            "begin_stop", [keys.batch_meta(batch_id)], [iso_now(), STOPPING[why]]
        )
        if keys.decoded(state or b"") != STOPPING[why]:
            return 0
        taken = await self.queue.take_free(batch_id)
        return await self.stop_prompts(batch_id, taken, why)

    async def _mark_stopped(self, batch_id: str, why: str, now_ms: int) -> None:
        """From now on no lease is granted for the batch (checked in the same call)."""
        stopped = keys.stopped_batches()
        old = [
            keys.decoded(name)
            for name, value in (await self.redis.hgetall(stopped)).items()
            if int(keys.decoded(value).split()[1]) < now_ms - self.ttl * 1000
        ]
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(stopped, batch_id, f"{why} {now_ms}")
            if old:
                pipe.hdel(stopped, *old)
            pipe.expire(stopped, self.ttl)
            await pipe.execute()

    async def stop_prompts(self, batch_id: str, indices: Sequence[int], why: str) -> int:
        """Records a cancelled (or expired) result for each of these prompts that has none."""
        created = parse_timestamp(await self.redis.hget(keys.batch_meta(batch_id), "created_at"))
        if created is None or not indices:
            return 0
        saved = 0
        for part in chunked(indices, READ_BATCH):
            requests = await self.ledger.requests(batch_id, part, created)
            saved += await self.ledger.save_results([stopped_result(r, why) for r in requests])
        return saved

    async def expire_due(self, limit: int = 20) -> list[str]:
        """Expires the batches whose completion window ended; returns them (the sweep)."""
        now_ms = int(time.time() * 1000)
        due = [
            keys.decoded(raw)
            for raw in await self.redis.zrangebyscore(
                keys.batch_deadlines(), "-inf", now_ms, start=0, num=limit
            )
        ]
        expired = []
        for batch_id in due:
            state = await self.redis.hget(keys.batch_meta(batch_id), "state")
            if state == b"in_progress":
                await self.expire(batch_id)
                expired.append(batch_id)
            await self.redis.zrem(keys.batch_deadlines(), batch_id)
        return expired


__all__ = ["BatchStopper", "stopped_result"]
