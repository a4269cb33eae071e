"""The console's routes: the fleet, the batches, one batch, sign-in, and their live parts.

Every page is whole HTML from the server (its data in it, the first page of a batch's
results too); ``/…/live`` routes answer the part htmx swaps in every 2 s. Everything
shown is escaped by Jinja2 (custom_ids, answers and batch IDs come from users and a
third-party site), and every answer carries a Content-Security-Policy that allows no
inline script or style and no other origin.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from aiohttp import web

from contract.models import BatchStatus
from contract.retrying import TRANSIENT
from producer.http import records, result_files
from producer.http.console.access import CSRF_FIELD, Visitor
from producer.http.console.charts import throughput_chart
from producer.http.console.reads import (
    RESULTS_PAGE,
    error_types,
    read_fleet,
    results_page,
    search,
)
from producer.http.console.state import CONSOLE, ConsoleState
from producer.http.context import context_of
from producer.http.liveness import has_workers, nobody_runs
from producer.http.objects import Part

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
LIST_LOOKS_AT = 200  # the newest batches the list looks at
STATES = ("", "in_progress", "completed", "failed", "cancelled", "expired")
CANCELLABLE = ("validating", "in_progress")
SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]")
PARTS: dict[str, Part] = {"output": "output", "errors": "error"}  # the path's name → the file

Handler = Callable[[web.Request, Visitor], Awaitable[web.StreamResponse]]
# Why nothing runs the batches (no live worker on the queue), for a whole page's banner.
NOBODY_RUNS: web.RequestKey[str | None] = web.RequestKey("chatgptes_nobody_runs", str)


def secured(response: web.StreamResponse) -> web.StreamResponse:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def console_of(request: web.Request) -> ConsoleState:
    return request.app[CONSOLE]


def render(
    request: web.Request, template: str, *, http_status: int = 200, **context: Any
) -> web.Response:
    console = console_of(request)
    visitor = context.pop("visitor", console.access.visitor(request))
    html = console.templates.get_template(template).render(
        visitor=visitor, csrf=console.access.csrf_token(visitor),
        nobody_runs=request.get(NOBODY_RUNS), **context,
    )  # fmt: skip
    response = web.Response(text=html, status=http_status, content_type="text/html")
    secured(response)
    return response


def signed_in(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Runs ``handler`` for a signed-in visitor; sends anyone else to the sign-in form."""

    @functools.wraps(handler)
    async def checked(request: web.Request) -> web.StreamResponse:
        visitor = console_of(request).access.visitor(request)
        if visitor is None:
            if request.headers.get("HX-Request"):
                return secured(web.Response(status=401, headers={"HX-Redirect": "/sign-in"}))
            target = quote(request.path_qs, safe="/?=&")
            raise web.HTTPSeeOther(f"/sign-in?next={target}")
        try:
            if not request.path.startswith("/live/"):  # a whole page, with its banner
                request[NOBODY_RUNS] = await _nobody_runs(request)
            return await handler(request, visitor)
        except web.HTTPForbidden as refused:
            return render(request, "message.html", http_status=403, title="Refused",
                          message=refused.text, visitor=visitor)  # fmt: skip
        except TRANSIENT:
            return render(request, "message.html", http_status=503, title="Redis unreachable",
                          message="The console cannot reach its Redis right now; it will "
                          "answer again once Redis does.", visitor=visitor)  # fmt: skip

    return checked


async def _nobody_runs(request: web.Request) -> str | None:
    ctx = context_of(request)
    if await has_workers(ctx.redis, ctx.settings.queue_name):
        return None
    return nobody_runs(ctx.settings.queue_name)


# -- the fleet -------------------------------------------------------------------------


async def _fleet_context(request: web.Request, visitor: Visitor) -> dict[str, Any]:
    started = time.perf_counter()
    view = await read_fleet(context_of(request).redis, visitor.project)
    return {"view": view, "chart": throughput_chart(view.throughput),
            "read_ms": (time.perf_counter() - started) * 1000}  # fmt: skip


