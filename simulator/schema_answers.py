"""What the simulator answers when a message asks for JSON matching a schema: an instance.

The worker sends the schema after the words ``JSON Schema:`` (``worker.prompt``); a
client may write one in the prompt itself (instructor's ``Mode.JSON`` and ``MD_JSON``,
LangChain's ``json_mode``), which ``schema_written_in`` finds. The simulator answers,
as a model would, with an object that has every property the schema names, each of
its type: the first of an ``enum``, a ``const``, the first branch of an ``anyOf``, one
item of an array, ``$ref`` followed into ``$defs``. It honours no other keyword
(``minLength``, ``pattern``, ``minimum``...), so a schema that needs them gets an
answer off it: the tests use that to see a retry. ``off_instance_of`` is an answer off
the schema on purpose (the magic word of ``tool_answers``).
"""

from __future__ import annotations

import json
from typing import Any

MARKER = "JSON Schema: "
MAX_DEPTH = 8


def schema_in(message: str) -> dict[str, Any] | None:
    """The schema after the last ``JSON Schema:`` of the message, if one is there."""
    at = message.rfind(MARKER)
    if at < 0:
        return None
    try:
        schema, _ = json.JSONDecoder().raw_decode(message[at + len(MARKER) :])
    except ValueError:
        return None
    return schema if isinstance(schema, dict) else None


def schema_written_in(message: str) -> dict[str, Any] | None:
    """The first JSON Schema of an object written in the message (an object with
    ``properties``), if the message speaks of a schema and holds one."""
    if "schema" not in message.lower():
        return None
    decoder = json.JSONDecoder()
    at = message.find("{")
    while at >= 0:
        try:
            value, end = decoder.raw_decode(message, at)
        except ValueError:
            at = message.find("{", at + 1)
            continue
        if (
            isinstance(value, dict)
            and isinstance(value.get("properties"), dict)
            and value.get("type", "object") == "object"
        ):
            return value
        at = message.find("{", end)
    return None


def off_instance_of(schema: Any) -> dict[str, Any] | None:
    """An object of the schema's shape but for its first property, given a value of the
    wrong type; None if the schema names no property."""
    instance = instance_of(schema)
    if not isinstance(instance, dict) or not instance:
        return None
    first = next(iter(instance))
    instance[first] = 0 if isinstance(instance[first], str) else "off the schema"
    return instance


def instance_of(schema: Any, root: dict[str, Any] | None = None, depth: int = 0) -> Any:
    """A value of the schema's shape (see the module's docstring for what is honoured)."""
    root = root if root is not None else schema
    if not isinstance(schema, dict) or depth > MAX_DEPTH:
        return None
    if "$ref" in schema:
        return instance_of(_resolve(schema["$ref"], root), root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for branches in ("anyOf", "oneOf", "allOf"):
        if schema.get(branches):
            return instance_of(schema[branches][0], root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties", {})
        return {name: instance_of(sub, root, depth + 1) for name, sub in properties.items()}
    if kind == "array":
        return [instance_of(schema.get("items", {}), root, depth + 1)]
    return {"string": "echo", "integer": 1, "number": 1.5, "boolean": True}.get(kind)


def _resolve(reference: str, root: dict[str, Any]) -> Any:
    node: Any = root
    for part in reference.removeprefix("#/").split("/"):
        node = node.get(part, {}) if isinstance(node, dict) else {}
    return node
