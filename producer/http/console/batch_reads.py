"""What a batch's pages show, read from Redis: a page of its prompts (filtered by state, by
error type, by custom_id), its failures by type, one prompt whole, and the batch list.

A page of prompts is read in one pipeline once its indices are known. A filter by state
reads the batch's state bit field (one GET, half a byte a prompt); one by error type or
custom_id reads results or requests a block at a time, from where the last page ended,
until a page is full or ``SCAN_AT_MOST`` prompts were looked at (the page then says how
far it looked, and its "later" link carries on from there).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

from contract import keys
from contract.batches import WRITE_BATCH, BatchStore
from contract.chunks import code_at
from contract.models import BatchStatus, JobResult, StoredRequest
from contract.states import PROMPT_STATES
from producer.api import BatchQueue
from producer.http import records
from producer.retries import may_succeed_again

RESULTS_PAGE = 50
SCAN_AT_MOST = 200_000  # prompts a filtered page looks at, at most
ERROR_TYPES_READ_AT_MOST = 10_000  # failed prompts whose error type is read, at most
PREVIEW_CHARS = 400  # a row's answer or error (the prompt's page shows it whole)
LIST_PAGE = 50
LIST_SCAN_AT_MOST = 1000  # batches a filtered list page looks at, at most
# The states a prompt is shown in ("running" is "in progress", as everywhere else).
SHOWN_STATES = {"queued": "queued", "running": "in progress", "waiting": "waiting",
                "succeeded": "succeeded", "failed": "failed", "cancelled": "cancelled"}  # fmt: skip
STATE_FILTERS = {"in progress": "running", **{v: k for k, v in SHOWN_STATES.items()}}


@dataclass(frozen=True)
class PromptRow:
    index: int
    custom_id: str
    status: str  # a final state, or queued / in progress / waiting
    attempts: int
    preview: str  # the answer's start, or the error's
    error_type: str = ""


@dataclass(frozen=True)
class PromptFilter:
    """What the results are narrowed to (all empty: every prompt, in input order)."""

    status: str = ""  # one of SHOWN_STATES' values
    error: str = ""  # an error type
    query: str = ""  # a custom_id holds it

    @property
    def any(self) -> bool:
        return bool(self.status or self.error or self.query)

    def query_string(self, **changed: object) -> str:
        """This filter (with ``changed``) as a URL query, for links and the pager."""
        values = {"status": self.status, "error": self.error, "q": self.query, **changed}
        return urlencode({k: v for k, v in values.items() if v not in ("", None, 0)})


@dataclass(frozen=True)
class ResultsPage:
    rows: list[PromptRow]
    start: int  # where this page starts, among the prompts the filter keeps (or looks at)
    next_start: int | None  # where the next page starts, if there is more
    matching: int | None  # how many prompts the filter keeps, when known without a scan
    looked_at: int = 0  # a scan: prompts looked at up to this page's end
    of: int = 0  # a scan: of how many it could look at


async def results_page(
    queue: BatchQueue, status: BatchStatus, chosen: PromptFilter, start: int
) -> ResultsPage:
    """A page of the batch's prompts that ``chosen`` keeps, from position ``start``."""
    batch_id, store = status.batch_id, queue.store
    if chosen.status:
        candidates: Sequence[int] = await store.indices_in(
            batch_id, STATE_FILTERS.get(chosen.status, chosen.status), status.total
        )
    elif chosen.error:
        candidates = [i for state in ("failed", "cancelled")
                      for i in await store.indices_in(batch_id, state, status.total)]  # fmt: skip
        candidates = sorted(candidates)
    else:
        candidates = range(status.total)
    start = max(0, min(start, max(0, len(candidates) - 1)))
    if not chosen.error and not chosen.query:
        indices = list(candidates[start : start + RESULTS_PAGE])
        more = start + RESULTS_PAGE < len(candidates)
        return ResultsPage(await rows_of(queue, batch_id, indices), start,
                           start + RESULTS_PAGE if more else None, len(candidates))  # fmt: skip
    found, position = await _scan(store, batch_id, candidates, start, chosen)
    more = len(found) > RESULTS_PAGE or position < min(len(candidates), start + SCAN_AT_MOST)
    next_start = found[RESULTS_PAGE][0] if len(found) > RESULTS_PAGE else position
    rows = await rows_of(queue, batch_id, [i for _, i in found[:RESULTS_PAGE]])
    return ResultsPage(rows, start, next_start if more and next_start < len(candidates) else None,
                       None, looked_at=position, of=len(candidates))  # fmt: skip