@signed_in
async def fleet(request: web.Request, visitor: Visitor) -> web.StreamResponse:
    return render(request, "fleet.html", title="Fleet", section="fleet", visitor=visitor,
                  **await _fleet_context(request, visitor))  # fmt: skip


@signed_in
async def fleet_live(request: web.Request, visitor: Visitor) -> web.StreamResponse:
    return render(request, "fleet_live.html", visitor=visitor,
                  **await _fleet_context(request, visitor))  # fmt: skip


# -- the batches -----------------------------------------------------------------------


async def _batches_context(request: web.Request, visitor: Visitor) -> dict[str, Any]:
    ctx = context_of(request)
    state = request.query.get("state", "")
    found = await records.batch_page(ctx.redis, ctx.queue.store, visitor.project,
                                     limit=LIST_LOOKS_AT, after=None)  # fmt: skip
    recent = found[0] if found is not None else []
    shown = [status for status, _ in recent if not state or status.state == state]
    return {"batches": shown, "state": state if state in STATES else "", "states": STATES,
            "looked_at": LIST_LOOKS_AT}  # fmt: skip


@signed_in
async def batches(request: web.Request, visitor: Visitor) -> web.StreamResponse:
    return render(request, "batches.html", title="Batches", section="batches", visitor=visitor,
                  **await _batches_context(request, visitor))  # fmt: skip


@signed_in
async def batches_live(request: web.Request, visitor: Visitor) -> web.StreamResponse:
    return render(request, "batches_live.html", visitor=visitor,
                  **await _batches_context(request, visitor))  # fmt: skip


async def _batch(request: web.Request, visitor: Visitor) -> BatchStatus | None:
    """The batch the path names, if the visitor's project may see it."""
    found = await _batch_and_extras(request, visitor)
    return found[0] if found is not None else None


async def _batch_and_extras(
    request: web.Request, visitor: Visitor
) -> tuple[BatchStatus, records.Extras] | None:
    ctx = context_of(request)
    batch_id = request.match_info["batch_id"]
    status = await ctx.queue.store.status(batch_id)
    (extras,) = await records.extras_of(ctx.redis, [batch_id])
    if status is None or not records.shown(batch_id, extras, visitor.project):
        return None
    return status, extras


def _no_batch(request: web.Request, visitor: Visitor) -> web.Response:
    return render(request, "message.html", http_status=404, title="No such batch", visitor=visitor,
                  message=f"There is no batch {request.match_info['batch_id']!r} (never made, "
                  "or its records expired).")  # fmt: skip


async def _batch_context(
    request: web.Request, status: BatchStatus, extras: records.Extras
) -> dict[str, Any]:
    queue = context_of(request).queue
    labels = {"output": "Download output file", "errors": "Download error file"}
    files = [(name, label) for name, label in labels.items()
             if result_files.has_part(status, extras, PARTS[name])]  # fmt: skip
    moments = [(name.removesuffix("_at").replace("_", " "), getattr(status, name))
               for name in ("created_at", "in_progress_at", "expires_at", "cancelling_at",
                            "expiring_at", "completed_at", "failed_at", "expired_at",
                            "cancelled_at") if getattr(status, name)]  # fmt: skip
    retryable = status.done and status.failed > 0 and status.state != "failed"
    return {"status": status, "errors": await error_types(queue, status), "files": files,
            "moments": moments, "cancellable": status.state in CANCELLABLE,
            "retryable": retryable}  # fmt: skip


