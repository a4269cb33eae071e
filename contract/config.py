"""Settings shared by every process role: where Redis is and how the queue is laid out.

Each role has one pydantic-settings class read from ``CHATGPTES_*`` variables and an
optional ``.env`` file; the worker's settings extend these (see ``worker.config``).
"""

from __future__ import annotations

import json
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contract.redaction import redact_text, redact_url

REDIS_SCHEMES = ("redis", "rediss", "unix")

KNOWN_MODELS: tuple[str, ...] = ("gpt-4", "gpt-4o", "gpt-4o-mini")
DEFAULT_MODEL = "gpt-4o"


class QueueSettings(BaseSettings):
    """What producers and workers must agree on."""

    model_config = SettingsConfigDict(
        env_prefix="CHATGPTES_",
        env_file=".env",
        extra="ignore",
        frozen=True,
        hide_input_in_errors=True,  # a value may be a secret: errors name the setting only
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
    max_input_bytes: int = Field(
        64 * 1024 * 1024,
        gt=0,
        description="Largest prompts file (or stdin) enqueue reads; bigger is refused unread.",
    )
    default_model: str = Field(DEFAULT_MODEL, description="Model used when a line names none.")
    chunk_size: int = Field(
        50, ge=1, le=1000, description="Prompts one arq job carries (smaller for small batches)."
    )
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="Log rendering; auto = console on a terminal, else JSON."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Lowest log level written."
    )

    @field_validator("redis_url")
    @classmethod
    def _a_redis_url(cls, url: str) -> str:
        shown = redact_text(url)
        try:
            parts = urlsplit(url)
            port = parts.port  # raises for a port that is not a number in 0-65535
        except ValueError:
            # Not the parser's words: they may quote part of the password.
            raise ValueError(
                f"{shown!r} is not a URL (a host, then an optional port 1-65535)"
            ) from None
        if parts.scheme not in REDIS_SCHEMES:
            raise ValueError(
                f"{shown!r} must start with {', '.join(s + '://' for s in REDIS_SCHEMES)}"
            )
        if parts.scheme != "unix" and not parts.hostname:
            raise ValueError(f"{shown!r} names no host")
        if port == 0:
            raise ValueError(f"{shown!r}: port 0 is not a port")
        return url

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_case_level(cls, level: object) -> object:
        return level.upper() if isinstance(level, str) else level

    def describe(self) -> dict[str, str]:
        """Every setting with its value, secrets masked, for ``chatgptes config``."""
        values = self.model_dump(mode="json")
        values["redis_url"] = redact_url(self.redis_url)
        return {
            name: json.dumps(value) if isinstance(value, dict | list) else str(value)
            for name, value in values.items()
        }
