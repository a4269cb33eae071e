"""``/v1/files``: upload a batch input file, read it back, list and delete files.

An upload is stored as it arrives, unchecked, as OpenAI stores one: its lines are
checked when a batch is made from it, and a bad line fails that batch
(``producer.http.batch_routes``). A batch's output and error files (``file-out-<batch>``,
``file-err-<batch>``) and a CLI batch's input file (``file-in-<batch>``) are answered
here too, written from the batch on the fly (``producer.http.result_files``). Every
route sees only the files of the request's project; any other ID is not found.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from contract.models import BatchStatus
from producer.http import objects, records, result_files
from producer.http.auth import request_project
from producer.http.bodies import optional_int
from producer.http.context import STREAMING, ApiContext, context_of
from producer.http.errors import invalid, not_found
from producer.http.files import StoredFile
from producer.http.objects import Part
from producer.http.uploads import read_upload

MAX_FILES_PAGE = 10_000
PURPOSES = ("batch", "batch_output")


async def upload_file(request: web.Request) -> web.Response:
    ctx = context_of(request)
    async with ctx.files.staging() as staged:
        upload = await read_upload(request, ctx.settings, staged)
        stored = await ctx.files.publish(staged, project=request_project(request),
                                         filename=upload.filename, purpose=upload.purpose,
                                         ttl_seconds=upload.ttl_seconds)  # fmt: skip
    return web.json_response(objects.file_object(stored))


async def list_files(request: web.Request) -> web.Response:
    ctx = context_of(request)
    project = request_project(request)
    query = request.query
    limit = optional_int(query, "limit", default=MAX_FILES_PAGE, low=1, high=MAX_FILES_PAGE)
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise invalid(f"Invalid 'order': must be 'asc' or 'desc', got {order!r}.", param="order")
    purpose = query.get("purpose") or None
    if purpose is not None and purpose not in PURPOSES:
        return web.json_response(objects.page([], False))  # no file of another purpose here
    newest_first = order == "desc"
    start = 0
    if after := query.get("after"):
        rank = await ctx.files.rank(project, after, newest_first=newest_first)
        if rank is None:
            raise invalid(f"No file {after!r} to list after (deleted, or expired).",
                          param="after")  # fmt: skip
        start = rank + 1
    found: list[dict[str, Any]] = []
    while len(found) <= limit:
        ids = await ctx.files.page_ids(project, start=start, count=limit + 1,
                                       newest_first=newest_first)  # fmt: skip
        if not ids:
            break
        start += len(ids)
        found += [f for f in await _file_objects(ctx, project, ids)
                  if purpose is None or f["purpose"] == purpose]  # fmt: skip
    return web.json_response(objects.page(found[:limit], len(found) > limit))


async def _file_objects(ctx: ApiContext, project: str, ids: list[str]) -> list[dict[str, Any]]:
    """The file objects of registry IDs, in order; a gone one leaves the registry."""
    stored_ids = [i for i in ids if objects.batch_file_of(i) is None]
    stored = dict(zip(stored_ids, await ctx.files.get_many(stored_ids), strict=True))
    written = {i: part for i in ids if (part := objects.batch_file_of(i)) is not None}
    batch_ids = sorted({batch_id for batch_id, _ in written.values()})
    statuses = dict(zip(batch_ids, await ctx.queue.store.statuses(batch_ids), strict=True))
    extras = dict(zip(batch_ids, await records.extras_of(ctx.redis, batch_ids), strict=True))
    shown: list[dict[str, Any]] = []
    gone: list[str] = []
    for file_id in ids:
        if file_id in stored:
            if stored[file_id] is None:
                gone.append(file_id)
            else:
                shown.append(objects.file_object(stored[file_id]))  # type: ignore[arg-type]
            continue
        batch_id, part = written[file_id]
        status = statuses[batch_id]
        if status is None or extras[batch_id].get(f"deleted_{part}"):
            gone.append(file_id)
        elif result_files.has_part(status, extras[batch_id], part):
            shown.append(await result_files.file_object(ctx, status, extras[batch_id], part))
    await ctx.files.forget(project, gone)
    return shown


async def retrieve_file(request: web.Request) -> web.Response:
    ctx = context_of(request)
    file_id = request.match_info["file_id"]
    written = objects.batch_file_of(file_id)
    if written is None:
        return web.json_response(objects.file_object(await _stored(request, file_id)))
    status, extras = await _batch_with(request, file_id, *written)
    return web.json_response(await result_files.file_object(ctx, status, extras, written[1]))


async def file_content(request: web.Request) -> web.StreamResponse:
    ctx = context_of(request)
    file_id = request.match_info["file_id"]
    written = objects.batch_file_of(file_id)
    response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    if written is None:
        await _stored(request, file_id)
        pieces = ctx.files.pieces(file_id)
    else:
        status, extras = await _batch_with(request, file_id, *written)
        pieces = result_files.pieces(ctx, status, extras, written[1])
    await response.prepare(request)
    request[STREAMING] = True  # a failure now cuts the response short (it is chunked)
    async for piece in pieces:
        await response.write(piece)
    await response.write_eof()
    return response


async def delete_file(request: web.Request) -> web.Response:
    ctx = context_of(request)
    file_id = request.match_info["file_id"]
    written = objects.batch_file_of(file_id)
    if written is not None:
        await _batch_with(request, file_id, *written)
        await result_files.mark_deleted(ctx, written[0], written[1])
        await ctx.files.forget(request_project(request), [file_id])
    elif not await ctx.files.delete(file_id, request_project(request)):
        raise _no_file(file_id)
    return web.json_response({"id": file_id, "object": "file", "deleted": True})


async def _stored(request: web.Request, file_id: str) -> StoredFile:
    stored = await context_of(request).files.get(file_id, request_project(request))
    if stored is None:
        raise _no_file(file_id)
    return stored


async def _batch_with(
    request: web.Request, file_id: str, batch_id: str, part: Part
) -> tuple[BatchStatus, dict[str, str]]:
    """The batch a written file belongs to, if it has that file now; else not found."""
    ctx = context_of(request)
    status = await ctx.queue.store.status(batch_id)
    (extras,) = await records.extras_of(ctx.redis, [batch_id])
    if (
        status is None
        or not records.shown(batch_id, extras, request_project(request))
        or not result_files.has_part(status, extras, part)
    ):
        raise _no_file(file_id)
    return status, extras


def _no_file(file_id: str) -> Exception:
    return not_found(f"No such File object: {file_id}", param="file_id")