@signed_in
async def batch(request: web.Request, visitor: Visitor) -> web.StreamResponse:
    found = await _batch_and_extras(request, visitor)
    if found is None:
        return _no_batch(request, visitor)
    status, extras = found
    queue = context_of(request).queue
    query = request.query.get("q", "").strip()
    if query:
        page = await search(queue, status, query)
    else:
        start = _int(request.query.get("start"), 0, max(0, status.total - 1))
        page = await results_page(queue, status, start)
    return render(request, "batch.html", title=f"Batch {status.batch_id}", section="batches",
                  visitor=visitor, page=page, page_size=RESULTS_PAGE,
                  **await _batch_context(request, status, extras))  # fmt: skip


@signed_in
async def batch_live(request: web.Request, visitor: Visitor) -> web.StreamResponse:
    found = await _batch_and_extras(request, visitor)
    if found is None:
        return _no_batch(request, visitor)
    return render(request, "batch_live.html", visitor=visitor,
                  **await _batch_context(request, *found))  # fmt: skip


async def _form_checked(request: web.Request, visitor: Visitor) -> None:
    form = await request.post()
    token = form.get(CSRF_FIELD, "")
    console_of(request).access.check_form(request, visitor, token if isinstance(token, str) else "")


@signed_in
async def cancel(request: web.Request, visitor: Visitor) -> web.StreamResponse:
    await _form_checked(request, visitor)
    status = await _batch(request, visitor)
    if status is None:
        return _no_batch(request, visitor)
    if status.state in CANCELLABLE:
        await context_of(request).queue.cancel(status.batch_id)
    raise web.HTTPSeeOther(f"/batches/{quote(status.batch_id, safe='')}")


@signed_in
async def retry(request: web.Request, visitor: Visitor) -> web.StreamResponse:
    await _form_checked(request, visitor)
    status = await _batch(request, visitor)
    if status is None:
        return _no_batch(request, visitor)
    if status.done and status.state != "failed":
        await context_of(request).queue.retry(status.batch_id)
    raise web.HTTPSeeOther(f"/batches/{quote(status.batch_id, safe='')}")


@signed_in
async def download(request: web.Request, visitor: Visitor) -> web.StreamResponse:
    """The batch's output (succeeded prompts) or error file, as the API writes them."""
    found = await _batch_and_extras(request, visitor)
    part = PARTS[request.match_info["half"]]
    if found is None or not result_files.has_part(*found, part):
        return _no_batch(request, visitor)
    status, extras = found
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


# -- signing in ------------------------------------------------------------------------


def _next(raw: object) -> str:
    """Where to go after signing in: a path of this site only."""
    target = raw if isinstance(raw, str) else "/"
    return target if target.startswith("/") and not target.startswith("//") else "/"


async def sign_in_form(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    if console.access.visitor(request) is not None:
        raise web.HTTPSeeOther(_next(request.query.get("next")))
    return render(request, "sign_in.html", title="Sign in", next=_next(request.query.get("next")),
                  refused=False, visitor=None)  # fmt: skip


async def sign_in(request: web.Request) -> web.StreamResponse:
    access = console_of(request).access
    form = await request.post()
    token, key = form.get(CSRF_FIELD, ""), form.get("key", "")
    try:
        access.check_form(request, None, token if isinstance(token, str) else "")
    except web.HTTPForbidden as refused:
        return render(request, "message.html", http_status=403, title="Refused",
                      message=refused.text, visitor=None)  # fmt: skip
    target = _next(form.get("next"))
    response = web.HTTPSeeOther(target)
    if isinstance(key, str) and access.sign_in(response, key.strip(), secure=request.secure):
        raise response
    return render(request, "sign_in.html", http_status=401, title="Sign in", next=target,
                  refused=True, visitor=None)  # fmt: skip


@signed_in
async def sign_out(request: web.Request, visitor: Visitor) -> web.StreamResponse:
    await _form_checked(request, visitor)
    response = web.HTTPSeeOther("/sign-in")
    console_of(request).access.sign_out(response)
    raise response


# -- helpers ---------------------------------------------------------------------------


def _int(raw: str | None, low: int, high: int) -> int:
    try:
        return min(high, max(low, int(raw or low)))
    except ValueError:
        return low
