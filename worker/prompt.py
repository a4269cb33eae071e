"""The one place a message list becomes the text the site receives, and where the
site's answer is shaped by the request's parameters (``stop``, JSON mode, a JSON
schema, ``max_tokens``, tools).

An answer is shaped in the order a model's output would be: when tools are offered,
first read as the calls it makes (``worker.tool_calls``: each checked against its
function's schema), and kept whole if it is calls; otherwise cut before a stop
sequence; then, in JSON mode, the JSON object it holds (checked against the schema if
one was asked for); then cut at ``max_tokens`` tokens, as the model would have
stopped there (OpenAI's ``finish_reason: length``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from contract.models import NO_PARAMS, Message, RequestParams, ToolCall
from worker import tokens, tool_calls
from worker.errors import AnswerNotJson, AnswerOffSchema
from worker.schemas import first_mismatch, json_object_of

DEFAULT_LANGUAGE_INSTRUCTION = (
    "Your default language is English. Always respond in English unless the user's message "
    "is in a different language. If the user's message is not in English, respond in the "
    "language of the user's message. Maintain this language behavior throughout the "
    "conversation unless explicitly instructed otherwise. User input:"
)
DEFAULT_MODEL_FOR_TOKENS = "gpt-4o"


def flatten_messages(messages: Sequence[Message]) -> str:
    """One message is its content; several become ``Role: content`` lines and ``Assistant:``
    (the calls of a tool history, and their results, as ``worker.tool_calls`` shows them)."""
    if len(messages) == 1:
        return messages[0].content
    if tool_calls.holds_tool_history(messages):
        names: dict[str, str] = {}
        lines = [tool_calls.message_line(message, names) for message in messages]
    else:
        lines = [f"{message.role.capitalize()}: {message.content}" for message in messages]
    return "\n".join([*lines, "Assistant:"])


JSON_INSTRUCTION = "Respond with one valid JSON object and nothing else: no prose, no code fences."
SCHEMA_INSTRUCTION = (
    "Respond with one valid JSON object that matches the JSON Schema below and nothing else: "
    "no prose, no code fences. JSON Schema: "
)


def format_prompt(
    messages: Sequence[Message],
    language_instruction: str = DEFAULT_LANGUAGE_INSTRUCTION,
    params: RequestParams = NO_PARAMS,
) -> str:
    """The ``message`` field: the language instruction (if any), the flattened messages,
    then the functions that may be called (if any are offered), then, in JSON mode, the
    request for one JSON object (matching the schema, if any)."""
    text = flatten_messages(messages)
    if language_instruction:
        text = f"{language_instruction} {text}"
    if params.calls_tools:
        text = f"{text}\n\n{tool_calls.instruction(params)}"
        if params.wants_json:  # the answer, if it is not calls
            return f"{text}\nIf you answer in plain text, {_json_request(params)}"
    if params.json_schema is not None:
        return f"{text}\n\n{SCHEMA_INSTRUCTION}{params.json_schema}"
    return f"{text}\n\n{JSON_INSTRUCTION}" if params.json_object else text


def _json_request(params: RequestParams) -> str:
    if params.json_schema is not None:
        return f"{SCHEMA_INSTRUCTION[0].lower()}{SCHEMA_INSTRUCTION[1:]}{params.json_schema}"
    return f"{JSON_INSTRUCTION[0].lower()}{JSON_INSTRUCTION[1:]}"


class Shaped(NamedTuple):
    """An answer as the request asked for it, whether ``max_tokens`` cut it, and the calls
    it makes of the functions offered (``text`` is then those calls, as JSON)."""

    text: str
    cut: bool = False  # OpenAI's finish_reason "length"
    tool_calls: tuple[ToolCall, ...] | None = None  # OpenAI's finish_reason "tool_calls"


def shape_answer(
    answer: str, params: RequestParams = NO_PARAMS, model: str = DEFAULT_MODEL_FOR_TOKENS
) -> Shaped:
    """The answer cut before the first stop sequence; in JSON mode, its JSON object; then
    at most ``max_tokens`` tokens of it (counted with ``model``'s encoding).

    ``AnswerNotJson`` when JSON mode is on and the answer holds no JSON object (a model
    may wrap one in prose or a code fence: the object itself is kept);
    ``AnswerOffSchema`` when the object does not match the schema asked for. With tools
    offered, an answer that is calls is kept whole (``ToolCallOffSchema`` when a call is
    off its function's schema, or a required call is missing).
    """
    if params.calls_tools:
        calls = tool_calls.read_calls(answer, params)
        if calls is not None:
            return Shaped(tool_calls.calls_text(calls), tool_calls=calls)
    if params.stop:
        cut = min((at for at in map(answer.find, params.stop) if at >= 0), default=-1)
        if cut >= 0:
            answer = answer[:cut]
    if params.wants_json:
        answer, value = json_object_in(answer)
        if params.json_schema is not None:
            check_schema(value, params.json_schema)
    if params.max_tokens is not None:
        return Shaped(*tokens.cut(answer, params.max_tokens, model))
    return Shaped(answer)


def json_object_in(answer: str) -> tuple[str, dict[str, Any]]:
    """The JSON object the answer is, or holds between its first ``{`` and last ``}``: its
    text and its value."""
    found = json_object_of(answer)
    if found is None:
        raise AnswerNotJson(f"JSON mode: the answer holds no JSON object: {answer[:120]!r}")
    return found


def check_schema(value: dict[str, Any], schema_text: str) -> None:
    """``AnswerOffSchema`` naming the first place ``value`` does not match the schema."""
    mismatch = first_mismatch(value, schema_text)
    if mismatch is not None:
        raise AnswerOffSchema(f"JSON schema: the answer does not match it at {mismatch}")
