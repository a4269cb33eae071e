"""How a request's values are named in the reasons a user reads: by type, or shortly."""

from __future__ import annotations

import json
from typing import Any


def json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, for reasons a user reads."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def shown(value: Any) -> str:
    """A short string quoted, a number or literal as JSON text, anything bigger by its type."""
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else f"a {len(value)}-character string"
    if value is None or isinstance(value, bool | int | float):
        return json.dumps(value)
    return json_type(value)


def shown_json(value: Any) -> str:
    """Like ``shown``, but a small array or object as its JSON text."""
    if isinstance(value, list | dict):
        text = json.dumps(value)
        if len(text) <= 60:
            return text
    return shown(value)
