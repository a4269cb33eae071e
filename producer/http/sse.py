"""An answer sent as server-sent events: a chat completion's chunks, a response's events.

The worker stores each answer whole, so nothing arrives early to stream: once the
answer is in, it is cut into a few pieces at word boundaries and sent as OpenAI
streams one, which is what the SDKs' stream readers expect:

- a chat completion: ``chat.completion.chunk`` objects (a role chunk, the content
  chunks, or for each tool call a chunk with its id and name and then pieces of its
  arguments, a ``finish_reason`` chunk, a usage chunk if
  ``stream_options.include_usage`` asked for it), then ``data: [DONE]``;
- a response (``/v1/responses``): named events, ``response.created`` …
  ``response.output_text.delta`` (or, for each function call,
  ``response.function_call_arguments.delta``) … ``response.completed`` (or
  ``response.incomplete``), each with its ``sequence_number``.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from producer.http.context import STREAMING

PIECES = 4


def split_text(text: str, pieces: int = PIECES) -> list[str]:
    """``text`` in at most ``pieces`` parts, each cut after a space where one follows, so
    that joined they are ``text`` again."""
    cuts: list[int] = []
    for k in range(1, pieces):
        target = len(text) * k // pieces
        space = text.find(" ", target)
        cut = space + 1 if space != -1 else target
        if 0 < cut < len(text) and (not cuts or cut > cuts[-1]):
            cuts.append(cut)
    bounds = [0, *cuts, len(text)]
    return [text[start:end] for start, end in itertools.pairwise(bounds) if end > start]


def completion_chunks(
    completion: Mapping[str, Any], *, include_usage: bool
) -> list[dict[str, Any]]:
    """The chunks that add up to ``completion`` (a ``chat.completion`` object)."""
    choice = completion["choices"][0]
    calls = choice["message"].get("tool_calls")
    deltas: list[tuple[dict[str, Any], str | None]]
    if calls:
        deltas = [({"role": "assistant", "content": None}, None)]
        for index, call in enumerate(calls):
            deltas += [(delta, None) for delta in _call_deltas(index, call)]
    else:
        content = choice["message"]["content"] or ""
        deltas = [({"role": "assistant", "content": ""}, None)]
        deltas += [({"content": part}, None) for part in split_text(content)]
    deltas.append(({}, choice.get("finish_reason") or "stop"))
    chunks = [_chunk(completion, [_choice(delta, finish)], include_usage)
              for delta, finish in deltas]  # fmt: skip
    if include_usage:
        chunks.append({**_chunk(completion, [], True), "usage": completion.get("usage")})
    return chunks


def _call_deltas(index: int, call: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One tool call as OpenAI streams it: its id, type and name first, then its arguments."""
    function = call["function"]
    head = {"index": index, "id": call["id"], "type": "function",
            "function": {"name": function["name"], "arguments": ""}}  # fmt: skip
    pieces = [{"index": index, "function": {"arguments": piece}}
              for piece in split_text(function["arguments"])]  # fmt: skip
    return [{"tool_calls": [part]} for part in (head, *pieces)]


def _chunk(
    completion: Mapping[str, Any], choices: list[dict[str, Any]], usage: bool
) -> dict[str, Any]:
    chunk = {
        "id": completion["id"],
        "object": "chat.completion.chunk",
        "created": completion["created"],
        "model": completion["model"],
        "system_fingerprint": completion.get("system_fingerprint"),
        "service_tier": completion.get("service_tier"),
        "choices": choices,
    }
    if usage:
        chunk["usage"] = None
    return chunk


def _choice(delta: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
    return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}


def response_events(response: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The events that add up to ``response`` (a ``response`` object with one message, or
    with function calls)."""
    running = {**response, "status": "in_progress", "output": [], "usage": None,
               "incomplete_details": None}  # fmt: skip
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": running},
        {"type": "response.in_progress", "response": running},
    ]
    for index, item in enumerate(response["output"]):
        if item["type"] == "function_call":
            events += _function_call_events(index, item)
        else:
            events += _message_events(index, item)
    events.append({"type": f"response.{response['status']}", "response": response})
    return [{**event, "sequence_number": n} for n, event in enumerate(events)]


def _message_events(index: int, message: Mapping[str, Any]) -> list[dict[str, Any]]:
    text = message["content"][0]["text"]
    ids = {"item_id": message["id"], "output_index": index, "content_index": 0}
    empty_part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    return [
        {"type": "response.output_item.added", "output_index": index,
         "item": {**message, "status": "in_progress", "content": []}},
        {"type": "response.content_part.added", **ids, "part": empty_part},
        *({"type": "response.output_text.delta", **ids, "delta": piece, "logprobs": []}
          for piece in split_text(text)),
        {"type": "response.output_text.done", **ids, "text": text, "logprobs": []},
        {"type": "response.content_part.done", **ids, "part": message["content"][0]},
        {"type": "response.output_item.done", "output_index": index, "item": message},
    ]  # fmt: skip


def _function_call_events(index: int, call: Mapping[str, Any]) -> list[dict[str, Any]]:
    arguments = call["arguments"]
    ids = {"item_id": call["id"], "output_index": index}
    return [
        {"type": "response.output_item.added", "output_index": index,
         "item": {**call, "status": "in_progress", "arguments": ""}},
        *({"type": "response.function_call_arguments.delta", **ids, "delta": piece}
          for piece in split_text(arguments)),
        {"type": "response.function_call_arguments.done", **ids, "name": call["name"],
         "arguments": arguments},
        {"type": "response.output_item.done", "output_index": index, "item": call},
    ]  # fmt: skip


async def send_events(
    request: web.Request, chunks: list[dict[str, Any]], *, named: bool = False
) -> web.StreamResponse:
    """Sends ``chunks`` as events: ``named`` ones (``event: <type>``, the Responses API's
    way), else data only and a closing ``data: [DONE]`` (chat completions')."""
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    request[STREAMING] = True
    for chunk in chunks:
        data = json.dumps(chunk, ensure_ascii=False, separators=(",", ":"))
        event = f"event: {chunk['type']}\n" if named else ""
        await response.write(f"{event}data: {data}\n\n".encode())
    if not named:
        await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response
