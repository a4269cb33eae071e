"""What the console's pages show, read from Redis in a fixed number of round trips.

The fleet page (and its live update, every 2 s) reads the registries ``top`` reads,
never a keyspace scan: Redis's clock, every identity's state (registry, one pipeline
of one HMGET per attribute), the workers (registry, one pipeline), the last hour's
throughput (one HGETALL) and the webhook outbox (one pipeline, a second while it holds
events): 7 or 8 round trips whatever the number of identities (``docs/benchmarks.md``).
A batch's page reads its record, one page of its results, and its failures' types.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, replace

from redis.asyncio import Redis

from contract import keys
from contract.batches import WRITE_BATCH
from contract.chunks import code_at
from contract.models import BatchStatus, JobResult, StoredRequest
from contract.outbox import OutboxState, read_outbox
from contract.states import PROMPT_STATES
from contract.throughput import Interval, read_throughput
from producer.api import BatchQueue
from producer.fleet import (
    IDENTITY_STATES,
    IdentityHealth,
    WorkerInfo,
    identities,
    redis_now_ms,
    workers,
    worst_first,
)
from producer.http import records

SHOWN_IDENTITIES = 15
GRID_LETTERS = {"ready": "r", "full": "f", "probing": "p", "cooling": "c"}
RESULTS_PAGE = 50
SEARCH_SHOWN = 50
SEARCH_SCANS_AT_MOST = 200_000  # prompts whose custom_id a search reads, at most
ERROR_TYPES_READ_AT_MOST = 10_000  # failed prompts whose error type is read, at most
PREVIEW_CHARS = 160


@dataclass(frozen=True)
class FleetView:
    at: float  # epoch s
    states: dict[str, int]  # identities by state
    grid: str  # one letter per identity (registry order): r, f, p or c
    in_flight: int
    capacity: int
    worst: list[IdentityHealth]
    workers: list[WorkerInfo]
    throughput: list[Interval]
    outbox: OutboxState

    @property
    def identities(self) -> int:
        return len(self.grid)

    @property
    def alive(self) -> int:
        return sum(1 for w in self.workers if w.alive)


async def read_fleet(redis: Redis, project: str) -> FleetView:
    """The fleet (shared by every project), and the webhook events of ``project``'s batches."""
    at = time.time()
    now_ms = await redis_now_ms(redis)  # one clock reading for the identities and the workers
    names = [keys.decoded(raw) for raw in await redis.zrange(keys.identities_known(), 0, -1)]
    found = await identities(redis, names, now_ms=now_ms)
    counts = Counter(identity.state for identity in found)
    return FleetView(
        at=at,
        states={state: counts.get(state, 0) for state in IDENTITY_STATES},
        grid="".join(GRID_LETTERS[identity.state] for identity in found),
        in_flight=sum(identity.inflight for identity in found),
        capacity=sum(identity.cap for identity in found),
        worst=[i for i in worst_first(found)[:SHOWN_IDENTITIES] if i.state != "ready"],
        workers=await workers(redis, now_ms=now_ms),
        throughput=await read_throughput(redis, at),
        outbox=await _projects_events(redis, await read_outbox(redis, int(at * 1000)), project),
    )


async def _projects_events(redis: Redis, outbox: OutboxState, project: str) -> OutboxState:
    """The outbox with only the events of ``project``'s batches listed (all are counted)."""
    listed = [*outbox.next_pending, *outbox.last_failed]
    if not listed:
        return outbox
    extras = dict(
        zip(
            [e.batch_id for e in listed],
            await records.extras_of(redis, [e.batch_id for e in listed]),
            strict=True,
        )
    )
    mine = [e for e in listed if records.project_of(extras[e.batch_id]) == project]
    return replace(outbox, next_pending=[e for e in outbox.next_pending if e in mine],
                   last_failed=[e for e in outbox.last_failed if e in mine])  # fmt: skip


@dataclass(frozen=True)
class ResultRow:
    index: int
    custom_id: str
    status: str  # a final state, or queued / running / waiting
    attempts: int
    preview: str  # the answer's start, or the error
    error_type: str = ""


