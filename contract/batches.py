"""A batch in Redis: staged, published as chunks, started, settled, cancelled, retried.

Every prompt's request and result live in the batch's own hashes, its state in a
bit field with exact counts beside it (``contract.states``). The arq queue only
carries chunks: a few bytes naming prompt indices. A batch is written in two
steps, so that an interrupted enqueue leaves nothing a worker could run: first
its requests are staged (the batch says ``validating`` and expires soon), then one
MULTI/EXEC publishes it (the chunks, the counts, the real TTL) all at once.

Chunks of all active batches take turns: a new batch's chunk *i* is scored just
after the queue's head plus *i*, so it lines up beside the chunks already waiting
instead of behind all of them (round-robin across batches, input order within one).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from arq.jobs import serialize_job
from redis.asyncio import Redis

from contract import keys
from contract.models import BatchStatus, ChunkPayload, JobError, JobResult, PromptRequest
from contract.states import CODE, FINAL_STATES, LUA_PRELUDE, PROMPT_STATES, STOPPING

JOB_FUNCTION = "run_chunk"
WRITE_BATCH = 1000  # requests per HSET while staging; results per HMGET while reading
MIN_CHUNKS = 8  # a small batch is still spread over several chunks (and workers)
STAGING_TTL_SECONDS = 3600  # an enqueue that never publishes leaves nothing for long

# KEYS: meta, states, counts, attempts, requests. ARGV: now (ms), ttl, then indices.
# Marks the chunk's unsettled prompts running (unless the batch stopped or its window
# ended) and hands back, per index: its state before, its request and its attempts so
# far. Returns {batch state, created_at, expires_ms, ...}.
_START = (
    LUA_PRELUDE
    + """
local state, created_at, expires = unpack(
  redis.call('HMGET', KEYS[1], 'state', 'created_at', 'expires_ms'))
