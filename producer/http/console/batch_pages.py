"""The batches: their list, one batch's page, their live parts, their result files.

Every page is whole HTML from the server (its data in it, the first page of a batch's
results too); ``/live/…`` routes answer the part htmx swaps in every 2 s.
"""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import quote

from aiohttp import web

from contract import keys
from contract.batches import RETRYABLE_STATES
from contract.models import BatchStatus, StoredRequest
from producer.http import records, result_files
from producer.http.console.access import Visitor
from producer.http.console.batch_reads import (
    LIST_FILTERS,
    RESULTS_PAGE,
    SHOWN_STATES,
    PromptFilter,
    batch_list,
    error_types,
    results_page,
)
from producer.http.console.charts import progress_bar
from producer.http.console.rendering import Refused, console_of, render, secured, signed_in
from producer.http.context import context_of
from producer.http.objects import Part

CANCELLABLE = ("validating", "in_progress")
SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]")
PARTS: dict[str, Part] = {"output": "output", "errors": "error"}  # the path's name → the file
ENDED_AT = ("completed_at", "failed_at", "expired_at", "cancelled_at")


def batch_path(batch_id: str) -> str:
    return f"/batches/{quote(batch_id, safe='')}"


async def find_batch(request: web.Request, visitor: Visitor) -> tuple[BatchStatus, records.Extras]:
    """The batch the path names, if the visitor's project may see it; else a 404 page."""
    ctx = context_of(request)
    batch_id = request.match_info["batch_id"]
    status = await ctx.queue.store.status(batch_id)
    (extras,) = await records.extras_of(ctx.redis, [batch_id])
    if status is None or not records.shown(batch_id, extras, visitor.project):
        raise Refused(404, "No such batch", f"There is no batch {batch_id!r} (never made, or its "
                      "records expired).")  # fmt: skip
    return status, extras


# -- the list ----------------------------------------------------------------------------


async def _list_context(request: web.Request, visitor: Visitor) -> dict[str, Any]:
    shown = request.query.get("filter", "")
    shown = shown if shown in LIST_FILTERS else ""
    after = request.query.get("after") or None
    page = await batch_list(context_of(request).queue, visitor.project, shown, after)
    if page is None:
        raise Refused(404, "No such page", "The list cannot go on from there: that batch is "
                      "gone (its records expired). Start from the newest.")  # fmt: skip
    rows = [(status, extras, *_bar_and_tokens(status, extras)) for status, extras in page.batches]
    active = [status for status, _ in page.batches if not status.done]
    backlog = sum(s.total - s.finished for s in active)
    return {"page": page, "rows": rows, "filter": shown, "filters": LIST_FILTERS,
            "backlog": backlog, "active": len(active),
            "models": await models_of(context_of(request).redis, page.batches)}  # fmt: skip


async def models_of(
    redis: Any, batches: list[tuple[BatchStatus, records.Extras]]
) -> dict[str, str]:
    """Each batch's model: its API record's, else its first prompt's (one pipeline)."""
    found = {status.batch_id: extras["model"] for status, extras in batches if extras.get("model")}
    asked = [status.batch_id for status, _ in batches
             if status.batch_id not in found and status.total]  # fmt: skip
    if asked:
        async with redis.pipeline(transaction=False) as pipe:
            for batch_id in asked:
                pipe.hget(keys.batch_requests(batch_id), "0")
            for batch_id, raw in zip(asked, await pipe.execute(), strict=True):
                found[batch_id] = _model(raw)
    return found


def _model(raw: bytes | None) -> str:
    try:
        return StoredRequest.model_validate_json(raw).model if raw else ""
    except ValueError:
        return ""


def _bar_and_tokens(status: BatchStatus, extras: records.Extras) -> tuple[Any, Any]:
    """A batch's progress bar, its expired prompts told apart, and its tokens (in, out),
    once its summary was read (an ended batch's first view reads it)."""
    summed = result_files.cached_summary(status, extras)
    expired = summed.errors.get("Expired", 0) if summed is not None else 0
    bar = progress_bar(status.succeeded, status.failed, status.cancelled, expired, status.total)
    return bar, (summed.input_tokens, summed.output_tokens) if summed is not None else None