@dataclass(frozen=True)
class ResultsPage:
    rows: list[ResultRow]
    start: int
    total: int
    query: str = ""
    scanned: int = 0  # a search: prompts whose custom_id was read
    more: bool = False  # a search: more matches than shown, or prompts left unread


async def results_page(queue: BatchQueue, status: BatchStatus, start: int) -> ResultsPage:
    """The results of prompts ``start`` to ``start + RESULTS_PAGE``, in input order."""
    indices = list(range(start, min(status.total, start + RESULTS_PAGE)))
    return ResultsPage(await _rows(queue, status.batch_id, indices), start, status.total)


async def search(queue: BatchQueue, status: BatchStatus, query: str) -> ResultsPage:
    """The prompts whose custom_id holds ``query``, in input order (the first few)."""
    batch_id, found, scanned = status.batch_id, [], 0
    limit = min(status.total, SEARCH_SCANS_AT_MOST)
    while scanned < limit and len(found) <= SEARCH_SHOWN:
        part = list(range(scanned, min(limit, scanned + WRITE_BATCH)))
        raws = await queue.redis.hmget(keys.batch_requests(batch_id), part)
        found += [i for i, raw in zip(part, raws, strict=True) if query in _custom_id(raw)]
        scanned += len(part)
    more = len(found) > SEARCH_SHOWN or scanned < status.total
    rows = await _rows(queue, batch_id, found[:SEARCH_SHOWN])
    return ResultsPage(rows, 0, status.total, query=query, scanned=scanned, more=more)


async def _rows(queue: BatchQueue, batch_id: str, indices: list[int]) -> list[ResultRow]:
    if not indices:
        return []
    first, last = min(indices), max(indices)
    async with queue.redis.pipeline(transaction=False) as pipe:
        pipe.hmget(keys.batch_results(batch_id), indices)
        pipe.hmget(keys.batch_requests(batch_id), indices)
        pipe.getrange(keys.batch_states(batch_id), first // 2, last // 2)
        results, requests, states = await pipe.execute()
    offset = (first // 2) * 2
    rows = []
    for index, result, request in zip(indices, results, requests, strict=True):
        parsed = _result(result)
        if parsed is not None:
            preview = parsed.content if parsed.error is None else parsed.error.message
            rows.append(ResultRow(index, parsed.custom_id, parsed.status, parsed.attempts,
                                  _preview(preview or ""),
                                  parsed.error.type if parsed.error else ""))  # fmt: skip
        else:
            state = PROMPT_STATES[code_at(states, index - offset)]
            shown = {"running": "in progress"}.get(state, state)
            rows.append(ResultRow(index, _custom_id(request), shown, 0, ""))
    return rows


def _result(raw: bytes | None) -> JobResult | None:
    if raw is None:
        return None
    try:
        return JobResult.model_validate_json(raw)
    except ValueError:
        return None


def _custom_id(raw: bytes | None) -> str:
    if raw is None:
        return ""
    try:
        return StoredRequest.model_validate_json(raw).custom_id
    except ValueError:
        return ""


def _preview(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= PREVIEW_CHARS else flat[: PREVIEW_CHARS - 1] + "…"


@dataclass(frozen=True)
class ErrorTypes:
    counts: list[tuple[str, int]]  # most frequent first
    read: int  # failed or cancelled prompts whose result was read
    of: int  # of how many


async def error_types(queue: BatchQueue, status: BatchStatus) -> ErrorTypes:
    """The failed and cancelled prompts by error type (the first ``ERROR_TYPES_READ_AT_MOST``)."""
    of = status.failed + status.cancelled
    if not of:
        return ErrorTypes([], 0, 0)
    indices = [
        index
        for state in ("failed", "cancelled")
        for index in await queue.store.indices_in(status.batch_id, state, status.total)
    ][:ERROR_TYPES_READ_AT_MOST]
    counts: Counter[str] = Counter()
    for raw in await queue.store.raw_results(status.batch_id, indices):
        try:
            counts[json.loads(raw or b"{}").get("error", {}).get("type", "?")] += 1
        except (ValueError, AttributeError):
            counts["?"] += 1
    return ErrorTypes(counts.most_common(), len(indices), of)
