"""``POST /v1/chat/completions``: one prompt through the queue, answered as OpenAI answers.

The request becomes a batch of one prompt (``chat_…``), checked exactly as a batch
line (``producer.inputs``), run by the workers like any other prompt under the same
policy, and waited for here: polled cheaply (one HMGET, less often as time goes by)
for at most ``CHATGPTES_CHAT_TIMEOUT_SECONDS``. The answer is the ``response.body`` of
its OpenAI batch output line, a ``chat.completion``; a failure is the OpenAI error of
its error line, with its HTTP status. Once answered, the one-prompt batch is deleted.
A request that times out, or whose client goes away, cancels its prompt.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import secrets
from typing import Any

import structlog
from aiohttp import web

from contract import keys
from contract.models import JobResult
from producer.formats import CHAT_COMPLETIONS, completion_body, openai_line
from producer.http import liveness, records
from producer.http.bodies import json_object, required_string
from producer.http.context import ApiContext, context_of
from producer.http.errors import SERVER_ERROR, ApiError, invalid, timed_out
from producer.http.sse import completion_chunks, send_events
from producer.inputs import InputFileError, PromptLine, parse_prompt_lines

log = structlog.get_logger("chatgptes.api")
FIRST_POLL_SECONDS, MAX_POLL_SECONDS = 0.02, 0.5
LONGEST_WINDOW_SECONDS = 30 * 24 * 3600
# A prompt that never got an HTTP response (the batch-level errors of the error file).
BATCH_ERROR_STATUS = {
    "request_timeout": (504, SERVER_ERROR),
    "batch_expired": (504, SERVER_ERROR),
    "batch_cancelled": (409, "invalid_request_error"),
}
_UNKNOWN_KEY = re.compile(r"unknown key '([^']+)'")


async def chat_completions(request: web.Request) -> web.StreamResponse:
    ctx = context_of(request)
    body = await json_object(request, ctx.settings.json_body_limit())
    stream, include_usage = streaming(body)
    required_string(body, "model")
    result = await answer(ctx, prompt_line(body, ctx), CHAT_COMPLETIONS)
    completion = completion_body(result)
    if stream:
        return await send_events(
            request, completion_chunks(completion, include_usage=include_usage)
        )
    return web.json_response(completion)


async def answer(ctx: ApiContext, line: PromptLine, endpoint: str) -> JobResult:
    """The prompt's succeeded result, run as a batch of one through the workers; its
    failure raised as the OpenAI error its error line carries, with its HTTP status."""
    await liveness.require_workers(ctx)  # 503 no_workers at once, not a wait for nobody
    batch_id = f"{records.CHAT_ID_PREFIX}{secrets.token_hex(12)}"
    timeout = ctx.settings.chat_timeout_seconds
    window = f"{min(max(60, math.ceil(timeout)), LONGEST_WINDOW_SECONDS)}s"
    await ctx.queue.enqueue([line], batch_id=batch_id, completion_window=window)
    await records.save_extras(ctx.redis, batch_id, {"kind": "chat", "endpoint": endpoint},
                              ctx.settings.result_ttl_seconds)  # fmt: skip
    try:
        result = await _wait_for_result(ctx, batch_id, timeout)
    except BaseException:  # timed out, or the client went away: nothing more is sent
        await asyncio.shield(_cancel_quietly(ctx, batch_id))
        raise
    await _forget(ctx, batch_id)
    if result.status != "succeeded":
        raise _failure(json.loads(openai_line(result)))
    return result


def streaming(body: dict[str, Any]) -> tuple[bool, bool]:
    """(stream?, include usage?) taken out of the body: a batch line may not stream."""
    stream = body.pop("stream", None)
    stream_options = body.pop("stream_options", None)
    if stream is not None and not isinstance(stream, bool):
        raise invalid("Invalid type for 'stream': expected a boolean.", param="stream",
                      code="invalid_type")  # fmt: skip
    if stream_options is not None and not stream:
        raise invalid("The 'stream_options' parameter is only allowed when 'stream' is "
                      "enabled.", param="stream_options", code="invalid_value")  # fmt: skip
    if stream_options is not None and not isinstance(stream_options, dict):
        raise invalid("Invalid type for 'stream_options': expected an object.",
                      param="stream_options", code="invalid_type")  # fmt: skip
    return bool(stream), bool((stream_options or {}).get("include_usage"))


def prompt_line(body: dict[str, Any], ctx: ApiContext) -> PromptLine:
    """The request checked as a batch line; 400 (404 for an unknown model) if it is not one."""
    text = json.dumps({"custom_id": "chat", "method": "POST", "url": CHAT_COMPLETIONS,
                       "body": body})  # fmt: skip
    try:
        (line,) = parse_prompt_lines([text], source="the request",
                                     default_model=ctx.settings.default_model,
                                     models=ctx.settings.model_map(),
                                     max_prompt_chars=ctx.settings.max_prompt_chars)  # fmt: skip
    except InputFileError as error:
        raise refusal([problem.reason for problem in error.problems]) from None
    return line


def refusal(reasons: list[str]) -> ApiError:
    """A request's problems as one OpenAI error: 404 for an unknown model, else 400."""
    first = reasons[0] if reasons else "the request holds no prompt"
    where, _, _ = first.partition(":")
    param = where.removeprefix("body.") if where.startswith("body.") else None
    if param is None and (unknown := _UNKNOWN_KEY.search(first)):
        param = unknown[1]
    message = "; ".join(reason.removeprefix("body.").removeprefix("body: ") for reason in reasons)
    if param == "model" and "unknown model" in first:
        return ApiError(404, message, param="model", code="model_not_found")
    return invalid(message, param=param)


