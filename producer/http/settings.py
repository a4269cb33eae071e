"""The API server's settings: who may call it, how big an upload may be, how long things last.

Read from ``CHATGPTES_*`` variables and ``.env`` like every role's settings, on top of
the shared queue settings (the server enqueues into the same Redis and queue).
"""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from contract.config import QueueSettings

MIB = 1024 * 1024


class ApiSettings(QueueSettings):
    """What ``chatgptes serve`` reads from its environment.

    Uploads are capped by the queue's ``max_input_bytes`` (64 MiB), the same limit the
    CLI's enqueue has: an uploaded file lives in Redis, in memory, as one string per
    file; and the server reads it whole and validates every line before accepting it,
    so each upload in flight costs about twice its size in the server as well. 64 MiB
    holds some 100,000 typical prompts.
    """

    api_keys: SecretStr = Field(
        SecretStr(""),
        description="Comma-separated keys clients send as 'Authorization: Bearer <key>', each "
        "'project:key' or a bare key (project 'default'); with none, serve runs only on a "
        "loopback address.",
    )
    file_ttl_seconds: int = Field(
        7 * 24 * 3600,
        gt=0,
        description="How long an uploaded file is kept (unless its upload asks for less).",
    )
    chat_timeout_seconds: float = Field(
        300.0,
        gt=0,
        description="How long POST /v1/chat/completions waits for its answer (504 after).",
    )

    @field_validator("api_keys")
    @classmethod
    def _entries_with_projects(cls, keys: SecretStr) -> SecretStr:
        entries = _entries(keys)
        if not entries:
            return keys
        # Imported here: `chatgptes config` reads these settings without loading aiohttp.
        from producer.http.auth import project_and_key

        for number, entry in enumerate(entries, start=1):
            try:
                project_and_key(entry)
            except ValueError as error:
                raise ValueError(f"entry {number}: {error}") from None  # never the key itself
        return keys

    def api_key_list(self) -> tuple[str, ...]:
        """The configured entries (``project:key`` or a bare key), blanks dropped."""
        return _entries(self.api_keys)

    def describe(self) -> dict[str, str]:
        """Every setting with its value; the API keys are never shown, only counted."""
        described = super().describe()
        count = len(self.api_key_list())
        described["api_keys"] = f"*** ({count} key{'' if count == 1 else 's'})" if count else ""
        return described

    def json_body_limit(self) -> int:
        """Largest JSON request body read: one prompt of ``max_prompt_chars`` characters, each
        as long as its longest JSON escape (12 bytes), plus 1 MiB for the rest."""
        return 12 * self.max_prompt_chars + MIB


def _entries(keys: SecretStr) -> tuple[str, ...]:
    stripped = (entry.strip() for entry in keys.get_secret_value().split(","))
    return tuple(entry for entry in stripped if entry)
