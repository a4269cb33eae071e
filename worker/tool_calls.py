"""Tools on a site that has none: the functions described in the prompt, the answer read
back as calls and each call checked against its function's schema.

The prompt lists the functions offered, one JSON object a line (``name``,
``description``, ``parameters``: the JSON Schema of its arguments), and asks for one
JSON object, ``{"tool_calls": [{"name": ..., "arguments": {...}}]}``, to call them;
with ``tool_choice`` ``auto`` it may answer in plain text instead, with ``required``
or a named function it may not. A history's calls are shown in that same object, and
each result as a ``Tool (<name>): <result>`` line.

An answer is calls when it is (or holds, in prose or a code fence) such an object; a
lone ``{"name", "arguments"}`` is taken as one call too, as models write it. Each call
must name a function offered (the one named, if ``tool_choice`` names one) and give
arguments that match its schema; otherwise, and when a call is required and the answer
makes none, it is a ``ToolCallOffSchema`` error saying where. With
``parallel_tool_calls`` false only the first call is kept.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

from contract.models import Message, NamedTool, RequestParams, ToolCall
from worker.errors import ToolCallOffSchema
from worker.schemas import first_mismatch, json_object_of

CALLS_KEY = "tool_calls"
TOOLS_INTRODUCTION = (
    "You can call functions. Each line below is one function, as JSON: its name, what it "
    "does, and the JSON Schema of its arguments."
)
CALLS_INSTRUCTION = (
    'To call functions, respond with only this JSON object and nothing else: {"tool_calls": '
    '[{"name": "<function name>", "arguments": {<arguments matching its schema>}}]}.'
)
CHOICE_AUTO = "If no function is needed, answer in plain text instead, without any JSON."
CHOICE_REQUIRED = "You must call at least one function: do not answer in plain text."
ONE_CALL = "Call one function at most."
SEVERAL_CALLS = "You may call several functions at once."


def message_line(message: Message, names: dict[str, str]) -> str:
    """A message of a tool history as a flattened line (``names``: call id → function)."""
    if message.role == "tool":
        name = names.get(message.tool_call_id or "", "a function")
        return f"Tool ({name}): {message.content}"
    calls = message.tool_calls or ()
    names.update((call.id, call.name) for call in calls)
    said = f"{message.content} " if message.content else ""
    return f"{message.role.capitalize()}: {said}{calls_text(calls)}".rstrip()


def calls_text(calls: Iterable[ToolCall]) -> str:
    """Calls as the prompt asks for them (``""`` for none)."""
    shown = [{"name": call.name, "arguments": _arguments_value(call.arguments)} for call in calls]
    return json.dumps({CALLS_KEY: shown}, ensure_ascii=False) if shown else ""


def _arguments_value(arguments: str) -> Any:
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments


def instruction(params: RequestParams) -> str:
    """What the prompt says of the functions offered and how to call them."""
    lines = [TOOLS_INTRODUCTION, *_function_lines(params.tools or "[]"), CALLS_INSTRUCTION]
    choice = params.tool_choice
    if isinstance(choice, NamedTool):
        lines.append(f"You must call the function {choice.name}, and no other: do not answer "
                     "in plain text.")  # fmt: skip
    else:
        lines.append(CHOICE_REQUIRED if choice == "required" else CHOICE_AUTO)
        lines.append(ONE_CALL if params.parallel_tool_calls is False else SEVERAL_CALLS)
    return "\n".join(lines)


@lru_cache(maxsize=64)
def _function_lines(tools_text: str) -> tuple[str, ...]:
    # A batch repeats one set of tools on every line: written once, not per prompt.
    return tuple(json.dumps(function, ensure_ascii=False) for function in json.loads(tools_text))


def read_calls(answer: str, params: RequestParams) -> tuple[ToolCall, ...] | None:
    """The calls the answer makes, checked (None: it is a plain answer, and may be one).

    ``ToolCallOffSchema`` says where a call is off, or that a required call is missing."""
    found = _calls_object(answer)
    choice = params.tool_choice
    if found is None:
        if choice == "required" or isinstance(choice, NamedTool):
            wanted = choice.name if isinstance(choice, NamedTool) else "a function"
            raise ToolCallOffSchema(f"tool_choice: the answer must call {wanted} but makes no "
                                    f"call: {answer[:120]!r}")  # fmt: skip
        return None
    functions = _functions(params.tools or "[]")
    calls = [_checked_call(raw, n, functions, choice) for n, raw in enumerate(found)]
    if params.parallel_tool_calls is False or isinstance(choice, NamedTool):
        calls = calls[:1]
    return tuple(calls)


def _calls_object(answer: str) -> list[Any] | None:
    """The list of calls the answer holds, if it holds a calls object."""
    found = json_object_of(answer)
    if found is None:
        return None
    value = found[1]
    if CALLS_KEY in value:
        calls = value[CALLS_KEY]
        if not isinstance(calls, list) or not calls:
            raise ToolCallOffSchema(f"tool_calls: must be a non-empty list of calls, got "
                                    f"{json.dumps(calls)[:80]}")  # fmt: skip
        return calls
    if isinstance(value.get("name"), str) and set(value) == {"name", "arguments"}:
        return [value]  # one call, written without its wrapper
    return None


def _checked_call(
    raw: Any, n: int, functions: dict[str, str], choice: str | NamedTool | None
) -> ToolCall:
    where = f"tool_calls[{n}]"
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise ToolCallOffSchema(f"{where}: must be an object with a function's name")
    name = raw["name"]
    if name not in functions:
        offered = ", ".join(sorted(functions))
        raise ToolCallOffSchema(f"{where}: {name[:64]!r} is not a function offered ({offered})")
    if isinstance(choice, NamedTool) and name != choice.name:
        raise ToolCallOffSchema(f"{where}: tool_choice names {choice.name}; this calls {name}")
    arguments = raw.get("arguments", {})
    if isinstance(arguments, str):  # some models write the arguments as a JSON string
        arguments = _arguments_value(arguments) if arguments.strip() else {}
    if not isinstance(arguments, dict):
        raise ToolCallOffSchema(f"{where} ({name}): the arguments must be a JSON object")
    mismatch = first_mismatch(arguments, functions[name])
    if mismatch is not None:
        raise ToolCallOffSchema(f"{where} ({name}): the arguments do not match its schema at "
                                f"{mismatch}")  # fmt: skip
    text = json.dumps(arguments, ensure_ascii=False, separators=(",", ":"))
    return ToolCall(id=new_call_id(), name=name, arguments=text)


def new_call_id() -> str:
    """An id shaped like OpenAI's (``call_`` and 24 characters)."""
    return f"call_{secrets.token_hex(12)}"


@lru_cache(maxsize=64)
def _functions(tools_text: str) -> dict[str, str]:
    """Each function's name and the JSON text of its parameters' schema."""
    return {function["name"]: json.dumps(function.get("parameters") or {"type": "object"})
            for function in json.loads(tools_text)}  # fmt: skip


def holds_tool_history(messages: Sequence[Message]) -> bool:
    """Whether the messages hold a tool history (calls or results) to be shown as such."""
    return any(message.tool_calls or message.role == "tool" for message in messages)
