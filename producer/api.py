"""The async Python API: enqueue batches, follow them, read their results.

async with BatchQueue.connect() as queue:
    batch = await queue.enqueue_file("prompts.jsonl")
    await queue.wait(batch.batch_id, timeout=600)
    async for result in queue.iter_results(batch.batch_id):
        print(result.custom_id, result.status, result.content)
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from redis.asyncio import Redis

from contract import keys
from contract.batches import CHUNK, BatchStore
from contract.config import QueueSettings
from contract.models import BatchStatus, JobResult, PromptRequest, utc_now
from producer.inputs import PromptLine, read_prompt_file

BATCH_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
Progress = Callable[[int], None]


class BatchNotFound(LookupError):
    def __init__(self, batch_id: str) -> None:
        super().__init__(f"no batch {batch_id!r} (never enqueued, or its results expired)")


class JobNotFound(LookupError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job {job_id!r} (never enqueued, or its result expired)")


@dataclass(frozen=True)
class EnqueuedBatch:
    batch_id: str
    jobs: int


@dataclass(frozen=True)
class JobState:
    """A job that has no result yet."""

    job_id: str
    batch_id: str
    custom_id: str
    status: str  # queued, waiting, in_progress
    attempts: int


def job_id_for(batch_id: str, index: int) -> str:
    return f"{batch_id}.{index}"


def batch_id_of(job_id: str) -> str:
    return job_id.rsplit(".", 1)[0]


class BatchQueue:
    def __init__(self, redis: Redis, settings: QueueSettings) -> None:
        self.redis = redis
        self.settings = settings
        self.store = BatchStore(
            redis, queue_name=settings.queue_name, ttl_seconds=settings.result_ttl_seconds
        )

    @classmethod
    @asynccontextmanager
    async def connect(cls, settings: QueueSettings | None = None) -> AsyncIterator[BatchQueue]:
        settings = settings or QueueSettings()
        redis = Redis.from_url(settings.redis_url)
        try:
            yield cls(redis, settings)
        finally:
            await redis.aclose()

    async def enqueue_file(
        self,
        path: str,
        *,
        batch_id: str | None = None,
        model: str | None = None,
        progress: Progress | None = None,
    ) -> EnqueuedBatch:
        """Validates the whole file (``InputFileError`` lists every bad line), then enqueues."""
        lines = read_prompt_file(
            path,
            default_model=self.settings.default_model,
            max_prompt_chars=self.settings.max_prompt_chars,
            model_override=model,
        )
        return await self.enqueue(lines, batch_id=batch_id, progress=progress)

    async def enqueue(
        self,
        lines: Sequence[PromptLine],
        *,
        batch_id: str | None = None,
        progress: Progress | None = None,
    ) -> EnqueuedBatch:
        """Enqueues validated lines as one batch, in pipelined chunks, keeping their order."""
        if not lines:
            raise ValueError("a batch needs at least one prompt")
        batch_id = batch_id or f"b_{secrets.token_hex(8)}"
        if not BATCH_ID.match(batch_id):
            raise ValueError(f"batch id {batch_id!r} must be 1-64 of A-Z a-z 0-9 _ -")
        if await self.store.exists(batch_id):
            raise ValueError(f"batch {batch_id!r} already exists; pick another --batch-id")
        enqueued_at = utc_now()
        meta = {"total": str(len(lines)), "created_at": enqueued_at.isoformat()}
        await self.store.create(batch_id, meta)
        for start in range(0, len(lines), CHUNK):
            chunk = lines[start : start + CHUNK]
            requests = [
                PromptRequest(
                    job_id=job_id_for(batch_id, start + offset),
                    batch_id=batch_id,
                    custom_id=line.custom_id,
                    index=start + offset,
                    messages=line.messages,
                    model=line.model,
                    enqueued_at=enqueued_at,
                )
                for offset, line in enumerate(chunk)
            ]
            await self.store.add_jobs(requests)
            if progress is not None:
                progress(start + len(chunk))
        return EnqueuedBatch(batch_id=batch_id, jobs=len(lines))

    async def _require(self, batch_id: str) -> None:
        if not await self.store.exists(batch_id):
            raise BatchNotFound(batch_id)

    async def status(self, batch_id: str) -> BatchStatus:
        status = await self.store.status(batch_id)
        if status is None:
            raise BatchNotFound(batch_id)
        return status

    async def wait(
        self,
        batch_id: str,
        *,
        timeout: float | None = None,
        poll_seconds: float = 0.5,
        on_status: Callable[[BatchStatus], None] | None = None,
    ) -> BatchStatus:
        """Returns the status once the batch is done; TimeoutError if it is not in time."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            status = await self.status(batch_id)
            if on_status is not None:
                on_status(status)
            if status.done:
                return status
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(
                    f"batch {batch_id} not done after {timeout}s: "
                    f"{status.finished}/{status.total} finished"
                )
            await asyncio.sleep(poll_seconds)

    async def results(self, batch_id: str) -> list[JobResult]:
        """The results there are now, in input order."""
        return [result async for result in self.iter_results(batch_id)]

    async def iter_results(
        self, batch_id: str, *, follow: bool = False, poll_seconds: float = 0.5
    ) -> AsyncIterator[JobResult]:
        """Results in input order; with ``follow``, also those still to come, as they finish."""
        await self._require(batch_id)
        pending = await self.store.job_ids(batch_id)
        done = False
        while pending:
            found = await self.store.results(pending)
            for result in found:
                if result is not None:
                    yield result
            pending = [job_id for job_id, result in zip(pending, found, strict=True) if not result]
            if not follow or not pending or done:
                return
            # One more read after the batch is done picks up results written meanwhile.
            done = (await self.status(batch_id)).done
            if not done:
                await asyncio.sleep(poll_seconds)

    async def job(self, job_id: str) -> JobResult | JobState:
        result = await self.store.result(job_id)
        if result is not None:
            return result
        batch_id = batch_id_of(job_id)
        request = await self.store.request(batch_id, job_id)
        if request is None:
            raise JobNotFound(job_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.sismember(keys.batch_set(batch_id, "running"), job_id)
            pipe.sismember(keys.batch_set(batch_id, "waiting"), job_id)
            pipe.hget(keys.attempts(job_id), "total")
            running, waiting, attempts = await pipe.execute()
        state = "in_progress" if running else "waiting" if waiting else "queued"
        return JobState(job_id, batch_id, request.custom_id, state, int(attempts or 0))

    async def cancel(self, batch_id: str) -> int:
        """Cancels the queued jobs (they get a cancelled result); running ones finish."""
        await self._require(batch_id)
        return await self.store.cancel(batch_id)

    async def retry(self, batch_id: str) -> int:
        """Enqueues the failed jobs again under their own IDs; returns how many."""
        await self._require(batch_id)
        job_ids = await self.store.job_ids(batch_id)
        failed = [
            result.job_id
            for result in await self.store.results(job_ids)
            if result is not None and result.status == "failed"
        ]
        now = utc_now()
        requests = [
            request.model_copy(update={"enqueued_at": now})
            for request in await self.store.requests(batch_id, failed)
        ]
        for start in range(0, len(requests), CHUNK):
            await self.store.requeue(requests[start : start + CHUNK])
        return len(requests)
