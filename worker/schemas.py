"""JSON in an answer: the object an answer is or holds (a model may wrap it in prose or a
code fence), and a value checked against a JSON Schema, saying where it is off (an
answer's object against ``response_format``'s schema, a call's arguments against its
function's)."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # jsonschema loads at the first schema: `chatgptes config` never needs it
    from jsonschema.protocols import Validator


def json_object_of(answer: str) -> tuple[str, dict[str, Any]] | None:
    """The JSON object the answer is, or holds between its first ``{`` and last ``}``: its
    text and its value; None if it holds none."""
    start, end = answer.find("{"), answer.rfind("}")
    if start < 0 or end < start:
        return None
    for candidate in (answer.strip(), answer[start : end + 1]):
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            return candidate, value
    return None


def first_mismatch(value: Any, schema_text: str) -> str | None:
    """Where ``value`` first fails the schema, and why (``"city: 5 is not of type
    'string'"``), or None if it matches."""
    from jsonschema.exceptions import best_match

    error = best_match(_validator(schema_text).iter_errors(value))
    if error is None:
        return None
    where = "/".join(str(part) for part in error.absolute_path) or "(the object)"
    return f"{where}: {error.message[:200]}"


@lru_cache(maxsize=64)
def _validator(schema_text: str) -> Validator:
    # A batch repeats one schema on every line: compiled once, not per answer.
    from jsonschema import Draft202012Validator
    from jsonschema.validators import validator_for

    schema = json.loads(schema_text)
    return validator_for(schema, default=Draft202012Validator)(schema)
