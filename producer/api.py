"""The async Python API: enqueue batches, follow them, read their results.

async with BatchQueue.connect() as queue:
    batch = await queue.enqueue_file("prompts.jsonl")
    await queue.wait(batch.batch_id, timeout=600)
    async for result in queue.iter_results(batch.batch_id):
        print(result.custom_id, result.status, result.content)
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import re
import secrets
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from redis.asyncio import Redis

from contract.batches import WRITE_BATCH, BatchStore, ClaimLost, RetryRefused
from contract.config import QueueSettings
from contract.errors import ServiceError
from contract.models import (
    BatchStatus,
    JobError,
    JobResult,
    PromptRequest,
    StoredRequest,
    job_id_for,
    split_job_id,
    utc_now,
)
from contract.retrying import TRANSIENT, RedisBackoff, redis_client
from producer import options
from producer.options import DEFAULT_COMPLETION_WINDOW

if TYPE_CHECKING:  # validation is imported by the commands that enqueue, not by every reader
    from contract.model_map import ModelMap
    from producer.inputs import PromptLine

BATCH_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# How long cancel_and_wait waits, by default, for the prompts workers held to settle:
# a held prompt that was not sent yet ends at its next lease (within a heartbeat or two),
# and one on the wire when its answer comes.
CANCEL_SETTLE_SECONDS = 10.0
Progress = Callable[[int], None]

__all__ = [
    "BatchExists",
    "BatchNotFound",
    "BatchQueue",
    "CancelReport",
    "ClaimLost",
    "EnqueuedBatch",
    "JobNotFound",
    "JobState",
    "RetryRefused",
]


class BatchExists(ServiceError, ValueError):
    """``enqueue`` with a batch ID another batch holds (or another enqueue is staging)."""

    def __init__(self, batch_id: str, state: str) -> None:
        self.state = state
        super().__init__(f"batch {batch_id} already exists ({state}); pick another --batch-id")


class BatchNotFound(ServiceError, LookupError):
    def __init__(self, batch_id: str) -> None:
        super().__init__(f"no batch {batch_id!r} (never enqueued, or its results expired)")


class JobNotFound(ServiceError, LookupError):
    def __init__(self, job_id: str, hint: str = "") -> None:
        super().__init__(
            f"no job {job_id!r} " + (hint or "(never enqueued, or its result expired)")
        )


@dataclass(frozen=True)
class EnqueuedBatch:
    batch_id: str
    jobs: int
    warnings: tuple[str, ...] = ()
    """One line per request parameter accepted but not honoured, with its prompt count."""


@dataclass(frozen=True)
class CancelReport:
    """What one cancel ended, counted once the prompts workers held settled (or the wait
    for them ran out)."""

    batch_id: str
    state: str  # cancelled; cancelling if workers still held prompts when the wait ran out
    cancelled: int  # every prompt this cancel ended: queued ones and those workers held
    cancelled_queued: int  # of them, the queued ones, ended at once
    finished: int  # prompts already sent when it came: they finished (succeeded or failed)
    unsettled: int  # prompts workers still held when the wait ran out
    ended_before: bool  # the batch had ended before: nothing to cancel


@dataclass(frozen=True)
class JobState:
    """A job that has no result yet."""

    job_id: str
    batch_id: str
    custom_id: str
    status: str  # queued, waiting, in_progress
    attempts: int


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
        redis = redis_client(settings.redis_url)
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
        completion_window: str = DEFAULT_COMPLETION_WINDOW,
        metadata: Mapping[str, str] | None = None,
    ) -> EnqueuedBatch:
        """Enqueues a file (``-``: stdin) as one batch if every line is valid.

        The file is read, checked and staged a block of lines at a time, so its size
        costs no memory; a bad line anywhere takes back what was staged and raises
        ``InputFileError`` listing every bad line of the file. See ``enqueue``.
        """
        from producer.input_limits import opened_lines
        from producer.inputs import PromptValidator, prompt_blocks, source_name

        batch_id = self._checked_batch_id(batch_id)
        validator = PromptValidator(
            default_model=self.settings.default_model,
            max_prompt_chars=self.settings.max_prompt_chars,
            model_override=model,
            models=self.settings.model_map(),
            sites=self.settings.site_names(),
        )
        with opened_lines(path, self.settings.max_input_bytes) as lines:
            blocks = prompt_blocks(lines, validator, source=source_name(path))
            jobs = await self._enqueue_blocks(
                blocks, batch_id, completion_window, metadata, progress
            )
        return EnqueuedBatch(batch_id, jobs, tuple(validator.warning_summary()))

    async def enqueue(
        self,
        lines: Sequence[PromptLine],
        *,
        batch_id: str | None = None,
        progress: Progress | None = None,
        completion_window: str = DEFAULT_COMPLETION_WINDOW,
        metadata: Mapping[str, str] | None = None,
    ) -> EnqueuedBatch:
        """Enqueues validated lines as one batch, all or nothing, keeping their order.

        ``completion_window`` (``24h``): when it ends, prompts not yet sent end
        ``Expired`` and the batch ``expired``. ``metadata``: up to 16 string pairs.

        The batch ID is claimed first, in one step: ``BatchExists`` if another batch
        has it, and then nothing is written. The requests are staged next; the batch
        becomes visible to workers only when the last one is written. An enqueue that
        fails or is interrupted takes back what it staged; one killed outright leaves a
        batch that says ``validating``, runs nothing, expires within the hour, and
        whose ID may be claimed again once nothing was staged for a minute.
        """
        from producer.inputs import BLOCK_LINES, summarize_warnings

        if not lines:
            raise ValueError("a batch needs at least one prompt")
        batch_id = self._checked_batch_id(batch_id)
        blocks = (lines[start : start + BLOCK_LINES] for start in range(0, len(lines), BLOCK_LINES))
        jobs = await self._enqueue_blocks(blocks, batch_id, completion_window, metadata, progress)
        return EnqueuedBatch(batch_id, jobs, tuple(summarize_warnings(lines)))

    async def enqueue_blocks(
        self,
        blocks: AsyncIterable[Sequence[PromptLine]],
        *,
        batch_id: str | None = None,
        completion_window: str = DEFAULT_COMPLETION_WINDOW,
        metadata: Mapping[str, str] | None = None,
    ) -> int:
        """Enqueues prompts that arrive a block at a time, as one batch, all or nothing.

        ``blocks`` may raise (a bad line found later, ``InputFileError``): what was
        staged is then taken back. For a server checking a big file as it reads it (the
        API's ``batches.create``), so the file is never held whole. See ``enqueue``."""
        batch_id = self._checked_batch_id(batch_id)
        return await self._enqueue_blocks(blocks, batch_id, completion_window, metadata, None)

    @staticmethod
    def _checked_batch_id(batch_id: str | None) -> str:
        batch_id = batch_id or f"b_{secrets.token_hex(8)}"
        if not BATCH_ID.match(batch_id):
            raise ValueError(f"batch id {batch_id!r} must be 1-64 of A-Z a-z 0-9 _ -")
        return batch_id

    async def _enqueue_blocks(
        self,
        blocks: Iterable[Sequence[PromptLine]] | AsyncIterable[Sequence[PromptLine]],
        batch_id: str,
        completion_window: str,
        metadata: Mapping[str, str] | None,
        progress: Progress | None,
    ) -> int:
        """Claims the ID (at the first valid block), stages each block, publishes.

        ``blocks`` may raise (a bad line found later): then what was staged is taken
        back, as it is on any failure, before the error goes on.
        """
        window = options.completion_window(completion_window)
        pin = self.settings.check_site((metadata or {}).get("site"))  # a batch on one site
        models = self.settings.model_map()
        meta = {"completion_window": completion_window,
                "metadata": json.dumps(options.checked_metadata(metadata))}  # fmt: skip
        owner = secrets.token_hex(16)
        staged, claimed = 0, False
        stored = _StoredBlocks(blocks, functools.partial(_site_of, pin, models))
        try:
            while (requests := await stored.next()) is not None:
                if not claimed:
                    await self._claim(batch_id, owner, meta, window)
                    claimed = True
                stored.prefetch()  # the next block is read and checked while this one is staged
                await self.store.stage(batch_id, owner, staged, requests)
                staged += len(requests)
                if progress is not None:
                    progress(staged)
            await self.store.publish(batch_id, owner, staged, self.settings.chunk_size)
        except BaseException:
            await stored.settle()  # a block being read in a thread ends before the release
            if claimed:
                with contextlib.suppress(Exception):  # Redis gone too: it expires on its own
                    await asyncio.shield(self.store.release(batch_id, owner))
            raise
        return staged

    async def _claim(
        self, batch_id: str, owner: str, meta: dict[str, str], window: timedelta
    ) -> None:
        created_at = utc_now()
        expires_at = created_at + window
        held_by = await self.store.claim(batch_id, owner, {
            **meta,
            "total": "0",
            "created_at": created_at.isoformat(),
            "expires_at": expires_at.isoformat(),
            "expires_ms": str(int(expires_at.timestamp() * 1000)),
        })  # fmt: skip
        if held_by is not None:
            raise BatchExists(batch_id, held_by)

    async def _require(self, batch_id: str) -> BatchStatus:
        status = await self.store.status(batch_id)
        if status is None:
            raise BatchNotFound(batch_id)
        return status

    async def status(self, batch_id: str) -> BatchStatus:
        return await self._require(batch_id)

    async def batches(self, limit: int = 100) -> list[BatchStatus]:
        """The newest batches first (those whose records have not expired)."""
        return await self.store.recent(limit)

    async def wait(
        self,
        batch_id: str,
        *,
        timeout: float | None = None,
        poll_seconds: float = 0.5,
        on_status: Callable[[BatchStatus], None] | None = None,
    ) -> BatchStatus:
        """Returns the status once the batch is done; TimeoutError if it is not in time.

        Redis going away for a while (a restart) is waited out, within the timeout.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        backoff = RedisBackoff("wait")
        status: BatchStatus | None = None
        while True:
            try:
                status = await self.status(batch_id)
            except TRANSIENT as error:
                if deadline is not None and time.monotonic() >= deadline:
                    raise
                await backoff.wait(error)
                continue
            backoff.reset()
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
        async for index, raw in self._stored_results(batch_id, follow, poll_seconds):
            yield (_parsed(raw) if _sound(raw) else None) or await self._bad_data(batch_id, index)

    async def iter_raw_results(
        self, batch_id: str, *, follow: bool = False, poll_seconds: float = 0.5
    ) -> AsyncIterator[bytes]:
        """Each result as its stored native JSON line (no parsing), in input order."""
        async for index, raw in self._stored_results(batch_id, follow, poll_seconds):
            if _sound(raw):
                yield raw
            else:
                yield (await self._bad_data(batch_id, index)).model_dump_json().encode()

    async def _stored_results(
        self, batch_id: str, follow: bool, poll_seconds: float
    ) -> AsyncIterator[tuple[int, bytes]]:
        """(index, stored line) of every prompt with a result, in input order, then (with
        ``follow``) of those settling later."""
        status = await self._require(batch_id)
        pending = list(range(status.total))
        done = False
        while pending:
            still: list[int] = []
            for start in range(0, len(pending), WRITE_BATCH):
                part = pending[start : start + WRITE_BATCH]
                stored = await self.store.raw_results(batch_id, part)
                for index, raw in zip(part, stored, strict=True):
                    if raw is None:
                        still.append(index)
                    else:
                        yield index, raw
            pending = still
            if not follow or not pending or done:
                return
            # One more read after the batch is done picks up results written meanwhile.
            done = (await self.status(batch_id)).done
            if not done:
                await asyncio.sleep(poll_seconds)

    async def job(self, job_id: str) -> JobResult | JobState:
        """A job's result, or where it is. A job ID is ``<batch>.<n>``: the batch and the
        prompt's place in its input, from 0."""
        where = split_job_id(job_id)
        if where is None:
            batch = await self.store.status(job_id) if BATCH_ID.match(job_id) else None
            if batch is not None:
                raise JobNotFound(job_id, f"(it is a batch, with {_job_ids(job_id, batch.total)})")
            raise JobNotFound(job_id, "(a job ID is <batch>.<n>, n the prompt's place in "
                                      "the batch's input, from 0)")  # fmt: skip
        batch_id, index = where
        status = await self.store.status(batch_id)
        if status is None:
            raise JobNotFound(job_id, f"(no batch {batch_id!r}: never enqueued, or its "
                                      "results expired)")  # fmt: skip
        if index >= status.total:
            raise JobNotFound(job_id, f"(batch {batch_id} has "
                                      f"{_job_ids(batch_id, status.total)})")  # fmt: skip
        (raw,) = await self.store.raw_results(batch_id, [index])
        if raw is not None:
            return (
                JobResult.model_validate_json(raw)
                if _sound(raw)
                else await self._bad_data(batch_id, index)
            )
        requests = await self.store.requests(batch_id, [index], status.created_at or utc_now())
        state, attempts = await self.store.prompt_state(batch_id, index)
        shown = {"running": "in_progress"}.get(state, state)
        custom_id = requests[0].custom_id if requests else ""  # (an unreadable one's too)
        return JobState(job_id, batch_id, custom_id, shown, attempts)

    async def _bad_data(self, batch_id: str, index: int) -> JobResult:
        """The line shown for a stored result that is not one (planted, or corrupted)."""
        created = await self.store.created_at(batch_id) or utc_now()
        requests = await self.store.requests(batch_id, [index], created)
        error = JobError(type="BadResultData", message="the stored result is not a result")
        if requests and isinstance(requests[0], PromptRequest):
            return JobResult.for_request(requests[0], status="failed", error=error)
        return JobResult(
            job_id=job_id_for(batch_id, index), batch_id=batch_id, custom_id="",
            status="failed", error=error, model="", enqueued_at=created, finished_at=utc_now(),
        )  # fmt: skip

    async def cancel(self, batch_id: str) -> int:
        """Cancels the prompts not yet sent: queued ones at once, those a worker holds when
        it would have sent them. Returns how many were cancelled here and now."""
        await self._require(batch_id)
        return await self.store.cancel(batch_id)

    async def cancel_and_wait(
        self,
        batch_id: str,
        *,
        timeout: float = CANCEL_SETTLE_SECONDS,
        poll_seconds: float = 0.2,
    ) -> CancelReport:
        """Cancels the batch, then waits up to ``timeout`` for the prompts workers held to
        settle, and reports what the cancel ended: every prompt it cancelled (the queued
        ones at once, the held ones as their workers ended them), and those already sent,
        which finished. ``timeout`` 0 reports at once."""
        before = await self._require(batch_id)
        cancelled_queued = await self.store.cancel(batch_id)
        deadline = time.monotonic() + timeout
        status = await self.status(batch_id)
        while not status.done and time.monotonic() < deadline:
            await asyncio.sleep(min(poll_seconds, max(0.0, deadline - time.monotonic())))
            status = await self.status(batch_id)
        return CancelReport(
            batch_id=batch_id,
            state=status.state,
            cancelled=status.cancelled - before.cancelled,
            cancelled_queued=cancelled_queued,
            finished=status.succeeded + status.failed - before.succeeded - before.failed,
            unsettled=status.total - status.finished,
            ended_before=before.done,
        )

    async def retry(self, batch_id: str) -> int:
        """Enqueues the failed jobs again under their own IDs; returns how many.

        ``RetryRefused`` if the batch was cancelled or expired (or is being stopped):
        its results, refusals included, stay what they are.
        """
        await self._require(batch_id)
        return await self.store.requeue_failed(batch_id, self.settings.chunk_size)


def _job_ids(batch_id: str, total: int) -> str:
    """A batch's job IDs, for a hint: ``job IDs b1.0 to b1.39``."""
    if total == 0:
        return "no prompts, so no job IDs"
    if total == 1:
        return f"one prompt, job ID {batch_id}.0"
    return f"job IDs {batch_id}.0 to {batch_id}.{total - 1}"


def _sound(raw: bytes) -> bool:
    """Whether a stored line looks like the result lines workers write (cheap: the export
    passes lines through unparsed). Anything else, a planted pickle say, is refused as data."""
    if not (raw.startswith(b'{"job_id":') and raw.endswith(b"}")):
        return False
    try:
        raw.decode()
    except UnicodeDecodeError:
        return False
    return True


def _parsed(raw: bytes) -> JobResult | None:
    try:
        return JobResult.model_validate_json(raw)
    except ValueError:
        return None


class _StoredBlocks:
    """The stored JSON of each block of prompts, in order.

    A file's blocks (a plain iterable: reading, checking and writing out a block is all
    CPU) are taken in a thread, one block ahead, so that Redis stages one block while
    the next is read: ~0.3 s of the 2 s a 100,000-line file takes. Blocks that arrive
    asynchronously (an upload being read) are taken as they come.
    """

    def __init__(
        self,
        blocks: Iterable[Sequence[PromptLine]] | AsyncIterable[Sequence[PromptLine]],
        site_of: Callable[[PromptLine], str | None],
    ) -> None:
        self._site_of = site_of  # the site a line's prompt must run on (None: any)
        self._async = blocks.__aiter__() if isinstance(blocks, AsyncIterable) else None
        self._sync = None if isinstance(blocks, AsyncIterable) else iter(blocks)
        self._ahead: asyncio.Future[list[str] | None] | None = None

    async def next(self) -> list[str] | None:
        """The next block's requests, or None after the last."""
        if self._async is not None:
            block = await anext(self._async, None)
            return None if block is None else _stored(block, self._site_of)
        ahead, self._ahead = self._ahead, None
        return await (ahead or asyncio.to_thread(self._take))

    def prefetch(self) -> None:
        """Starts taking the next block (a file's) in a thread."""
        if self._sync is not None and self._ahead is None:
            self._ahead = asyncio.ensure_future(asyncio.to_thread(self._take))

    async def settle(self) -> None:
        """Waits for a block being taken (a thread cannot be cancelled); drops it."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            with contextlib.suppress(BaseException):
                await asyncio.shield(ahead)

    def _take(self) -> list[str] | None:
        assert self._sync is not None
        block = next(self._sync, None)
        return None if block is None else _stored(block, self._site_of)


def _site_of(pin: str | None, models: ModelMap, line: PromptLine) -> str | None:
    """The site a line's prompt must run on: its own ``site``, else the batch's, else its
    model alias's (None: any site). A line and its batch naming two sites is a ValueError."""
    if line.site is not None:
        if pin is not None and line.site != pin:
            raise ValueError(f"line {line.line_number}: site {line.site!r}, but the batch is "
                             f"pinned to {pin!r} (--site or metadata.site)")  # fmt: skip
        return line.site
    return pin or models.site_of(line.model)


def _stored(block: Sequence[PromptLine], site_of: Callable[[PromptLine], str | None]) -> list[str]:
    from producer.params import request_params

    return [
        StoredRequest.of(line.custom_id, line.messages, line.model, request_params(line.params),
                         site=site_of(line))
        for line in block
    ]  # fmt: skip