if not state then return {false, false, false} end
local out = {state, created_at, expires or false}
local running = state == 'in_progress' and (tonumber(expires) or math.huge) > tonumber(ARGV[1])
for i = 3, #ARGV do
  local idx = ARGV[i]
  local was = state_of(KEYS[2], idx)
  if was < FINAL and running then move(KEYS[2], KEYS[3], idx, 1) end
  out[#out + 1] = was
  out[#out + 1] = redis.call('HGET', KEYS[5], idx) or false
  out[#out + 1] = redis.call('HGET', KEYS[4], idx) or false
end
keep(KEYS[2], ARGV[2])
return out
"""
)

# KEYS: meta, states, counts, results, attempts, then the batch keys to keep alive at
# the end. ARGV: ttl, now (ISO), then (index, state code, result JSON) triples. A prompt
# that already has its result keeps it: the first result wins.
_SAVE = (
    LUA_PRELUDE
    + """
local saved = 0
for i = 3, #ARGV, 3 do
  local idx, code = ARGV[i], tonumber(ARGV[i + 1])
  if state_of(KEYS[2], idx) < FINAL then
    redis.call('HSET', KEYS[4], idx, ARGV[i + 2])
    redis.call('HDEL', KEYS[5], idx)
    move(KEYS[2], KEYS[3], idx, code)
    saved = saved + 1
  end
end
keep(KEYS[2], ARGV[1])
keep(KEYS[4], ARGV[1])
local batch_keys = {}
for i = 6, #KEYS do batch_keys[#batch_keys + 1] = KEYS[i] end
return {saved, finish_if_done(KEYS[1], KEYS[3], ARGV[2], ARGV[1], batch_keys)}
"""
)

# KEYS: states, counts. ARGV: target code, the codes it may move from (comma-separated),
# ttl, then indices. Returns how many moved.
_MARK = (
    LUA_PRELUDE
    + """
local allowed = {}
for code in string.gmatch(ARGV[2], '%d+') do allowed[tonumber(code)] = true end
local moved = 0
for i = 4, #ARGV do
  if allowed[state_of(KEYS[1], ARGV[i])] then
    move(KEYS[1], KEYS[2], ARGV[i], tonumber(ARGV[1]))
    moved = moved + 1
  end
end
keep(KEYS[1], ARGV[3])
return moved
"""
)

# KEYS: attempts. ARGV: index, error class, when the prompt started (epoch s), ttl. One
# failed attempt counted; the start time is kept so a re-run reports when it first began.
_SPEND = (
    LUA_PRELUDE
    + """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
local a = raw and cjson.decode(raw) or {total = 0, kinds = {}}
if type(a.kinds) ~= 'table' then a.kinds = {} end
if not a.started_at then a.started_at = tonumber(ARGV[3]) end
a.total = (tonumber(a.total) or 0) + 1
a.kinds[ARGV[2]] = (tonumber(a.kinds[ARGV[2]]) or 0) + 1
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(a))
keep(KEYS[1], ARGV[4])
return {a.kinds[ARGV[2]], a.total}
"""
)

# KEYS: meta, states, counts, results, attempts. ARGV: now (ISO), then indices. Failed
# prompts go back to queued, forgetting their result; returns the indices moved.
_REQUEUE = (
    LUA_PRELUDE
    + """
local moved = {}
for i = 2, #ARGV do
  local idx = ARGV[i]
  if state_of(KEYS[2], idx) == 4 then
    redis.call('HDEL', KEYS[4], idx)
    redis.call('HDEL', KEYS[5], idx)
    move(KEYS[2], KEYS[3], idx, 0)
    moved[#moved + 1] = idx
  end
end
if #moved > 0 then
  redis.call('HSET', KEYS[1], 'state', 'in_progress', 'retried_at', ARGV[1])
  redis.call('HDEL', KEYS[1], 'completed_at')
end
return moved
"""
)

# KEYS: queue, then for each chunk: its arq job key and in-progress key. ARGV: chunk IDs.
# Takes a chunk out of the queue unless a worker holds it; returns the taken payloads.
_CLAIM_QUEUED = """
local taken = {}
for i, chunk in ipairs(ARGV) do
  local job, running = KEYS[2 * i], KEYS[2 * i + 1]
  if redis.call('EXISTS', running) == 0 and redis.call('ZREM', KEYS[1], chunk) == 1 then
    taken[#taken + 1] = redis.call('GET', job) or false
    redis.call('DEL', job)
  end
end
return taken
"""

# KEYS: meta. ARGV: now (ISO), the state to stop in (cancelling or expiring). A batch
# still running starts stopping; returns the batch's state after.
_STOPPING = """
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'in_progress' then
  redis.call('HSET', KEYS[1], 'state', ARGV[2], ARGV[2] .. '_at', ARGV[1])
  return ARGV[2]
end
return state
"""


def json_dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), default=str).encode()


def iso_now() -> str:
    return datetime.now(UTC).isoformat()


def chunked(indices: Sequence[int], size: int) -> list[list[int]]:
    return [list(indices[start : start + size]) for start in range(0, len(indices), size)]


def chunk_size_for(total: int, chunk_size: int) -> int:
    """Prompts per chunk: ``chunk_size``, smaller for a small batch so several workers share it."""
    return max(1, min(chunk_size, math.ceil(total / MIN_CHUNKS)))


def _timestamp(raw: bytes | str | None) -> datetime | None:
    return datetime.fromisoformat(keys.decoded(raw)) if raw else None


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
        **{name: _timestamp(fields[name]) for name in _TIMESTAMPS},
    )


def _register(pipe: Any, batch_id: str, now_ms: int, ttl: int) -> None:
    """Lists the batch in the registry that ``batches`` and ``top`` read (kept as long)."""
    pipe.zadd(keys.batches_created(), {batch_id: now_ms})
    pipe.zremrangebyscore(keys.batches_created(), "-inf", now_ms - ttl * 1000)
    pipe.expire(keys.batches_created(), ttl)


@dataclass(frozen=True)
class StartedPrompt:
    """One prompt of a chunk as the worker starts it."""

    index: int
    state_before: str
    request_json: bytes | None
    attempts_json: bytes | None


@dataclass(frozen=True)
class ChunkStart:
    """What starting a chunk found: the batch's state and each prompt's."""

    batch_state: str | None  # None: the batch is gone (its record expired, or never published)
    created_at: datetime | None
    past_its_window: bool  # the completion window ended: nothing more is sent
    prompts: tuple[StartedPrompt, ...]


class BatchStore:
    def __init__(self, redis: Redis, *, queue_name: str, ttl_seconds: int) -> None:
        self.redis = redis
        self.queue_name = queue_name
        self.ttl = ttl_seconds
        self._start = redis.register_script(_START)
        self._save = redis.register_script(_SAVE)
        self._mark = redis.register_script(_MARK)
        self._spend = redis.register_script(_SPEND)
        self._requeue = redis.register_script(_REQUEUE)
        self._claim = redis.register_script(_CLAIM_QUEUED)
        self._stopping = redis.register_script(_STOPPING)

    # -- producer side ---------------------------------------------------------------

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
            await self._queue_chunks(pipe, batch_id, ids, chunks)
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
    ) -> None:
        """A batch whose input was refused: nothing to run, its errors kept (``failed``)."""
        now = iso_now()
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(*keys.batch_keys(batch_id))
            pipe.hset(
                keys.batch_meta(batch_id),
                mapping={**meta, "total": "0", "state": "failed", "failed_at": now,
                         "errors": json.dumps(list(errors))},
            )  # fmt: skip
            pipe.expire(keys.batch_meta(batch_id), self.ttl)
            _register(pipe, batch_id, int(time.time() * 1000), self.ttl)
            await pipe.execute()

    async def _queue_chunks(
        self, pipe: Any, batch_id: str, ids: Sequence[str], chunks: Sequence[Sequence[int]]
    ) -> None:
        head = await self.redis.zrange(self.queue_name, 0, 0, withscores=True)
        first = max(head[0][1], 1.0) if head else 1.0  # arq never starts a job scored 0
        enqueue_ms = int(time.time() * 1000)
        for chunk_id, indices in zip(ids, chunks, strict=True):
            payload = ChunkPayload(batch_id=batch_id, indices=tuple(indices)).model_dump()
            job = serialize_job(
                JOB_FUNCTION, (payload,), {}, None, enqueue_ms, serializer=json_dumps
            )
            pipe.set(keys.arq_job(chunk_id), job, px=self.ttl * 1000)
        pipe.zadd(self.queue_name, {chunk_id: first + n for n, chunk_id in enumerate(ids)})
        pipe.sadd(keys.batch_chunks(batch_id), *ids)

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
        return _timestamp(await self.redis.hget(keys.batch_meta(batch_id), "created_at"))

    async def requests(
        self, batch_id: str, indices: Sequence[int], enqueued_at: datetime
    ) -> list[PromptRequest]:
        """The requests at these indices (those still there), in their order."""
        found: list[PromptRequest] = []
        for part in chunked(indices, WRITE_BATCH):
            raws = await self.redis.hmget(keys.batch_requests(batch_id), part)
            found += [
                PromptRequest.from_stored(raw, batch_id=batch_id, index=i, enqueued_at=enqueued_at)
                for i, raw in zip(part, raws, strict=True)
                if raw
            ]
        return found

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
        state = await self._stopping(
            keys=[keys.batch_meta(batch_id)], args=[iso_now(), STOPPING[why]]
        )
        if keys.decoded(state or b"") != STOPPING[why]:
            return 0
        chunk_ids = sorted(
            keys.decoded(c) for c in await self.redis.smembers(keys.batch_chunks(batch_id))
        )
        taken: list[int] = []
        for part in chunked(chunk_ids, WRITE_BATCH):
            job_keys = [k for c in part for k in (keys.arq_job(c), keys.arq_in_progress(c))]
            for raw in await self._claim(keys=[self.queue_name, *job_keys], args=part):
                if raw:
                    taken += ChunkPayload.model_validate(json.loads(raw)["a"][0]).indices
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
        created = await self.created_at(batch_id)
        if created is None or not indices:
            return 0
        saved = 0
        for part in chunked(indices, WRITE_BATCH):
            requests = await self.requests(batch_id, part, created)
            saved += await self.save_results([stopped_result(r, why) for r in requests])
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
            if await self.state(batch_id) == "in_progress":
                await self.expire(batch_id)
                expired.append(batch_id)
            await self.redis.zrem(keys.batch_deadlines(), batch_id)
        return expired

    async def requeue_failed(self, batch_id: str, chunk_size: int) -> int:
        """Queues the failed prompts again under their own job IDs; returns how many."""
        total = int(await self.redis.hget(keys.batch_meta(batch_id), "total") or 0)
        failed = await self.indices_in(batch_id, "failed", total)
        moved: list[int] = []
        for part in chunked(failed, WRITE_BATCH):
            done = await self._requeue(keys=self._state_keys(batch_id), args=[iso_now(), *part])
            moved += [int(i) for i in done]
        if not moved:
            return 0
        round_ = await self.redis.hincrby(keys.batch_meta(batch_id), "retries", 1)
        chunks = chunked(moved, chunk_size_for(len(moved), chunk_size))
        ids = [f"{batch_id}:r{round_}:{n}" for n in range(len(chunks))]
        async with self.redis.pipeline(transaction=True) as pipe:
            await self._queue_chunks(pipe, batch_id, ids, chunks)
            for key in keys.batch_keys(batch_id):
                pipe.expire(key, self.ttl)
            await pipe.execute()
        return len(moved)

    # -- worker side -----------------------------------------------------------------

    async def start_chunk(self, batch_id: str, indices: Sequence[int]) -> ChunkStart:
        """Marks the chunk's unsettled prompts running and reads them, in one round trip."""
        found = await self._start(
            keys=[
                keys.batch_meta(batch_id),
                keys.batch_states(batch_id),
                keys.batch_counts(batch_id),
                keys.batch_attempts(batch_id),
                keys.batch_requests(batch_id),
            ],
            args=[int(time.time() * 1000), self.ttl, *indices],
        )
        state, created, expires_ms, *rest = found
        if not state:
            return ChunkStart(None, None, False, ())
        prompts = tuple(
            StartedPrompt(index, PROMPT_STATES[int(rest[3 * n])], rest[3 * n + 1] or None,
                          rest[3 * n + 2] or None)
            for n, index in enumerate(indices)
        )  # fmt: skip
        expired = expires_ms is not None and int(expires_ms) <= time.time() * 1000
        return ChunkStart(keys.decoded(state), _timestamp(created), expired, prompts)

    async def save_results(self, results: Sequence[JobResult]) -> int:
        """Stores each prompt's one result and counts it, one atomic call per batch."""
        by_batch: dict[str, list[JobResult]] = {}
        for result in results:
            by_batch.setdefault(result.batch_id, []).append(result)
        if not by_batch:
            return 0
        now = iso_now()
        async with self.redis.pipeline(transaction=False) as pipe:
            for batch_id, batch_results in by_batch.items():
                args: list[str | int] = [self.ttl, now]
                for result in batch_results:
                    index = int(result.job_id.rpartition(".")[2])
                    args += [index, CODE[result.status], result.model_dump_json()]
                await self._save(
                    keys=[*self._state_keys(batch_id), *keys.batch_keys(batch_id)],
                    args=args,
                    client=pipe,
                )
            replies = await pipe.execute()
        return sum(int(saved) for saved, _ in replies)

    async def mark(self, batch_id: str, indices: Iterable[int], state: str) -> int:
        """Moves unsettled prompts between queued, running and waiting."""
        indices = list(indices)
        if not indices:
            return 0
        allowed = ",".join(str(CODE[s]) for s in ("queued", "running", "waiting") if s != state)
        return int(
            await self._mark(
                keys=[keys.batch_states(batch_id), keys.batch_counts(batch_id)],
                args=[CODE[state], allowed, self.ttl, *indices],
            )
        )

    async def spend(
        self, batch_id: str, index: int, kind: str, started_at: datetime
    ) -> tuple[int, int]:
        """Counts one failed attempt of ``kind``; returns (spent of that kind, total)."""
        spent, total = await self._spend(
            keys=[keys.batch_attempts(batch_id)],
            args=[index, kind, started_at.timestamp(), self.ttl],
        )
        return int(spent), int(total)

    def _state_keys(self, batch_id: str) -> list[str]:
        return [
            keys.batch_meta(batch_id),
            keys.batch_states(batch_id),
            keys.batch_counts(batch_id),
            keys.batch_results(batch_id),
            keys.batch_attempts(batch_id),
        ]


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


__all__ = ["JOB_FUNCTION", "BatchStore", "ChunkStart", "StartedPrompt", "stopped_result"]
