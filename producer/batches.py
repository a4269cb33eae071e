"""Batch bookkeeping in Redis: enqueue, progress, results, cancel, retry.

Progress lives in sets keyed by job ID (running, waiting, succeeded, failed,
cancelled), so a job that arq runs twice is counted once. Jobs are written in
pipelines straight into arq's queue layout, with JSON, never pickle.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from typing import Any

from arq.jobs import serialize_job
from redis.asyncio import Redis

from producer import keys
from producer.models import BatchStatus, JobError, JobPayload, JobResult, PromptRequest

JOB_FUNCTION = "run_prompts"
STATES = ("running", "waiting", "succeeded", "failed", "cancelled")
FINAL_STATES = ("succeeded", "failed", "cancelled")
CHUNK = 1000

# Removes a job from arq's queue unless a worker holds it or it already has a result;
# atomic per job. ARGV: in-progress prefix, job prefix, result prefix, then job IDs.
_CLAIM_QUEUED = """
local claimed = {}
for i, job_id in ipairs(ARGV) do
  if i > 3 and redis.call('EXISTS', ARGV[1] .. job_id, ARGV[3] .. job_id) == 0
     and redis.call('ZREM', KEYS[1], job_id) == 1 then
    redis.call('DEL', ARGV[2] .. job_id)
    claimed[#claimed + 1] = job_id
  end
end
return claimed
"""


def json_dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), default=str).encode()


def serialize_payload(requests: Sequence[PromptRequest]) -> bytes:
    payload = JobPayload(prompts=tuple(requests)).model_dump(mode="json")
    enqueue_ms = int(time.time() * 1000)
    return serialize_job(JOB_FUNCTION, (payload,), {}, None, enqueue_ms, serializer=json_dumps)


class BatchStore:
    def __init__(self, redis: Redis, *, queue_name: str, ttl_seconds: int) -> None:
        self.redis = redis
        self.queue_name = queue_name
        self.ttl = ttl_seconds

    async def exists(self, batch_id: str) -> bool:
        return bool(await self.redis.exists(keys.batch_meta(batch_id)))

    async def create(self, batch_id: str, meta: dict[str, str]) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.batch_meta(batch_id), mapping=meta)
            pipe.expire(keys.batch_meta(batch_id), self.ttl)
            await pipe.execute()

    async def add_jobs(self, requests: Sequence[PromptRequest]) -> None:
        """Writes one chunk of jobs: the request, the arq job, its place in the queue."""
        now_ms = int(time.time() * 1000)
        batch_id = requests[0].batch_id
        async with self.redis.pipeline(transaction=True) as pipe:
            for request in requests:
                self._queue_job(pipe, request, now_ms)
            pipe.rpush(keys.batch_jobs(batch_id), *(r.job_id for r in requests))
            pipe.hset(
                keys.batch_requests(batch_id),
                mapping={r.job_id: r.model_dump_json() for r in requests},
            )
            for key in (keys.batch_jobs(batch_id), keys.batch_requests(batch_id)):
                pipe.expire(key, self.ttl)
            await pipe.execute()

    def _queue_job(self, pipe: Any, request: PromptRequest, now_ms: int) -> None:
        # Score = enqueue time: arq runs the oldest first, so a batch keeps its order.
        pipe.set(keys.arq_job(request.job_id), serialize_payload([request]), px=self.ttl * 1000)
        pipe.zadd(self.queue_name, {request.job_id: now_ms + request.index % 1000 / 1000})

    async def job_ids(self, batch_id: str) -> list[str]:
        return [_text(raw) for raw in await self.redis.lrange(keys.batch_jobs(batch_id), 0, -1)]

    async def request(self, batch_id: str, job_id: str) -> PromptRequest | None:
        raw = await self.redis.hget(keys.batch_requests(batch_id), job_id)
        return PromptRequest.model_validate_json(raw) if raw else None

    async def status(self, batch_id: str) -> BatchStatus | None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.exists(keys.batch_meta(batch_id))
            pipe.llen(keys.batch_jobs(batch_id))
            for state in STATES:
                pipe.scard(keys.batch_set(batch_id, state))
            exists, total, *counts = await pipe.execute()
        if not exists:
            return None
        running, waiting, succeeded, failed, cancelled = counts
        queued = max(total - running - succeeded - failed - cancelled, 0)
        return BatchStatus(
            batch_id=batch_id,
            total=total,
            queued=queued,
            in_progress=running,
            succeeded=succeeded,
            failed=failed,
            cancelled=cancelled,
            waiting=min(waiting, queued),
            done=queued == 0 and running == 0,
        )

    async def mark(self, request: PromptRequest, state: str) -> None:
        """Moves a job between the transient states: running or waiting."""
        other = "waiting" if state == "running" else "running"
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.sadd(keys.batch_set(request.batch_id, state), request.job_id)
            pipe.srem(keys.batch_set(request.batch_id, other), request.job_id)
            pipe.expire(keys.batch_set(request.batch_id, state), self.ttl)
            await pipe.execute()

    async def unmark(self, request: PromptRequest) -> None:
        await self.redis.srem(keys.batch_set(request.batch_id, "running"), request.job_id)

    async def save_result(self, result: JobResult) -> None:
        """Stores the one result of a job and counts it, idempotently."""
        batch_id = result.batch_id
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(keys.result(result.job_id), result.model_dump_json(), ex=self.ttl)
            for state in STATES:
                if state != result.status:
                    pipe.srem(keys.batch_set(batch_id, state), result.job_id)
            pipe.sadd(keys.batch_set(batch_id, result.status), result.job_id)
            for key in self._batch_keys(batch_id):
                pipe.expire(key, self.ttl)
            pipe.delete(keys.attempts(result.job_id))
            await pipe.execute()

    def _batch_keys(self, batch_id: str) -> list[str]:
        fixed = [
            keys.batch_meta(batch_id),
            keys.batch_jobs(batch_id),
            keys.batch_requests(batch_id),
        ]
        return fixed + [keys.batch_set(batch_id, state) for state in FINAL_STATES]

    async def result(self, job_id: str) -> JobResult | None:
        raw = await self.redis.get(keys.result(job_id))
        return JobResult.model_validate_json(raw) if raw else None

    async def results(self, job_ids: Sequence[str]) -> list[JobResult | None]:
        found: list[JobResult | None] = []
        for start in range(0, len(job_ids), CHUNK):
            chunk = job_ids[start : start + CHUNK]
            raws = await self.redis.mget([keys.result(job_id) for job_id in chunk])
            found += [JobResult.model_validate_json(raw) if raw else None for raw in raws]
        return found

    async def cancel(self, batch_id: str) -> int:
        """Removes the batch's queued jobs and records them cancelled; running ones finish."""
        script = self.redis.register_script(_CLAIM_QUEUED)
        job_ids = await self.job_ids(batch_id)
        cancelled = 0
        for start in range(0, len(job_ids), CHUNK):
            chunk = job_ids[start : start + CHUNK]
            claimed = await script(
                keys=[self.queue_name],
                args=[keys.arq_in_progress(""), keys.arq_job(""), keys.result(""), *chunk],
            )
            for job_id in map(_text, claimed):
                request = await self.request(batch_id, job_id)
                if request is not None:
                    error = JobError(type="Cancelled", message="cancelled before it ran")
                    await self.save_result(
                        JobResult.for_request(request, status="cancelled", error=error)
                    )
                    cancelled += 1
        return cancelled

    async def requeue(self, requests: Iterable[PromptRequest]) -> int:
        """Queues jobs again under their own IDs, forgetting their previous result."""
        now_ms = int(time.time() * 1000)
        count = 0
        async with self.redis.pipeline(transaction=True) as pipe:
            for request in requests:
                pipe.delete(keys.result(request.job_id), keys.attempts(request.job_id))
                for state in FINAL_STATES:
                    pipe.srem(keys.batch_set(request.batch_id, state), request.job_id)
                self._queue_job(pipe, request, now_ms)
                count += 1
            await pipe.execute()
        return count


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw
