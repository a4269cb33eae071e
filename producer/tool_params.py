"""The tool parameters of a request: ``tools``, ``tool_choice``, ``parallel_tool_calls``.

chatgpt.es has no tools, so they are emulated: the worker describes the functions in
the prompt and asks for either an answer or a JSON object of calls, then checks each
call against its function's schema (``worker.prompt``). Here they are checked as
OpenAI checks them, and kept as the worker reads them:

- ``tools``: a non-empty list (at most ``MAX_TOOLS``) of ``{"type": "function",
  "function": {"name", "description", "parameters", "strict"}}``; names are unique and
  OpenAI-shaped, ``parameters`` a valid JSON Schema of an object. Kept as a list of
  ``{"name", "description", "parameters", "strict"}`` (``parameters`` always there);
- ``tool_choice``: ``"auto"``, ``"none"``, ``"required"`` or ``{"type": "function",
  "function": {"name": ...}}`` naming one of the tools. ``required`` and a named
  function need tools; ``auto`` and ``none`` without tools change nothing;
- ``parallel_tool_calls``: true or false; without tools it changes nothing.

The legacy ``functions`` and ``function_call`` stay refused, pointing to ``tools``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from contract.models import TOOL_NAME_PATTERN
from producer.wording import json_type, shown, shown_json

SchemaCheck = Callable[[dict[str, Any]], "str | None"]

MAX_TOOLS = 128
NO_ARGUMENTS: Mapping[str, Any] = {"type": "object", "properties": {}}
LEGACY_FUNCTIONS = (
    "the legacy functions API is not supported: send 'tools' (of type 'function') and "
    "'tool_choice' instead, which are emulated"
)
_TOOL_KEYS = frozenset({"type", "function"})
_FUNCTION_KEYS = frozenset({"name", "description", "parameters", "strict"})
_MODES = ("auto", "none", "required")
_NAME = re.compile(TOOL_NAME_PATTERN)


def checked_tools(
    value: Any, reasons: list[str], schema_problem: SchemaCheck
) -> list[dict[str, Any]] | None:
    """The functions of ``tools`` as the worker reads them, or None and the reasons.

    ``schema_problem(schema)`` says what is wrong with a ``parameters`` schema, if anything.
    """
    if not isinstance(value, list) or not value or len(value) > MAX_TOOLS:
        got = f"a list of {len(value)}" if isinstance(value, list) else json_type(value)
        reasons.append(f"body.tools: must be a list of 1 to {MAX_TOOLS} function tools, got {got}")
        return None
    functions: list[dict[str, Any]] = []
    count_before = len(reasons)
    seen: dict[str, int] = {}
    for index, tool in enumerate(value):
        function = _function(tool, f"body.tools[{index}]", reasons, schema_problem)
        if function is None:
            continue
        earlier = seen.setdefault(function["name"], index)
        if earlier != index:
            reasons.append(f"body.tools[{index}].function.name: {function['name']!r} is "
                           f"already the name of tools[{earlier}]")  # fmt: skip
        functions.append(function)
    return functions if len(reasons) == count_before else None


def _function(
    tool: Any, where: str, reasons: list[str], schema_problem: SchemaCheck
) -> dict[str, Any] | None:
    if not isinstance(tool, dict):
        reasons.append(f"{where}: must be an object, got {json_type(tool)}")
        return None
    if tool.get("type") != "function":
        reasons.append(f"{where}.type: only 'function' tools can be emulated, got "
                       f"{shown(tool.get('type'))}")  # fmt: skip
        return None
    unknown = sorted(set(tool) - _TOOL_KEYS)
    function = tool.get("function")
    if unknown:
        reasons.append(f"{where}: unknown key {shown(unknown[0])}; expected type, function")
        return None
    if not isinstance(function, dict):
        reasons.append(f"{where}.function: must be an object with a 'name', got "
                       f"{json_type(function)}")  # fmt: skip
        return None
    where = f"{where}.function"
    problem = _function_problem(function, schema_problem)
    if problem is not None:
        reasons.append(f"{where}{problem}")
        return None
    kept: dict[str, Any] = {"name": function["name"]}
    if function.get("description"):
        kept["description"] = function["description"]
    kept["parameters"] = function.get("parameters") or dict(NO_ARGUMENTS)
    if function.get("strict") is not None:
        kept["strict"] = function["strict"]
    return kept


def _function_problem(function: dict[str, Any], schema_problem: SchemaCheck) -> str | None:
    """What is wrong with a function object, as ``.<field>: <problem>``, if anything."""
    unknown = sorted(set(function) - _FUNCTION_KEYS)
    if unknown:
        return f": unknown key {shown(unknown[0])}; expected {', '.join(sorted(_FUNCTION_KEYS))}"
    name = function.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        return f".name: must be 1-64 letters, digits, '_' or '-', got {shown(name)}"
    description = function.get("description")
    if description is not None and not isinstance(description, str):
        return f".description: must be a string, got {json_type(description)}"
    strict = function.get("strict")
    if strict is not None and not isinstance(strict, bool):
        return f".strict: must be true or false, got {shown(strict)}"
    parameters = function.get("parameters")
    if parameters is None:
        return None
    problem = object_schema_problem(parameters) or schema_problem(parameters)
    return None if problem is None else f".parameters: {problem}"


def object_schema_problem(schema: Any) -> str | None:
    """What makes ``schema`` no JSON Schema of an object, before a schema checker reads it
    (a function's parameters, a ``json_schema`` response format's schema)."""
    if not isinstance(schema, dict):
        return f"must be an object (a JSON Schema), got {json_type(schema)}"
    if schema.get("type", "object") != "object":
        return f"must describe an object (type 'object'), not {shown(schema['type'])}"
    return None


def checked_tool_choice(value: Any, reasons: list[str]) -> str | dict[str, str] | None:
    """``tool_choice`` as the worker reads it (a mode, or ``{"name": ...}``), or None and
    a reason."""
    if value in _MODES:
        return str(value)
    if isinstance(value, dict) and value.get("type") == "function" and set(value) <= _TOOL_KEYS:
        function = value.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if isinstance(name, str) and _NAME.match(name) and set(function) == {"name"}:
            return {"name": name}
    reasons.append(
        "body.tool_choice: must be 'auto', 'none', 'required' or {\"type\": \"function\", "
        f'"function": {{"name": ...}}}}, got {shown_json(value)}'
    )
    return None


def tools_together(params: dict[str, Any], reasons: list[str]) -> None:
    """What ``tools``, ``tool_choice`` and ``parallel_tool_calls`` come to together: a
    choice that needs tools without them is refused; one that changes nothing is dropped."""
    functions = params.get("tools")
    choice = params.get("tool_choice")
    if functions is None:
        params.pop("parallel_tool_calls", None)
        if choice in ("auto", "none"):
            params.pop("tool_choice")
        elif choice is not None:
            reasons.append("body.tool_choice: a call is required, but no 'tools' are given")
        return
    if isinstance(choice, dict) and choice["name"] not in {f["name"] for f in functions}:
        reasons.append(f"body.tool_choice.function.name: {choice['name']!r} is not one of "
                       "the tools given")  # fmt: skip
    if choice == "auto":
        params.pop("tool_choice")  # the default
