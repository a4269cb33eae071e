"""The tool calls and results a chat history may hold, checked as OpenAI checks them.

An agent loop sends back what the model did: an assistant message with ``tool_calls``
(``{"id", "type": "function", "function": {"name", "arguments"}}``, its content then
null or empty), then one ``tool`` message per call, with the ``tool_call_id`` it
answers and the result as its content. SDKs that send the assistant message back
whole add ``refusal``, ``annotations``, ``audio`` or ``function_call``, null or empty:
those are accepted and ignored.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from contract.models import TOOL_NAME_PATTERN, Message, ToolCall
from producer.wording import json_type, shown

# What an assistant message echoed back by an SDK carries, null or empty: nothing to keep.
ECHOED_KEYS = frozenset({"refusal", "annotations", "audio", "function_call"})
_CALL_KEYS = frozenset({"id", "type", "function"})
_NAME = re.compile(TOOL_NAME_PATTERN)
# A message's content checked as any message's is: the text, or None and a reason.
ContentCheck = Callable[[Any, bool, str, list[str]], "str | None"]


def tool_message(
    item: dict[str, Any], role: str, where: str, reasons: list[str], check_content: ContentCheck
) -> Message | None:
    """An assistant message (which may carry tool calls) or a tool's result, or None and
    a reason per problem."""
    count_before = len(reasons)
    calls = checked_tool_calls(item.get("tool_calls"), f"{where}.tool_calls", reasons)
    echoed = echoed_keys_problem(item, where)
    if echoed is not None:
        reasons.append(echoed)
    raw, call_id = item.get("content"), item.get("tool_call_id")
    if role == "tool" and (not isinstance(call_id, str) or not call_id):
        reasons.append(f"{where}.tool_call_id: must name the call this result answers, got "
                       f"{shown(call_id)}")  # fmt: skip
    if (calls or "tool_calls" in item) and raw in (None, ""):
        content: str | None = ""  # the calls are the message
    elif role == "tool" and raw == "":
        content = ""  # a function may return nothing
    else:
        content = check_content(raw, "content" in item, f"{where}.content", reasons)
    if len(reasons) > count_before or content is None:
        return None
    if role == "tool":
        return Message(role="tool", content=content, tool_call_id=call_id)
    if calls is None and not content:
        reasons.append(f"{where}: an assistant message needs content or tool_calls")
        return None
    return Message(role="assistant", content=content, tool_calls=calls)


def checked_tool_calls(raw: Any, where: str, reasons: list[str]) -> tuple[ToolCall, ...] | None:
    """An assistant message's ``tool_calls`` (None for none), each problem a reason."""
    if raw is None or raw == []:
        return None
    if not isinstance(raw, list):
        reasons.append(f"{where}: must be a list of tool calls, got {json_type(raw)}")
        return None
    calls: list[ToolCall] = []
    for index, item in enumerate(raw):
        call = _call(item, f"{where}[{index}]", reasons)
        if call is not None:
            calls.append(call)
    return tuple(calls) if len(calls) == len(raw) else None


def _call(item: Any, where: str, reasons: list[str]) -> ToolCall | None:
    if not isinstance(item, dict):
        reasons.append(f"{where}: must be a tool call object, got {json_type(item)}")
        return None
    unknown = sorted(set(item) - _CALL_KEYS)
    function = item.get("function")
    call_id = item.get("id")
    if unknown:
        problem = f": unknown key {shown(unknown[0])}; expected function, id, type"
    elif not isinstance(call_id, str) or not call_id:
        problem = f".id: must be a non-empty string, got {shown(call_id)}"
    elif item.get("type", "function") != "function":
        problem = f".type: only 'function' calls are supported, got {shown(item.get('type'))}"
    elif not isinstance(function, dict) or not set(function) <= {"name", "arguments"}:
        problem = ".function: must be an object with 'name' and 'arguments'"
    elif not isinstance(function.get("name"), str) or not _NAME.match(function["name"]):
        problem = f".function.name: must be a function's name, got {shown(function.get('name'))}"
    elif not isinstance(function.get("arguments"), str):
        problem = (f".function.arguments: must be a string (the arguments' JSON), got "
                   f"{json_type(function.get('arguments'))}")  # fmt: skip
    else:
        return ToolCall(id=call_id, name=function["name"], arguments=function["arguments"])
    reasons.append(f"{where}{problem}")
    return None


def echoed_keys_problem(item: dict[str, Any], where: str) -> str | None:
    """A reason if an echoed key (``refusal``, ``audio``, ...) carries something."""
    for key in ECHOED_KEYS.intersection(item):
        if item[key] not in (None, [], ""):
            return f"{where}.{key}: only null is accepted here, got {json_type(item[key])}"
    return None


def unanswered_results(messages: Sequence[Message], where: str) -> list[str]:
    """A reason per ``tool`` message that answers no call of an earlier assistant message."""
    reasons: list[str] = []
    called: set[str] = set()
    for index, message in enumerate(messages):
        if message.tool_calls:
            called.update(call.id for call in message.tool_calls)
        elif message.role == "tool" and message.tool_call_id not in called:
            reasons.append(
                f"{where}[{index}].tool_call_id: {shown(message.tool_call_id)} answers no "
                "tool call of an earlier assistant message"
            )
    return reasons
