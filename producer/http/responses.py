"""``POST /v1/responses``: one prompt through the queue, answered as the Responses API does.

The request is translated to a chat request (``producer.http.responses_requests``),
checked and run exactly as a chat completion (``producer.http.chat.answer``), and its
answer shown as a ``response`` object (``producer.formats.response_body``), echoing
what the request set; ``stream`` sends it as the Responses API's named events. An
answer cut at ``max_output_tokens`` is ``incomplete``, as OpenAI shows one.
"""

from __future__ import annotations

from aiohttp import web

from producer.formats import RESPONSES, response_body
from producer.http import chat
from producer.http.bodies import json_object, required_string
from producer.http.context import context_of
from producer.http.errors import invalid
from producer.http.responses_requests import translate
from producer.http.sse import response_events, send_events


async def create_response(request: web.Request) -> web.StreamResponse:
    ctx = context_of(request)
    body = await json_object(request, ctx.settings.json_body_limit())
    stream = body.pop("stream", None)
    if stream is not None and not isinstance(stream, bool):
        raise invalid("Invalid type for 'stream': expected a boolean.", param="stream",
                      code="invalid_type")  # fmt: skip
    required_string(body, "model")
    translated = translate(body)
    if translated.reasons:
        raise chat.refusal([f"body.{reason}" for reason in translated.reasons])
    result = await chat.answer(ctx, chat.prompt_line(translated.chat_body, ctx), RESPONSES)
    response = response_body(result, **translated.echoed)
    if stream:
        return await send_events(request, response_events(response), named=True)
    return web.json_response(response)
