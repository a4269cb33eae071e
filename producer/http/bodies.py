"""Reading a JSON request body and its fields, each refusal naming its ``param``."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from typing import Any

from aiohttp import web

from producer.http.errors import invalid, too_large
from producer.nesting import nests_deeper

MAX_BODY_NESTING = 128  # a request needs fewer than 20 levels; json.loads recurses per level


async def json_object(request: web.Request, limit: int) -> dict[str, Any]:
    """The body as a JSON object; 413 past ``limit`` bytes (unread beyond), 400 otherwise."""
    if request.content_length is not None and request.content_length > limit:
        raise too_large(f"the request body is {request.content_length:,} bytes; "
                        f"the limit is {limit:,}")  # fmt: skip
    raw = bytearray()
    while chunk := await request.content.read(64 * 1024):
        raw += chunk
        if len(raw) > limit:
            raise too_large(f"the request body is over the limit of {limit:,} bytes")
    if nests_deeper(raw, MAX_BODY_NESTING):
        raise invalid(f"The JSON body of your request nests arrays and objects more than "
                      f"{MAX_BODY_NESTING} deep.", code="invalid_json")  # fmt: skip
    try:
        body = json.loads(bytes(raw))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise invalid(
            "We could not parse the JSON body of your request: "
            f"{error}. (The body must be one JSON object.)", code="invalid_json",
        ) from None  # fmt: skip
    except RecursionError:  # not expected after the check above, but never a traceback
        raise invalid("The JSON body of your request nests too deeply.",
                      code="invalid_json") from None  # fmt: skip
    if not isinstance(body, dict):
        raise invalid("the JSON body of your request must be an object", code="invalid_json")
    return body


def refuse_unknown(body: Mapping[str, Any], known: Collection[str]) -> None:
    """OpenAI refuses arguments it does not know; so does this API."""
    for name in body:
        if name not in known:
            raise invalid(f"Unrecognized request argument supplied: {name}", param=name,
                          code="unknown_parameter")  # fmt: skip


def required_string(body: Mapping[str, Any], name: str) -> str:
    value = body.get(name)
    if value is None:
        raise invalid(f"Missing required parameter: '{name}'.", param=name,
                      code="missing_required_parameter")  # fmt: skip
    if not isinstance(value, str) or not value:
        raise invalid(f"Invalid type for '{name}': expected a non-empty string.", param=name,
                      code="invalid_type")  # fmt: skip
    return value


def optional_int(query: Mapping[str, str], name: str, *, default: int, low: int, high: int) -> int:
    """A query parameter that is an integer from ``low`` to ``high``, or ``default``."""
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise invalid(f"Invalid '{name}': must be an integer from {low} to {high}, got {raw!r}.",
                      param=name, code="invalid_value")  # fmt: skip
    return value
