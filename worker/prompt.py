"""The one place a message list becomes the text the site receives, and where the
site's answer is shaped by the request's parameters (``stop``, JSON mode, a JSON
schema, ``max_tokens``).

An answer is shaped in the order a model's output would be: cut before a stop
sequence; then, in JSON mode, the JSON object it holds (checked against the schema if
one was asked for); then cut at ``max_tokens`` tokens, as the model would have
stopped there (OpenAI's ``finish_reason: length``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any, NamedTuple

from contract.models import NO_PARAMS, Message, RequestParams
from worker import tokens
from worker.errors import AnswerNotJson, AnswerOffSchema

if TYPE_CHECKING:  # jsonschema loads at the first schema: `chatgptes config` never needs it
    from jsonschema.protocols import Validator

DEFAULT_LANGUAGE_INSTRUCTION = (
    "Your default language is English. Always respond in English unless the user's message "
    "is in a different language. If the user's message is not in English, respond in the "
    "language of the user's message. Maintain this language behavior throughout the "
    "conversation unless explicitly instructed otherwise. User input:"
)
DEFAULT_MODEL_FOR_TOKENS = "gpt-4o"


def flatten_messages(messages: Sequence[Message]) -> str:
    """One message is its content; several become ``Role: content`` lines and ``Assistant:``."""
    if len(messages) == 1:
        return messages[0].content
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
    then, in JSON mode, the request for one JSON object (matching the schema, if any)."""
    text = flatten_messages(messages)
    if language_instruction:
        text = f"{language_instruction} {text}"
    if params.json_schema is not None:
        return f"{text}\n\n{SCHEMA_INSTRUCTION}{params.json_schema}"
    return f"{text}\n\n{JSON_INSTRUCTION}" if params.json_object else text


class Shaped(NamedTuple):
    """An answer as the request asked for it, and whether ``max_tokens`` cut it."""

    text: str
    cut: bool = False  # OpenAI's finish_reason "length"


def shape_answer(
    answer: str, params: RequestParams = NO_PARAMS, model: str = DEFAULT_MODEL_FOR_TOKENS
) -> Shaped:
    """The answer cut before the first stop sequence; in JSON mode, its JSON object; then
    at most ``max_tokens`` tokens of it (counted with ``model``'s encoding).

    ``AnswerNotJson`` when JSON mode is on and the answer holds no JSON object (a model
    may wrap one in prose or a code fence: the object itself is kept);
    ``AnswerOffSchema`` when the object does not match the schema asked for.
    """
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
    for candidate in (answer.strip(), answer[answer.find("{") : answer.rfind("}") + 1]):
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            return candidate, value
    raise AnswerNotJson(f"JSON mode: the answer holds no JSON object: {answer[:120]!r}")


def check_schema(value: dict[str, Any], schema_text: str) -> None:
    """``AnswerOffSchema`` naming the first place ``value`` does not match the schema."""
    from jsonschema.exceptions import best_match

    error = best_match(_validator(schema_text).iter_errors(value))
    if error is not None:
        where = "/".join(str(part) for part in error.absolute_path) or "(the object)"
        raise AnswerOffSchema(
            f"JSON schema: the answer does not match it at {where}: {error.message[:200]}"
        )


@lru_cache(maxsize=64)
def _validator(schema_text: str) -> Validator:
    # A batch repeats one schema on every line: compiled once, not per answer.
    from jsonschema import Draft202012Validator
    from jsonschema.validators import validator_for

    schema = json.loads(schema_text)
    return validator_for(schema, default=Draft202012Validator)(schema)