async def _wait_for_result(ctx: ApiContext, batch_id: str, timeout: float) -> JobResult:
    """The prompt's result once it is stored; 504 if not within ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = FIRST_POLL_SECONDS
    while True:
        (raw,) = await ctx.queue.store.raw_results(batch_id, [0])
        if raw is not None:
            try:
                return JobResult.model_validate_json(raw)
            except ValueError:
                raise ApiError(500, "the stored result is not a result", type=SERVER_ERROR,
                               code="server_error") from None  # fmt: skip
        left = deadline - loop.time()
        if left <= 0:
            raise timed_out(f"No answer within {timeout:g} s (CHATGPTES_CHAT_TIMEOUT_SECONDS); "
                            "the request was cancelled.")  # fmt: skip
        await asyncio.sleep(min(delay, left))
        delay = min(delay * 1.5, MAX_POLL_SECONDS)


async def _cancel_quietly(ctx: ApiContext, batch_id: str) -> None:
    """Cancels the prompt if Redis lets it; the batch's window ends it otherwise."""
    try:
        await ctx.queue.cancel(batch_id)
    except Exception as error:  # the request is failing already: say why, not this
        log.warning("chat.cancel_failed", batch_id=batch_id, error=type(error).__name__)


async def _forget(ctx: ApiContext, batch_id: str) -> None:
    """The answered one-prompt batch goes: it is not kept for days like a batch's results."""
    await ctx.queue.store.discard(batch_id)
    async with ctx.redis.pipeline(transaction=False) as pipe:
        pipe.zrem(keys.batches_created(), batch_id)
        pipe.zrem(keys.batch_deadlines(), batch_id)
        await pipe.execute()


def _failure(line: dict[str, Any]) -> ApiError:
    """The error line's OpenAI error, with its HTTP status. A 5xx is final here (the worker
    spent the prompt's retry budget already): the SDKs are told not to send it again."""
    response = line.get("response")
    if response is not None:
        error = response["body"]["error"]
        status = response["status_code"]
        return ApiError(status, error["message"], type=error["type"], param=error.get("param"),
                        code=error.get("code"), headers=_no_retry(status))  # fmt: skip
    error = line["error"]
    status, kind = BATCH_ERROR_STATUS.get(error["code"], (500, SERVER_ERROR))
    return ApiError(status, error["message"], type=kind, code=error["code"],
                    headers=_no_retry(status))  # fmt: skip


def _no_retry(status: int) -> dict[str, str] | None:
    return {"x-should-retry": "false"} if status >= 500 else None