@signed_in
async def batches(request: web.Request, visitor: Visitor) -> web.StreamResponse:
    return render(request, "batches.html", visitor=visitor, title="Batches", section="batches",
                  **await _list_context(request, visitor))  # fmt: skip


@signed_in
async def batches_live(request: web.Request, visitor: Visitor) -> web.StreamResponse:
    return render(request, "batches_live.html", visitor=visitor,
                  **await _list_context(request, visitor))  # fmt: skip


# -- one batch ---------------------------------------------------------------------------


async def batch_context(
    request: web.Request, status: BatchStatus, extras: records.Extras
) -> dict[str, Any]:
    """What the batch's live part shows: progress, pace, counts, errors, times, actions."""
    ctx = context_of(request)
    summed = await result_files.summary(ctx, status, extras)
    errors = await error_types(ctx.queue, status, summed.errors if summed else None)
    labels = {"output": "Download output file", "errors": "Download error file"}
    files = [(name, label) for name, label in labels.items()
             if result_files.has_part(status, extras, PARTS[name])]  # fmt: skip
    moments = [(name.removesuffix("_at").replace("_", " "), getattr(status, name))
               for name in ("created_at", "in_progress_at", "expires_at", "cancelling_at",
                            "expiring_at", *ENDED_AT) if getattr(status, name)]  # fmt: skip
    retry_offered = status.state in RETRYABLE_STATES and status.failed > 0
    retryable = errors.retryable() if errors.whole else None
    return {
        "status": status, "errors": errors, "files": files, "moments": moments,
        "bar": progress_bar(status.succeeded, status.failed, status.cancelled,
                            errors.count("Expired"), status.total),
        "pace": console_of(request).pace.read(status, time.time()),
        "model": (await models_of(ctx.redis, [(status, extras)])).get(status.batch_id, ""),
        "endpoint": extras.get("endpoint", ""),
        "usage": summed.usage() if summed is not None else None,
        "cancellable": status.state in CANCELLABLE,
        "retry_offered": retry_offered and retryable != 0, "retryable": retryable,
        "path": batch_path(status.batch_id),
    }  # fmt: skip


def prompt_filter(request: web.Request) -> PromptFilter:
    status = request.query.get("status", "")
    return PromptFilter(
        status=status if status in SHOWN_STATES.values() else "",
        error=request.query.get("error", "")[:100],
        query=request.query.get("q", "").strip()[:200],
    )


@signed_in
async def batch(request: web.Request, visitor: Visitor) -> web.StreamResponse:
    status, extras = await find_batch(request, visitor)
    chosen = prompt_filter(request)
    start = _int(request.query.get("start"), 0, max(0, status.total - 1))
    page = await results_page(context_of(request).queue, status, chosen, start)
    return render(request, "batch.html", visitor=visitor, title=f"Batch {status.batch_id}",
                  section="batches", page=page, chosen=chosen, page_size=RESULTS_PAGE,
                  states=SHOWN_STATES.values(),
                  **await batch_context(request, status, extras))  # fmt: skip


@signed_in
async def batch_live(request: web.Request, visitor: Visitor) -> web.StreamResponse:
    status, extras = await find_batch(request, visitor)
    return render(request, "batch_live.html", visitor=visitor,
                  **await batch_context(request, status, extras))  # fmt: skip


@signed_in
async def download(request: web.Request, visitor: Visitor) -> web.StreamResponse:
    """The batch's output (succeeded prompts) or error file, as the API writes them."""
    status, extras = await find_batch(request, visitor)
    part = PARTS[request.match_info["half"]]
    if not result_files.has_part(status, extras, part):
        raise Refused(404, "No such file", f"Batch {status.batch_id!r} has no {part} file (yet).",
                      back=batch_path(status.batch_id))  # fmt: skip
    name = SAFE_NAME.sub("_", f"{status.batch_id}_{part}.jsonl")
    response = web.StreamResponse(headers={
        "Content-Type": "application/jsonl",
        "Content-Disposition": f'attachment; filename="{name}"',
    })  # fmt: skip
    secured(response)
    await response.prepare(request)
    async for piece in result_files.pieces(context_of(request), status, extras, part):
        await response.write(piece)
    await response.write_eof()
    return response


def _int(raw: str | None, low: int, high: int) -> int:
    try:
        return min(high, max(low, int(raw or low)))
    except ValueError:
        return low
