"""The one place a message list becomes the text the site receives, and where the
site's answer is shaped by the request's parameters (``stop``, JSON mode)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from contract.models import NO_PARAMS, Message, RequestParams
from worker.errors import AnswerNotJson

DEFAULT_LANGUAGE_INSTRUCTION = (
    "Your default language is English. Always respond in English unless the user's message "
    "is in a different language. If the user's message is not in English, respond in the "
    "language of the user's message. Maintain this language behavior throughout the "
    "conversation unless explicitly instructed otherwise. User input:"
)


def flatten_messages(messages: Sequence[Message]) -> str:
    """One message is its content; several become ``Role: content`` lines and ``Assistant:``."""
    if len(messages) == 1:
        return messages[0].content
    lines = [f"{message.role.capitalize()}: {message.content}" for message in messages]
    return "\n".join([*lines, "Assistant:"])


JSON_INSTRUCTION = "Respond with one valid JSON object and nothing else: no prose, no code fences."


def format_prompt(
    messages: Sequence[Message],
    language_instruction: str = DEFAULT_LANGUAGE_INSTRUCTION,
    params: RequestParams = NO_PARAMS,
) -> str:
    """The ``message`` field: the language instruction (if any), the flattened messages,
    then, in JSON mode, the request for one JSON object."""
    text = flatten_messages(messages)
    if language_instruction:
        text = f"{language_instruction} {text}"
    return f"{text}\n\n{JSON_INSTRUCTION}" if params.json_object else text


def shape_answer(answer: str, params: RequestParams = NO_PARAMS) -> str:
    """The answer cut before the first stop sequence, then, in JSON mode, its JSON object.

    ``AnswerNotJson`` when JSON mode is on and the answer holds no JSON object (a model
    may wrap one in prose or a code fence: the object itself is kept).
    """
    if params.stop:
        cut = min((at for at in map(answer.find, params.stop) if at >= 0), default=-1)
        if cut >= 0:
            answer = answer[:cut]
    if params.json_object:
        answer = json_object_in(answer)
    return answer


def json_object_in(answer: str) -> str:
    """The JSON object the answer is, or holds between its first ``{`` and last ``}``."""
    for candidate in (answer.strip(), answer[answer.find("{") : answer.rfind("}") + 1]):
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            return candidate
    raise AnswerNotJson(f"JSON mode: the answer holds no JSON object: {answer[:120]!r}")
