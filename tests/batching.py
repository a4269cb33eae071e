"""What the batch-bookkeeping tests share: small chunks and a few plain prompts."""

from __future__ import annotations

from contract.config import QueueSettings
from contract.models import Message
from producer.inputs import PromptLine

SETTINGS = QueueSettings(redis_url="redis://unused", queue_name="test:queue", chunk_size=2)


def lines(count: int) -> list[PromptLine]:
    return [
        PromptLine(n + 1, f"q{n}", (Message(role="user", content=f"prompt {n}"),), "gpt-4o")
        for n in range(count)
    ]
