"""The one place a message list becomes the text the site receives."""

from __future__ import annotations

from collections.abc import Sequence

from contract.models import Message

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


def format_prompt(
    messages: Sequence[Message], language_instruction: str = DEFAULT_LANGUAGE_INSTRUCTION
) -> str:
    """The ``message`` field: the language instruction (if any) then the flattened messages."""
    flattened = flatten_messages(messages)
    return f"{language_instruction} {flattened}" if language_instruction else flattened
