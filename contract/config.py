"""Settings shared by every process role: where Redis is and how the queue is laid out.

Each role has one pydantic-settings class read from ``CHATGPTES_*`` variables and an
optional ``.env`` file; the worker's settings extend these (see ``worker.config``).
"""

from __future__ import annotations

import json

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from contract.redaction import redact_url

KNOWN_MODELS: tuple[str, ...] = ("gpt-4", "gpt-4o", "gpt-4o-mini")
DEFAULT_MODEL = "gpt-4o"


class QueueSettings(BaseSettings):
    """What producers and workers must agree on."""

    model_config = SettingsConfigDict(
        env_prefix="CHATGPTES_", env_file=".env", extra="ignore", frozen=True
    )

    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="Redis holding the queue, the batches and the results (may carry a password).",
    )
    queue_name: str = Field("chatgptes:queue", description="arq queue the jobs go through.")
    result_ttl_seconds: int = Field(
        7 * 24 * 3600, gt=0, description="How long results and batch records are kept."
    )
    max_prompt_chars: int = Field(
        32_000, gt=0, description="Largest prompt accepted, counted over all message contents."
    )
    default_model: str = Field(DEFAULT_MODEL, description="Model used when a line names none.")
    chunk_size: int = Field(
        50, ge=1, le=1000, description="Prompts one arq job carries (smaller for small batches)."
    )

    def describe(self) -> dict[str, str]:
        """Every setting with its value, secrets masked, for ``chatgptes config``."""
        values = self.model_dump(mode="json")
        values["redis_url"] = redact_url(self.redis_url)
        return {
            name: json.dumps(value) if isinstance(value, dict | list) else str(value)
            for name, value in values.items()
        }
