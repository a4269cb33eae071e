"""Reading an ajax POST's form, as PHP fills ``$_POST``: urlencoded or multipart.

aiohttp's own multipart reader costs about 1.6 ms of CPU for the plugin's ten fields
(measured), seven times a whole urlencoded request, which would make the simulator the
bottleneck of every benchmark of a client that posts as the browser does. PHP parses a
multipart body in C; here it is split on its boundary in one pass. As in PHP, the last
of two fields with one name wins, a file part is not a field, and a body that cannot be
read is no form at all (admin-ajax.php then finds no action).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

_NAME = re.compile(rb'\bname="([^"]*)"')
_BOUNDARY = re.compile(r'boundary="?([^";]{1,70})"?', re.IGNORECASE)
_FORM_KEY: Any
try:
    _FORM_KEY = web.RequestKey("sim_form", dict)
except AttributeError:  # aiohttp < 3.13: plain string keys
    _FORM_KEY = "sim_form"


async def read_form(request: web.Request) -> dict[str, str]:
    """The request's form fields; {} for a GET, another content type or a broken body.
    Read once per request (the guard and the handler both ask)."""
    cached: dict[str, str] | None = request.get(_FORM_KEY)
    if cached is not None:
        return cached
    fields: dict[str, str] = {}
    if request.method == "POST":
        body = await request.read()
        content_type = request.headers.get("Content-Type", "")
        mime = content_type.partition(";")[0].strip().lower()
        if mime == "application/x-www-form-urlencoded":
            text = body.decode("utf-8", "replace")
            fields = dict(parse_qsl(text, keep_blank_values=True))
        elif mime == "multipart/form-data":
            boundary = _BOUNDARY.search(content_type)
            if boundary is not None:
                fields = parse_multipart(body, boundary.group(1).encode()) or {}
    request[_FORM_KEY] = fields
    return fields


def parse_multipart(body: bytes, boundary: bytes) -> dict[str, str] | None:
    """The text fields of a ``multipart/form-data`` body; None if it is malformed."""
    chunks = body.split(b"--" + boundary)
    if len(chunks) < 2 or not chunks[-1].startswith(b"--"):
        return None  # no closing delimiter
    fields: dict[str, str] = {}
    for chunk in chunks[1:-1]:
        if not chunk.startswith(b"\r\n") or not chunk.endswith(b"\r\n"):
            return None
        head, separator, value = chunk[2:-2].partition(b"\r\n\r\n")
        name = _NAME.search(head)
        if not separator or name is None:
            return None
        if b"filename=" not in head:
            fields[name.group(1).decode("utf-8", "replace")] = value.decode("utf-8", "replace")
    return fields
