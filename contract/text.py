"""Text shown to people: control characters escaped, length bounded.

The logs, the commands' error lines and the API's words about Redis all go through
these, so a hostile ID cannot drive a terminal and a payload cannot flood a line.
"""

from __future__ import annotations

import json
from typing import Any

LINE_LIMIT = 4096  # bytes: the longest log line, or error line of a command


def printable(text: str, keep: str = "") -> str:
    """Text safe for a terminal: control characters (newlines, escapes) shown escaped,
    but those in ``keep``."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c in keep else repr(c)[1:-1] for c in text)


def cut_text(text: str, limit: int) -> str:
    """``text`` whole if it takes at most ``limit`` bytes as JSON, else its head and tail
    around ``...[N characters cut]...``, together within ``limit``."""
    if json_size(text) <= limit:
        return text
    keep = max(limit - 40, 16)  # the note takes about 40
    while True:
        head, tail = text[: keep - keep // 2], text[len(text) - keep // 2 :]
        cut = f"{head}...[{len(text) - keep:,} characters cut]...{tail}"
        if json_size(cut) <= limit or keep <= 16:
            return cut
        keep = max(16, keep * limit // json_size(cut) - 1)


def json_size(value: Any) -> int:
    """Bytes ``value`` takes in a JSON line (more than on a console, where text is UTF-8)."""
    try:
        return len(json.dumps(value, default=repr))
    except (TypeError, ValueError):
        return len(repr(value))
