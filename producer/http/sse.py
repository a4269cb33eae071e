"""A chat completion sent as server-sent events of ``chat.completion.chunk`` objects.

The worker stores each answer whole, so nothing arrives early to stream: once the
answer is in, it is cut into a few pieces at word boundaries and sent as OpenAI
streams one (a role chunk, the content chunks, a ``finish_reason`` chunk, a usage
chunk if ``stream_options.include_usage`` asked for it, then ``data: [DONE]``), which
is what the SDK's stream reader expects.
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
    content = choice["message"]["content"] or ""
    deltas: list[tuple[dict[str, Any], str | None]] = [({"role": "assistant", "content": ""}, None)]
    deltas += [({"content": part}, None) for part in split_text(content)]
    deltas.append(({}, choice.get("finish_reason") or "stop"))
    chunks = [_chunk(completion, [_choice(delta, finish)], include_usage)
              for delta, finish in deltas]  # fmt: skip
    if include_usage:
        chunks.append({**_chunk(completion, [], True), "usage": completion.get("usage")})
    return chunks


def _chunk(
    completion: Mapping[str, Any], choices: list[dict[str, Any]], usage: bool
) -> dict[str, Any]:
    chunk = {
        "id": completion["id"],
        "object": "chat.completion.chunk",
        "created": completion["created"],
        "model": completion["model"],
        "system_fingerprint": None,
        "choices": choices,
    }
    if usage:
        chunk["usage"] = None
    return chunk


def _choice(delta: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
    return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}


async def send_events(request: web.Request, chunks: list[dict[str, Any]]) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    request[STREAMING] = True
    for chunk in chunks:
        data = json.dumps(chunk, ensure_ascii=False, separators=(",", ":"))
        await response.write(f"data: {data}\n\n".encode())
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response