async def _scan(
    store: BatchStore, batch_id: str, candidates: Sequence[int], start: int, chosen: PromptFilter
) -> tuple[list[tuple[int, int]], int]:
    """(position, index) of the prompts ``chosen`` keeps from ``start`` on, one more than a
    page if there are, and the position the scan stopped at."""
    found: list[tuple[int, int]] = []
    position, stop = start, min(len(candidates), start + SCAN_AT_MOST)
    while position < stop and len(found) <= RESULTS_PAGE:
        part = list(candidates[position : min(stop, position + WRITE_BATCH)])
        keep: list[bool] = [True] * len(part)
        if chosen.error:
            results = await store.raw_results(batch_id, part)
            keep = [
                k and _error_type(raw) == chosen.error for k, raw in zip(keep, results, strict=True)
            ]
        if chosen.query:
            requests = await store.redis.hmget(keys.batch_requests(batch_id), part)
            keep = [k and chosen.query in _custom_id(raw)
                    for k, raw in zip(keep, requests, strict=True)]  # fmt: skip
        for offset, (index, kept) in enumerate(zip(part, keep, strict=True)):
            if kept:
                found.append((position + offset, index))
                if len(found) > RESULTS_PAGE:
                    return found, position + offset
        position += len(part)
    return found, position


async def rows_of(queue: BatchQueue, batch_id: str, indices: list[int]) -> list[PromptRow]:
    """The rows of these prompts, in one pipeline."""
    if not indices:
        return []
    first, last = min(indices), max(indices)
    async with queue.redis.pipeline(transaction=False) as pipe:
        pipe.hmget(keys.batch_results(batch_id), indices)
        pipe.hmget(keys.batch_requests(batch_id), indices)
        pipe.getrange(keys.batch_states(batch_id), first // 2, last // 2)
        pipe.hmget(keys.batch_attempts(batch_id), indices)
        results, requests, states, attempts = await pipe.execute()
    offset = (first // 2) * 2
    rows = []
    for index, result, request, tried in zip(indices, results, requests, attempts, strict=True):
        parsed = parsed_result(result)
        if parsed is not None:
            text = parsed.content if parsed.error is None else parsed.error.message
            rows.append(PromptRow(index, parsed.custom_id, parsed.status, parsed.attempts,
                                  preview(text or ""),
                                  parsed.error.type if parsed.error else ""))  # fmt: skip
        else:
            state = SHOWN_STATES[PROMPT_STATES[code_at(states, index - offset)]]
            rows.append(PromptRow(index, _custom_id(request), state, _attempts(tried), ""))
    return rows


def parsed_result(raw: bytes | None) -> JobResult | None:
    if raw is None:
        return None
    try:
        return JobResult.model_validate_json(raw)
    except ValueError:
        return None


def _error_type(raw: bytes | None) -> str:
    try:
        return str(json.loads(raw or b"{}").get("error", {}).get("type", "?"))
    except (ValueError, AttributeError):
        return "?"


def _custom_id(raw: bytes | None) -> str:
    if raw is None:
        return ""
    try:
        return StoredRequest.model_validate_json(raw).custom_id
    except ValueError:
        return ""


def _attempts(raw: bytes | None) -> int:
    try:
        return int(json.loads(raw).get("total", 0)) if raw else 0
    except (ValueError, AttributeError, TypeError):
        return 0


def preview(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= PREVIEW_CHARS else flat[: PREVIEW_CHARS - 1] + "…"


@dataclass(frozen=True)
class ErrorTypes:
    counts: list[tuple[str, int]]  # most frequent first
    read: int  # failed or cancelled prompts whose result was read
    of: int  # of how many

    @property
    def whole(self) -> bool:
        return self.read >= self.of

    def count(self, error_type: str) -> int:
        return dict(self.counts).get(error_type, 0)

    def retryable(self) -> int:
        """Failed prompts a new try may mend (exact only when ``whole``)."""
        return sum(n for name, n in self.counts if may_succeed_again(name) and name != "?")


async def error_types(
    queue: BatchQueue, status: BatchStatus, summed: dict[str, int] | None = None
) -> ErrorTypes:
    """The failed and cancelled prompts by error type: ``summed`` (an ended batch's, read
    whole once), else the first ``ERROR_TYPES_READ_AT_MOST`` read now."""
    of = status.failed + status.cancelled
    if summed is not None:
        return ErrorTypes(Counter(summed).most_common(), of, of)
    if not of:
        return ErrorTypes([], 0, 0)
    indices = [
        index
        for state in ("failed", "cancelled")
        for index in await queue.store.indices_in(status.batch_id, state, status.total)
    ][:ERROR_TYPES_READ_AT_MOST]
    counts: Counter[str] = Counter(
        _error_type(raw) for raw in await queue.store.raw_results(status.batch_id, indices)
    )
    return ErrorTypes(counts.most_common(), len(indices), of)


async def retryable_failed(
    queue: BatchQueue, status: BatchStatus
) -> tuple[list[int], Counter[str]]:
    """The failed prompts a new try may mend, and those left out by error type (all read)."""
    failed = await queue.store.indices_in(status.batch_id, "failed", status.total)
    chosen: list[int] = []
    left_out: Counter[str] = Counter()
    for offset in range(0, len(failed), WRITE_BATCH):
        part = failed[offset : offset + WRITE_BATCH]
        for index, raw in zip(part, await queue.store.raw_results(status.batch_id, part),
                              strict=True):  # fmt: skip
            kind = _error_type(raw)
            if may_succeed_again(kind):
                chosen.append(index)
            else:
                left_out[kind] += 1
    return chosen, left_out


# -- the list of batches ------------------------------------------------------------------

# Filters of the list, each saying what it means.
LIST_FILTERS: dict[str, tuple[str, Callable[[BatchStatus], bool]]] = {
    "": ("all", lambda b: True),
    "running": ("running", lambda b: not b.done),
    "completed": ("completed", lambda b: b.state == "completed"),
    "has-failures": ("has failures", lambda b: b.failed > 0 or b.state == "failed"),
    "refused": ("input refused", lambda b: b.state == "failed"),
    "cancelled": ("cancelled", lambda b: b.state in ("cancelling", "cancelled")),
    "expired": ("expired", lambda b: b.state in ("expiring", "expired")),
}


@dataclass(frozen=True)
class BatchListPage:
    batches: list[tuple[BatchStatus, records.Extras]]
    after: str | None  # where this page began (None: the newest)
    next_after: str | None  # the cursor of the next page, if there may be more
    looked_at: int  # batches looked at for this page


async def batch_list(
    queue: BatchQueue, project: str, shown: str, after: str | None
) -> BatchListPage | None:
    """Up to ``LIST_PAGE`` of the project's batches that filter ``shown`` keeps, newest
    first, after batch ``after``; None when ``after`` is no batch of the project."""
    keeps = LIST_FILTERS.get(shown, LIST_FILTERS[""])[1]
    found: list[tuple[BatchStatus, records.Extras]] = []
    cursor, looked = after, 0
    while looked < LIST_SCAN_AT_MOST:
        page = await records.batch_page(queue.redis, queue.store, project,
                                        limit=LIST_PAGE, after=cursor)  # fmt: skip
        if page is None:  # the cursor is no batch of this project (or it expired)
            return None if cursor == after else BatchListPage(found, after, None, looked)
        batches, more = page
        for n, (status, extras) in enumerate(batches):
            looked += 1
            cursor = status.batch_id
            if keeps(status):
                found.append((status, extras))
                if len(found) == LIST_PAGE:
                    left = more or n < len(batches) - 1
                    return BatchListPage(found, after, cursor if left else None, looked)
        if not more:
            return BatchListPage(found, after, None, looked)
    return BatchListPage(found, after, cursor, looked)
