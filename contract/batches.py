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

from contract import keys
from contract.models import BatchStatus, JobError, JobPayload, JobResult, PromptRequest

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


# A worker starting a job: nothing if it is settled, else mark it running and return
# (started_at, attempts so far). KEYS: result, cancelled, attempts, running, waiting.
# ARGV: job ID, now, ttl.
_START = """
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then
  return false
end
redis.call('HSETNX', KEYS[3], 'started_at', ARGV[2])
redis.call('EXPIRE', KEYS[3], ARGV[3])
redis.call('SADD', KEYS[4], ARGV[1])
redis.call('EXPIRE', KEYS[4], ARGV[3])
redis.call('SREM', KEYS[5], ARGV[1])
return redis.call('HMGET', KEYS[3], 'started_at', 'total')
"""

# The one result of a job, counted in exactly one state set. KEYS: result, attempts, the
# five state sets (STATES order), then the batch keys to keep alive.
# ARGV: job ID, result JSON, index of the result's state (1-based in STATES), ttl.
_SAVE = """
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[4])
redis.call('DEL', KEYS[2])
local final = tonumber(ARGV[3])
for i = 1, 5 do
  if i == final then
    redis.call('SADD', KEYS[2 + i], ARGV[1])
  else
    redis.call('SREM', KEYS[2 + i], ARGV[1])
  end
end
for i = 3, #KEYS do redis.call('EXPIRE', KEYS[i], ARGV[4]) end
return 1
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
        self._start = redis.register_script(_START)
        self._save = redis.register_script(_SAVE)

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
            self._queue_jobs(pipe, requests, now_ms)
            pipe.rpush(keys.batch_jobs(batch_id), *(r.job_id for r in requests))
            pipe.hset(
                keys.batch_requests(batch_id),
                mapping={r.job_id: r.model_dump_json() for r in requests},
            )
            for key in (keys.batch_jobs(batch_id), keys.batch_requests(batch_id)):
                pipe.expire(key, self.ttl)
            await pipe.execute()

    def _queue_jobs(self, pipe: Any, requests: Sequence[PromptRequest], now_ms: int) -> None:
        for request in requests:
            pipe.set(keys.arq_job(request.job_id), serialize_payload([request]), px=self.ttl * 1000)
        # Score = enqueue time: arq runs the oldest first, so a batch keeps its order.
        scores = {r.job_id: now_ms + r.index % 1000 / 1000 for r in requests}
        pipe.zadd(self.queue_name, scores)

    async def job_ids(self, batch_id: str) -> list[str]:
        return [
            keys.decoded(raw) for raw in await self.redis.lrange(keys.batch_jobs(batch_id), 0, -1)
        ]

    async def request(self, batch_id: str, job_id: str) -> PromptRequest | None:
        raw = await self.redis.hget(keys.batch_requests(batch_id), job_id)
        return PromptRequest.model_validate_json(raw) if raw else None

    async def requests(self, batch_id: str, job_ids: Sequence[str]) -> list[PromptRequest]:
        """The requests of these jobs, in their order, in one round trip per chunk."""
        found: list[PromptRequest] = []
        for start in range(0, len(job_ids), CHUNK):
            chunk = job_ids[start : start + CHUNK]
            raws = await self.redis.hmget(keys.batch_requests(batch_id), chunk) if chunk else []
            found += [PromptRequest.model_validate_json(raw) for raw in raws if raw]
        return found

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

    async def mark_waiting(self, request: PromptRequest) -> None:
        """Moves a running job to waiting: deferred until capacity or its backoff allows."""
        waiting = keys.batch_set(request.batch_id, "waiting")
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.sadd(waiting, request.job_id)
            pipe.srem(keys.batch_set(request.batch_id, "running"), request.job_id)
            pipe.expire(waiting, self.ttl)
            await pipe.execute()

    async def unmark(self, request: PromptRequest) -> None:
        await self.redis.srem(keys.batch_set(request.batch_id, "running"), request.job_id)

    async def start(self, request: PromptRequest) -> tuple[float, int] | None:
        """Marks the job running; None if it already has a result or was cancelled.

        Returns when it first started (kept across arq retries) and the attempts so far.
        """
        batch_id, job_id = request.batch_id, request.job_id
        found = await self._start(
            keys=[
                keys.result(job_id),
                keys.batch_set(batch_id, "cancelled"),
                keys.attempts(job_id),
                keys.batch_set(batch_id, "running"),
                keys.batch_set(batch_id, "waiting"),
            ],
            args=[job_id, time.time(), self.ttl],
        )
        if not found:
            return None
        started_at, total = found
        return float(started_at), int(total or 0)

    async def save_result(self, result: JobResult) -> None:
        """Stores the one result of a job and counts it, idempotently, in one atomic call."""
        await self._save(keys=self._save_keys(result), args=self._save_args(result))

    async def save_results(self, results: Sequence[JobResult]) -> None:
        """``save_result`` for many jobs, pipelined."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for result in results:
                await self._save(
                    keys=self._save_keys(result), args=self._save_args(result), client=pipe
                )
            await pipe.execute()

    def _save_keys(self, result: JobResult) -> list[str]:
        batch_id = result.batch_id
        return [
            keys.result(result.job_id),
            keys.attempts(result.job_id),
            *(keys.batch_set(batch_id, state) for state in STATES),
            keys.batch_meta(batch_id),
            keys.batch_jobs(batch_id),
            keys.batch_requests(batch_id),
        ]

    def _save_args(self, result: JobResult) -> list[str | int]:
        state = STATES.index(result.status) + 1
        return [result.job_id, result.model_dump_json(), state, self.ttl]

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
            error = JobError(type="Cancelled", message="cancelled before it ran")
            requests = await self.requests(batch_id, [keys.decoded(job_id) for job_id in claimed])
            await self.save_results(
                [JobResult.for_request(r, status="cancelled", error=error) for r in requests]
            )
            cancelled += len(requests)
        return cancelled

    async def requeue(self, requests: Iterable[PromptRequest]) -> int:
        """Queues jobs again under their own IDs, forgetting their previous result."""
        requests = list(requests)
        if not requests:
            return 0
        async with self.redis.pipeline(transaction=True) as pipe:
            for request in requests:
                pipe.delete(keys.result(request.job_id), keys.attempts(request.job_id))
                for state in FINAL_STATES:
                    pipe.srem(keys.batch_set(request.batch_id, state), request.job_id)
            self._queue_jobs(pipe, requests, int(time.time() * 1000))
            await pipe.execute()
        return len(requests)
