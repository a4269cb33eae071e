"""``/v1/batches``: create a batch from an uploaded file, follow it, list batches, cancel one.

A batch created here is an ordinary batch of the queue (``BatchQueue.enqueue``) with an
OpenAI-looking ID (``batch_…``); its input file and endpoint are kept beside it
(``producer.http.records``). Its file is validated again when the batch is made (the
settings may have changed since the upload): a file refused then makes a ``failed``
batch listing its bad lines, as OpenAI's Batch API does.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from aiohttp import web

from contract.models import iso_now
from producer import options
from producer.http import objects, records
from producer.http.bodies import json_object, optional_int, refuse_unknown, required_string
from producer.http.context import ApiContext, context_of
from producer.http.errors import invalid, not_found
from producer.http.files import StoredFile
from producer.http.uploads import prompt_lines
from producer.inputs import InputFileError

CREATE_FIELDS = frozenset(
    {"input_file_id", "endpoint", "completion_window", "metadata", "output_expires_after"}
)
CANCELLABLE = ("validating", "in_progress")
STOPPING_ALREADY = ("cancelling", "cancelled")
MAX_RECORDED_ERRORS = 1000


async def create_batch(request: web.Request) -> web.Response:
    ctx = context_of(request)
    body = await json_object(request, ctx.settings.json_body_limit())
    refuse_unknown(body, CREATE_FIELDS)
    file_id = required_string(body, "input_file_id")
    endpoint = required_string(body, "endpoint")
    if endpoint != objects.CHAT_COMPLETIONS:
        raise invalid(f"Invalid value for 'endpoint': {endpoint!r}. This service runs "
                      f"'{objects.CHAT_COMPLETIONS}' only.", param="endpoint",
                      code="invalid_value")  # fmt: skip
    window = required_string(body, "completion_window")
    metadata = _metadata(body.get("metadata"))
    try:
        options.completion_window(window)
    except ValueError as error:
        raise invalid(str(error), param="completion_window", code="invalid_value") from None
    stored, data = await _input_file(ctx, file_id)
    batch_id = f"batch_{secrets.token_hex(12)}"
    extras = {"kind": "batch", "input_file_id": file_id, "endpoint": endpoint}
    try:
        lines = await prompt_lines(data, stored.filename, ctx.settings)
    except InputFileError as error:
        meta = {"created_at": iso_now(), "completion_window": window,
                "metadata": json.dumps(metadata)}  # fmt: skip
        await ctx.queue.store.record_failed(batch_id, meta, _batch_errors(error))
    else:
        await ctx.queue.enqueue(lines, batch_id=batch_id, completion_window=window,
                                metadata=metadata)  # fmt: skip
    await records.save_extras(ctx.redis, batch_id, extras, ctx.settings.result_ttl_seconds)
    return web.json_response(objects.batch_object(await ctx.queue.status(batch_id), extras))


async def retrieve_batch(request: web.Request) -> web.Response:
    ctx = context_of(request)
    return web.json_response(await _batch(ctx, request.match_info["batch_id"]))


async def list_batches(request: web.Request) -> web.Response:
    ctx = context_of(request)
    limit = optional_int(request.query, "limit", default=20, low=1, high=100)
    after = request.query.get("after") or None
    found = await records.batch_page(ctx.redis, ctx.queue.store, limit=limit, after=after)
    if found is None:
        raise invalid(f"No batch {after!r} to list after (never made, or expired).",
                      param="after")  # fmt: skip
    batches, has_more = found
    shown = [objects.batch_object(status, extras) for status, extras in batches]
    return web.json_response(objects.page(shown, has_more))


async def cancel_batch(request: web.Request) -> web.Response:
    ctx = context_of(request)
    batch_id = request.match_info["batch_id"]
    batch = await _batch(ctx, batch_id)
    state = (await ctx.queue.status(batch_id)).state
    if state in CANCELLABLE:
        await ctx.queue.cancel(batch_id)
    elif state not in STOPPING_ALREADY:
        raise invalid(f"Cannot cancel a batch with status '{batch['status']}'.",
                      param="batch_id", code="invalid_state")  # fmt: skip
    return web.json_response(await _batch(ctx, batch_id))


async def _batch(ctx: ApiContext, batch_id: str) -> dict[str, Any]:
    status = await ctx.queue.store.status(batch_id)
    (extras,) = await records.extras_of(ctx.redis, [batch_id])
    if status is None or not records.shown(batch_id, extras):
        raise not_found(f"No such Batch object: {batch_id}", param="batch_id")
    return objects.batch_object(status, extras)


async def _input_file(ctx: ApiContext, file_id: str) -> tuple[StoredFile, bytes]:
    if objects.result_file_of(file_id) is not None:
        raise invalid(f"{file_id} is a batch's result file, not a batch input file.",
                      param="input_file_id")  # fmt: skip
    stored = await ctx.files.get(file_id)
    data = await ctx.files.content(file_id) if stored is not None else None
    if stored is None or data is None:
        raise not_found(f"No such File object: {file_id}", param="input_file_id")
    if stored.purpose != "batch":
        raise invalid(f"{file_id} was not uploaded with purpose 'batch'.",
                      param="input_file_id")  # fmt: skip
    return stored, data


def _metadata(raw: Any) -> dict[str, str]:
    if raw is not None and not isinstance(raw, dict):
        raise invalid("Invalid type for 'metadata': expected an object of strings.",
                      param="metadata", code="invalid_type")  # fmt: skip
    try:
        return options.checked_metadata(raw)
    except ValueError as error:
        raise invalid(str(error), param="metadata", code="invalid_value") from None


def _batch_errors(error: InputFileError) -> list[dict[str, object]]:
    """A refused file's problems as OpenAI's batch ``errors`` (one per problem, capped)."""
    if not error.problems:
        return [{"code": "empty_file", "line": None, "message": str(error), "param": None}]
    return [
        {"code": "invalid_request", "line": p.line_number, "message": p.reason, "param": None}
        for p in error.problems[:MAX_RECORDED_ERRORS]
    ]
