"""The API server's settings: who may call it, how big an upload may be, how long things last.

Read from ``CHATGPTES_*`` variables and ``.env`` like every role's settings, on top of
the shared queue settings (the server enqueues into the same Redis and queue).
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from pydantic import Field, SecretStr, field_validator

from contract.config import QueueSettings

if TYPE_CHECKING:
    from producer.http.peers import Network

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
    trusted_proxies: str = Field(
        "",
        description="Comma-separated addresses or networks (10.0.0.0/8) of the reverse proxies "
        "in front of serve: their X-Forwarded-For / Forwarded headers are believed (the client's "
        "address, and HTTPS for the console's Secure cookie); nobody else's.",
    )

    @field_validator("api_keys")
    @classmethod
    def _entries_with_projects(cls, keys: SecretStr) -> SecretStr:
        entries = _entries(keys)
        if not entries:
            return keys
        # Imported here: `chatgptes config` reads these settings without loading aiohttp.
        from producer.http.auth import MIN_KEY_CHARS, project_and_key

        for number, entry in enumerate(entries, start=1):
            try:
                _, key = project_and_key(entry)
            except ValueError as error:
                raise ValueError(f"entry {number}: {error}") from None  # never the key itself
            if len(key) < MIN_KEY_CHARS:
                raise ValueError(
                    f"entry {number}: the key is {len(key)} characters long; a key needs at least "
                    f"{MIN_KEY_CHARS} (make one with: python3 -c 'import secrets; "
                    'print("sk-" + secrets.token_urlsafe(32))\')'
                )
        return keys

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, text: str) -> str:
        parse_networks(text)
        return text

    def trusted_networks(self) -> tuple[Network, ...]:
        """The reverse proxies whose forwarding headers are believed."""
        return parse_networks(self.trusted_proxies)

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


def parse_networks(text: str) -> tuple[Network, ...]:
    """``10.0.0.1, 192.168.0.0/16, ::1`` as networks; ValueError naming the bad entry."""
    found = []
    for number, entry in enumerate((e.strip() for e in text.split(",")), start=1):
        if not entry:
            continue
        try:
            found.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(
                f"entry {number} ({entry[:50]!r}) is not an address or a network like 10.0.0.0/8"
            ) from None
    return tuple(found)


def _entries(keys: SecretStr) -> tuple[str, ...]:
    stripped = (entry.strip() for entry in keys.get_secret_value().split(","))
    return tuple(entry for entry in stripped if entry)
