"""``/v1/files``: upload a batch input file, read it back, list and delete files.

Uploaded files are ``purpose: batch`` JSONL, validated whole before they are kept.
A batch's output and error files (``file-out-<batch>``, ``file-err-<batch>``) are
answered here too, written from its results on the fly (``producer.http.outputs``).
"""

from __future__ import annotations

from aiohttp import web

from contract.models import BatchStatus
from producer.http import objects, records
from producer.http.bodies import optional_int
from producer.http.context import STREAMING, ApiContext, context_of
from producer.http.errors import invalid, not_found
from producer.http.files import StoredFile
from producer.http.objects import Half
from producer.http.outputs import result_pieces, result_size
from producer.http.uploads import count_prompts, read_upload

MAX_FILES_PAGE = 10_000


async def upload_file(request: web.Request) -> web.Response:
    ctx = context_of(request)
    upload = await read_upload(request, ctx.settings)
    prompts = await count_prompts(upload, ctx.settings)
    stored = await ctx.files.save(upload.filename, "batch", upload.data, prompts,
                                  upload.ttl_seconds)  # fmt: skip
    return web.json_response(objects.file_object(stored))


async def list_files(request: web.Request) -> web.Response:
    ctx = context_of(request)
    query = request.query
    limit = optional_int(query, "limit", default=MAX_FILES_PAGE, low=1, high=MAX_FILES_PAGE)
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise invalid(f"Invalid 'order': must be 'asc' or 'desc', got {order!r}.", param="order")
    if query.get("purpose") not in (None, "", "batch"):
        return web.json_response(objects.page([], False))  # only batch inputs are listed
    found = await ctx.files.page(limit=limit, after=query.get("after") or None,
                                 newest_first=order == "desc")  # fmt: skip
    if found is None:
        raise invalid(f"No file {query['after']!r} to list after (deleted, or expired).",
                      param="after")  # fmt: skip
    files, has_more = found
    return web.json_response(objects.page([objects.file_object(f) for f in files], has_more))


async def retrieve_file(request: web.Request) -> web.Response:
    ctx = context_of(request)
    file_id = request.match_info["file_id"]
    result_file = objects.result_file_of(file_id)
    if result_file is None:
        return web.json_response(objects.file_object(await _stored(ctx, file_id)))
    batch_id, half = result_file
    status = await _ended_batch(ctx, batch_id, file_id)
    size = await result_size(ctx.queue, batch_id, half)
    return web.json_response(objects.result_file_object(status, half, size))


async def file_content(request: web.Request) -> web.StreamResponse:
    ctx = context_of(request)
    file_id = request.match_info["file_id"]
    result_file = objects.result_file_of(file_id)
    if result_file is None:
        await _stored(ctx, file_id)
        data = await ctx.files.content(file_id)
        if data is None:
            raise _no_file(file_id)
        return web.Response(body=data, content_type="application/octet-stream")
    await _ended_batch(ctx, result_file[0], file_id)
    return await _stream_results(request, ctx, *result_file)


async def delete_file(request: web.Request) -> web.Response:
    ctx = context_of(request)
    file_id = request.match_info["file_id"]
    if objects.result_file_of(file_id) is not None:
        raise invalid(f"{file_id} is written from its batch's results and goes when the batch "
                      "does; it cannot be deleted on its own.", param="file_id")  # fmt: skip
    if not await ctx.files.delete(file_id):
        raise _no_file(file_id)
    return web.json_response({"id": file_id, "object": "file", "deleted": True})


async def _stream_results(
    request: web.Request, ctx: ApiContext, batch_id: str, half: Half
) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    await response.prepare(request)
    request[STREAMING] = True  # a failure now cuts the response short (it is chunked)
    async for piece in result_pieces(ctx.queue, batch_id, half):
        await response.write(piece)
    await response.write_eof()
    return response


async def _stored(ctx: ApiContext, file_id: str) -> StoredFile:
    stored = await ctx.files.get(file_id)
    if stored is None:
        raise _no_file(file_id)
    return stored


async def _ended_batch(ctx: ApiContext, batch_id: str, file_id: str) -> BatchStatus:
    """The batch a result file belongs to, if it has ended; else the file does not exist."""
    status = await ctx.queue.store.status(batch_id)
    (extras,) = await records.extras_of(ctx.redis, [batch_id])
    if (
        status is None
        or not records.shown(batch_id, extras)
        or not objects.has_result_files(status)
    ):
        raise _no_file(file_id)
    return status


def _no_file(file_id: str) -> Exception:
    return not_found(f"No such File object: {file_id}", param="file_id")
