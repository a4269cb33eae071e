"""The demo's sample prompts: the example file's first lines, else generated ones."""

from __future__ import annotations

import json
from typing import Any

from chatgptes.local_fleet import PACKAGE_ROOT
from contract.config import DEFAULT_MODEL
from producer.inputs import PromptLine, parse_prompt_lines

EXAMPLE_PROMPTS = PACKAGE_ROOT / "examples" / "prompts.jsonl"


def sample_prompts(count: int) -> list[PromptLine]:
    """``count`` prompts: the example file's first lines, or generated ones if it has too few."""
    lines = EXAMPLE_PROMPTS.read_text().splitlines() if EXAMPLE_PROMPTS.exists() else []
    source = str(EXAMPLE_PROMPTS)
    if count > len(lines):
        lines, source = [json.dumps(_generated(index)) for index in range(count)], "<generated>"
    return parse_prompt_lines(
        lines[:count], source=source, default_model=DEFAULT_MODEL, max_prompt_chars=32_000
    )


_TOPICS = (
    "Redis", "the Alhambra", "sourdough bread", "black holes", "HTTP/2", "olive trees",
    "the Spanish Armada", "garbage collection", "flamenco", "solar panels", "octopuses",
)  # fmt: skip
_QUESTIONS = (
    "What is {}?", "Explain {} in two sentences.", "Give me three facts about {}.",
    "What is a common misconception about {}?", "Write a haiku about {}.",
)  # fmt: skip


def _generated(index: int) -> dict[str, Any]:
    topic = _TOPICS[index % len(_TOPICS)]
    question = _QUESTIONS[(index // len(_TOPICS)) % len(_QUESTIONS)].format(topic)
    messages = [{"role": "user", "content": question}]
    if index % 5 == 1:
        messages.insert(0, {"role": "system", "content": "Answer briefly, for a curious teenager."})
    if index % 7 == 3:
        messages = [
            {"role": "user", "content": f"I want to learn about {topic}."},
            {"role": "assistant", "content": "Happy to help. What would you like to know?"},
            *messages,
        ]
    return {"custom_id": f"gen{index + 1:04d}", "messages": messages}
