"""``/v1/batches``: create a batch from an uploaded file, follow it, list batches, cancel one.

A batch created here is an ordinary batch of the queue (``BatchQueue.enqueue``) with an
OpenAI-looking ID (``batch_…``); its project, input file, endpoint and model are kept
beside it (``producer.http.records``). Its file is checked when the batch is made, as
OpenAI's Batch API does it: a file with a bad line makes a ``failed`` batch whose
``errors.data`` lists every bad line (``code``, ``line``, ``message``, ``param``), and
nothing of it runs. A batch of ``/v1/responses`` takes Responses API bodies, each
translated to a chat request first (``producer.http.responses_requests``). Every
route sees only the batches of the request's project.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from contract import keys
from contract.models import StoredRequest, iso_now
from producer import options
from producer.formats import CHAT_COMPLETIONS, ENDPOINTS, RESPONSES
from producer.http import objects, records, result_files
from producer.http.auth import request_project
from producer.http.bodies import json_object, optional_int, refuse_unknown, required_string
from producer.http.context import ApiContext, context_of
from producer.http.errors import invalid, not_found
from producer.http.files import StoredFile
from producer.http.responses_requests import translate
from producer.inputs import BLOCK_LINES, InputFileError, LineProblem, PromptLine, PromptValidator
from producer.params import shown

CREATE_FIELDS = frozenset(
    {"input_file_id", "endpoint", "completion_window", "metadata", "output_expires_after"}
)
CANCELLABLE = ("validating", "in_progress")
STOPPING_ALREADY = ("cancelling", "cancelled")
MAX_RECORDED_ERRORS = 1000
_PATH = re.compile(r"^[A-Za-z_][\w.\[\]]*$")


async def create_batch(request: web.Request) -> web.Response:
    ctx = context_of(request)
    project = request_project(request)
    body = await json_object(request, ctx.settings.json_body_limit())
    refuse_unknown(body, CREATE_FIELDS)
    file_id = required_string(body, "input_file_id")
    endpoint = required_string(body, "endpoint")
    if endpoint not in ENDPOINTS:
        raise invalid(f"Invalid value for 'endpoint': {endpoint!r}. This service runs "
                      f"{' and '.join(map(repr, ENDPOINTS))}.", param="endpoint",
                      code="invalid_value")  # fmt: skip
    window = required_string(body, "completion_window")
    metadata = _metadata(body.get("metadata"))
    try:
        options.completion_window(window)
    except ValueError as error:
        raise invalid(str(error), param="completion_window", code="invalid_value") from None
    stored = await _input_file(ctx, file_id, project)
    batch_id = f"batch_{secrets.token_hex(12)}"
    extras = {"kind": "batch", "input_file_id": file_id, "endpoint": endpoint,
              "project": project}  # fmt: skip
    checked = _CheckedFile(ctx, stored, endpoint)
    try:
        await ctx.queue.enqueue_blocks(checked.blocks(), batch_id=batch_id,
                                       completion_window=window, metadata=metadata)  # fmt: skip
    except InputFileError as error:
        meta = {"created_at": iso_now(), "completion_window": window,
                "metadata": json.dumps(metadata)}  # fmt: skip
        await ctx.queue.store.record_failed(batch_id, meta, batch_errors(error), project=project)
    else:
        extras["model"] = checked.first_model
    await records.save_extras(ctx.redis, batch_id, extras, ctx.settings.result_ttl_seconds)
    await records.register(ctx.redis, project, batch_id)
    created_ms = int(time.time() * 1000)
    for part in ("output", "error"):
        await ctx.files.register(project, objects.result_file_id(batch_id, part), created_ms)
    return web.json_response(await _shown_batch(ctx, batch_id, project))


async def retrieve_batch(request: web.Request) -> web.Response:
    ctx = context_of(request)
    project = request_project(request)
    return web.json_response(await _shown_batch(ctx, request.match_info["batch_id"], project))


async def list_batches(request: web.Request) -> web.Response:
    ctx = context_of(request)
    limit = optional_int(request.query, "limit", default=20, low=1, high=100)
    after = request.query.get("after") or None
    found = await records.batch_page(ctx.redis, ctx.queue.store, request_project(request),
                                     limit=limit, after=after)  # fmt: skip
    if found is None:
        raise invalid(f"No batch {after!r} to list after (never made, or expired).",
                      param="after")  # fmt: skip
    batches, has_more = found
    shown = [await _batch_object(ctx, status, extras) for status, extras in batches]
    return web.json_response(objects.page(shown, has_more))


async def cancel_batch(request: web.Request) -> web.Response:
    ctx = context_of(request)
    project = request_project(request)
    batch_id = request.match_info["batch_id"]
    batch = await _shown_batch(ctx, batch_id, project)
    state = (await ctx.queue.status(batch_id)).state
    if state in CANCELLABLE:
        await ctx.queue.cancel(batch_id)
    elif state not in STOPPING_ALREADY:
        raise invalid(f"Cannot cancel a batch with status '{batch['status']}'.",
                      param="batch_id", code="invalid_state")  # fmt: skip
    return web.json_response(await _shown_batch(ctx, batch_id, project))


async def _shown_batch(ctx: ApiContext, batch_id: str, project: str) -> dict[str, Any]:
    status = await ctx.queue.store.status(batch_id)
    (extras,) = await records.extras_of(ctx.redis, [batch_id])
    if status is None or not records.shown(batch_id, extras, project):
        raise not_found(f"No such Batch object: {batch_id}", param="batch_id")
    return await _batch_object(ctx, status, extras)


async def _batch_object(ctx: ApiContext, status: Any, extras: dict[str, str]) -> dict[str, Any]:
    if "model" not in extras and status.total:
        extras["model"] = await _first_model(ctx, status.batch_id)
    summary = await result_files.summary(ctx, status, extras)
    usage = summary.usage() if summary is not None else None
    return objects.batch_object(status, extras, usage)


async def _first_model(ctx: ApiContext, batch_id: str) -> str:
    """The model of a batch enqueued without a record (its first prompt's), for ``model``."""
    raw = await ctx.redis.hget(keys.batch_requests(batch_id), "0")
    return StoredRequest.model_validate_json(raw).model if raw is not None else ""


async def _input_file(ctx: ApiContext, file_id: str, project: str) -> StoredFile:
    if objects.batch_file_of(file_id) is not None:
        raise invalid(f"{file_id} is written from a batch, not an uploaded batch input file.",
                      param="input_file_id")  # fmt: skip
    stored = await ctx.files.get(file_id, project)
    if stored is None:
        raise not_found(f"No such File object: {file_id}", param="input_file_id")
    if stored.purpose != "batch":
        raise invalid(f"{file_id} was not uploaded with purpose 'batch'.",
                      param="input_file_id")  # fmt: skip
    return stored


class _CheckedFile:
    """An uploaded file's prompts, read from Redis and checked a block of lines at a time
    (in a thread: the server answers meanwhile), so that a big file is never held whole.

    ``blocks`` yields the prompts while every line so far is valid, then raises
    ``InputFileError`` listing every problem of the file if any line was bad. A
    ``/v1/responses`` file's lines are translated to chat lines first; a line that
    cannot be is passed on blank (the numbers hold) and its problems kept here.
    """

    def __init__(self, ctx: ApiContext, stored: StoredFile, endpoint: str) -> None:
        self.ctx = ctx
        self.stored = stored
        self.endpoint = endpoint
        self.first_model = ""
        self.validator = PromptValidator(
            default_model=ctx.settings.default_model,
            max_prompt_chars=ctx.settings.max_prompt_chars,
            models=ctx.settings.model_map(),
            sites=ctx.settings.site_names(),
        )
        self.problems: list[LineProblem] = []  # a Responses line's, found translating it

    async def blocks(self) -> AsyncIterator[list[PromptLine]]:
        validator = self.validator
        async for texts in _text_blocks(self.ctx.files.pieces(self.stored.id)):
            if self.endpoint == RESPONSES:
                texts = [self._as_chat(text, validator.lines + n)
                         for n, text in enumerate(texts, start=1)]  # fmt: skip
            prompts = await asyncio.to_thread(validator.check, texts)
            if prompts and not self.first_model:
                self.first_model = prompts[0].model
            if prompts and not validator.problems and not self.problems:
                yield prompts
        problems = sorted([*validator.problems, *self.problems], key=lambda p: p.line_number)
        if problems or not validator.prompts:
            raise InputFileError(self.stored.filename, problems)

    def _as_chat(self, text: str, number: int) -> str:
        """A ``/v1/responses`` batch line as the chat line it comes to."""
        try:
            line = json.loads(text)
        except ValueError:
            return text  # the checks word what is wrong with it
        if not isinstance(line, dict) or "url" not in line:
            return text
        if line["url"] != RESPONSES:
            reason = f"url: must be {RESPONSES!r}, the batch's endpoint, got {shown(line['url'])}"
            self.problems.append(LineProblem(number, reason))
            return ""
        request = translate(line["body"]) if isinstance(line.get("body"), dict) else None
        if request is None or request.reasons:
            reasons = request.reasons if request else ["must be an object"]
            self.problems += [LineProblem(number, f"body.{reason}") for reason in reasons]
            return ""
        return json.dumps({**line, "url": CHAT_COMPLETIONS, "body": request.chat_body})


async def _text_blocks(
    pieces: AsyncIterator[bytes], block_lines: int = BLOCK_LINES
) -> AsyncIterator[list[str]]:
    """Lines of a file arriving in pieces, ``block_lines`` at a time, each decoded as
    ``producer.inputs`` reads a file (a bad byte kept for its line's refusal)."""
    block: list[str] = []
    rest = b""
    async for piece in pieces:
        lines = (rest + piece).split(b"\n")
        rest = lines.pop()
        block += [line.decode("utf-8", "surrogateescape") + "\n" for line in lines]
        while len(block) >= block_lines:
            yield block[:block_lines]
            block = block[block_lines:]
    if rest:
        block.append(rest.decode("utf-8", "surrogateescape"))
    if block:
        yield block


def _metadata(raw: Any) -> dict[str, str]:
    if raw is not None and not isinstance(raw, dict):
        raise invalid("Invalid type for 'metadata': expected an object of strings.",
                      param="metadata", code="invalid_type")  # fmt: skip
    try:
        return options.checked_metadata(raw)
    except ValueError as error:
        raise invalid(str(error), param="metadata", code="invalid_value") from None


def batch_errors(error: InputFileError) -> list[dict[str, object]]:
    """A refused file's problems as OpenAI's batch ``errors`` (one per problem, capped)."""
    if not error.problems:
        return [{"code": "empty_file", "line": None, "message": str(error), "param": None}]
    return [
        {"code": error_code(p.reason), "line": p.line_number, "message": p.reason,
         "param": error_param(p.reason)}
        for p in error.problems[:MAX_RECORDED_ERRORS]
    ]  # fmt: skip


def error_code(reason: str) -> str:
    """OpenAI's code for a line's problem."""
    where, _, what = reason.partition(": ")
    if what.startswith(("not valid JSON", "not valid UTF-8", "expected a JSON object")) or (
        reason.startswith(("not valid JSON", "not valid UTF-8", "expected a JSON object"))
    ):
        return "invalid_json_line"
    if where == "custom_id" and "already" in what:
        return "duplicate_custom_id"
    if where == "url":
        return "invalid_url"
    if where == "method":
        return "invalid_method"
    if "unknown model" in what:
        return "model_not_found"
    if what.startswith("missing"):
        return "missing_required_parameter"
    return "invalid_request"


def error_param(reason: str) -> str | None:
    """The field a line's problem is about, as its path (``body.messages[0].role``)."""
    where, colon, _ = reason.partition(": ")
    return where if colon and _PATH.match(where) and where != "body" else None
