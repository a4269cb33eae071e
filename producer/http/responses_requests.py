"""A Responses API request (``/v1/responses``) as the chat completions request it comes to.

The queue runs chat prompts, so a Responses request is translated once, on the way
in, and then checked exactly as a chat request or batch line (``producer.inputs``,
``producer.params``):

- ``input``: a string is one user message; a list holds messages (``{"role",
  "content"}``, with or without ``"type": "message"``) whose content is a string or
  ``input_text`` / ``output_text`` parts;
  ``instructions`` comes first, as a system message;
- ``max_output_tokens`` is ``max_completion_tokens``; ``text.format`` is
  ``response_format`` (``text``, ``json_object``, or ``json_schema`` with its ``name``,
  ``schema``, ``strict`` beside ``type``, as the Responses API spells it);
  ``reasoning.effort`` is ``reasoning_effort``; ``temperature``, ``top_p``, ``user``,
  ``metadata``, ``store``, ``service_tier``, ``parallel_tool_calls``, ``top_logprobs``
  pass as they are, to the same policy;
- function ``tools`` (``{"type": "function", "name", "description", "parameters",
  "strict"}``) become chat tools, and ``tool_choice`` ``{"type": "function", "name"}``
  a chat one; ``function_call`` input items become an assistant message's
  ``tool_calls`` (consecutive ones, one message), and ``function_call_output`` items
  ``tool`` messages;
- refused, saying why: ``previous_response_id`` and ``conversation`` (nothing is kept
  between requests), ``background``, ``prompt``, ``max_tool_calls``, input items that
  are neither messages nor function calls and their outputs (reasoning items,
  references, other tools' calls), images and files.

``ResponsesRequest`` keeps what the response object echoes (``instructions``,
``max_output_tokens``, ``text``, the tools, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from producer.params import json_type, shown

_STATELESS = "not supported: chatgpt.es keeps no conversation between requests; send the " \
    "whole conversation in 'input'"  # fmt: skip
REFUSED: dict[str, str] = {
    "previous_response_id": _STATELESS,
    "conversation": _STATELESS,
    "background": "not supported: a response is answered while the request waits",
    "prompt": "not supported: there are no stored prompt templates here",
    "max_tool_calls": "not supported: the calls an answer makes are not limited here",
}
PASSED = frozenset({"temperature", "top_p", "user", "metadata", "store", "service_tier",
                    "parallel_tool_calls", "top_logprobs"})  # fmt: skip
IGNORED = frozenset({"include", "truncation", "prompt_cache_key", "safety_identifier",
                     "stream_options"})  # fmt: skip
TRANSLATED = frozenset({"model", "input", "instructions", "max_output_tokens", "text",
                        "reasoning", "stream", "tools", "tool_choice"})  # fmt: skip
KNOWN = TRANSLATED | PASSED | IGNORED | frozenset(REFUSED)
_ROLES = frozenset({"system", "developer", "user", "assistant"})
_TEXT_PARTS = frozenset({"input_text", "output_text", "text"})


@dataclass
class ResponsesRequest:
    """A Responses request translated: the chat body, or why it cannot be one."""

    chat_body: dict[str, Any] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)
    echoed: dict[str, Any] = field(default_factory=dict)  # what the response object repeats


def translate(body: dict[str, Any]) -> ResponsesRequest:
    """The chat completions body a Responses ``body`` comes to (``stream`` left out)."""
    request = ResponsesRequest()
    chat = request.chat_body
    reasons = request.reasons
    for name, value in body.items():
        if value is None or name in ("input", "instructions", "stream") or name in IGNORED:
            continue
        if name not in KNOWN:
            reasons.append(f"{name}: Unrecognized request argument supplied: {name}")
        elif name in REFUSED:
            reasons.append(f"{name}: {REFUSED[name]}")
        elif name == "model":
            chat["model"] = value
        elif name == "max_output_tokens":
            chat["max_completion_tokens"] = value
        elif name == "text":
            _text(value, request)
        elif name == "reasoning":
            effort = value.get("effort") if isinstance(value, dict) else None
            if effort is not None:
                chat["reasoning_effort"] = effort
        elif name == "tools":
            if value != []:  # no tools is no tools
                chat["tools"] = _chat_tools(value)
        elif name == "tool_choice":
            chat["tool_choice"] = _chat_tool_choice(value)
        else:
            chat[name] = value
    chat["messages"] = _messages(body.get("instructions"), body.get("input"), reasons)
    request.echoed = {
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "metadata": body.get("metadata") or {},
        "temperature": body.get("temperature", 1.0),
        "top_p": body.get("top_p", 1.0),
        "text": {"format": (body.get("text") or {}).get("format") or {"type": "text"}},
        "user": body.get("user"),
    }
    if chat.get("tools"):
        parallel = body.get("parallel_tool_calls", True)
        request.echoed |= {"tools": body["tools"], "parallel_tool_calls": parallel,
                           "tool_choice": body.get("tool_choice", "auto")}  # fmt: skip
    return request


def _chat_tools(tools: Any) -> Any:
    """Responses function tools as chat ones; anything else as it is, for the chat checks
    to refuse in their words."""
    if not isinstance(tools, list):
        return tools
    return [{"type": "function", "function": {key: tool[key] for key in tool if key != "type"}}
            if isinstance(tool, dict) and tool.get("type") == "function" else tool
            for tool in tools]  # fmt: skip


def _chat_tool_choice(choice: Any) -> Any:
    if isinstance(choice, dict) and choice.get("type") == "function" and "name" in choice:
        return {"type": "function", "function": {"name": choice["name"]}}
    return choice


def _text(value: Any, request: ResponsesRequest) -> None:
    fmt = value.get("format") if isinstance(value, dict) else None
    if not isinstance(value, dict) or (fmt is not None and not isinstance(fmt, dict)):
        request.reasons.append(f"text: must be an object with a 'format' object, got "
                               f"{json_type(value)}")  # fmt: skip
        return
    if fmt is None or fmt.get("type") == "text":
        return
    if fmt.get("type") == "json_schema":  # the Responses API keeps name and schema beside type
        spec = {key: fmt[key] for key in ("name", "schema", "strict", "description") if key in fmt}
        extra = {key: fmt[key] for key in fmt if key not in spec and key != "type"}
        request.chat_body["response_format"] = {"type": "json_schema", "json_schema": spec,
                                                **extra}  # fmt: skip
    else:
        request.chat_body["response_format"] = dict(fmt)


def _messages(instructions: Any, given: Any, reasons: list[str]) -> Any:
    messages: list[Any] = []
    if instructions is not None:
        if isinstance(instructions, str) and instructions.strip():
            messages.append({"role": "system", "content": instructions})
        else:
            reasons.append(f"instructions: must be a non-empty string, got {shown(instructions)}")
    if isinstance(given, str):
        messages.append({"role": "user", "content": given})
    elif isinstance(given, list) and given:
        for index, item in enumerate(given):
            where = f"input[{index}]"
            kind = item.get("type", "message") if isinstance(item, dict) else None
            if kind in ("function_call", "function_call_output") and not _call_id(item):
                reasons.append(f"{where}.call_id: must be a non-empty string, got "
                               f"{shown(item.get('call_id'))}")  # fmt: skip
            elif kind == "function_call":
                _function_call(item, messages)
            elif kind == "function_call_output":
                messages.append({"role": "tool", "tool_call_id": item["call_id"],
                                 "content": _output(item.get("output"))})  # fmt: skip
            elif (message := _message(item, where, reasons)) is not None:
                messages.append(message)
    else:
        got = "missing" if given is None else f"got {json_type(given)}"
        reasons.append(f"input: must be a string or a non-empty list of messages; {got}")
    return messages


def _message(item: Any, where: str, reasons: list[str]) -> dict[str, Any] | None:
    if not isinstance(item, dict):
        reasons.append(f"{where}: must be a message object, got {json_type(item)}")
        return None
    kind = item.get("type", "message")
    if kind != "message":
        reasons.append(f"{where}.type: {shown(kind)} items are not supported: only messages, "
                       "function calls and their outputs are (chatgpt.es cannot keep "
                       "reasoning)")  # fmt: skip
        return None
    role = item.get("role")
    if role not in _ROLES:
        reasons.append(f"{where}.role: {shown(role)} is not one of "
                       f"{', '.join(sorted(_ROLES))}")  # fmt: skip
        return None
    content = item.get("content")
    if isinstance(content, list):
        content = [_part(part) for part in content]
    return {"role": role, "content": content}


def _call_id(item: dict[str, Any]) -> bool:
    return isinstance(item.get("call_id"), str) and bool(item["call_id"])


def _function_call(item: dict[str, Any], messages: list[Any]) -> None:
    """A ``function_call`` item as a call of the assistant message it belongs to."""
    call = {"id": item.get("call_id"), "type": "function",
            "function": {"name": item.get("name"), "arguments": item.get("arguments")}}  # fmt: skip
    last = messages[-1] if messages else None
    if isinstance(last, dict) and last.get("role") == "assistant":
        last.setdefault("tool_calls", []).append(call)
    else:
        messages.append({"role": "assistant", "content": None, "tool_calls": [call]})


def _output(output: Any) -> Any:
    """A ``function_call_output``'s output: a string, or parts (as chat text parts)."""
    return [_part(part) for part in output] if isinstance(output, list) else output


def _part(part: Any) -> Any:
    """A Responses content part as a chat one (text stays text; others are named so the
    chat checks refuse them in their words)."""
    if isinstance(part, dict) and part.get("type") in _TEXT_PARTS:
        return {"type": "text", "text": part.get("text")}
    if isinstance(part, dict) and part.get("type") in ("input_image", "input_file"):
        return {"type": "image_url" if part["type"] == "input_image" else part["type"]}
    return part
