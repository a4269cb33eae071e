"""Bearer-token auth: ``Authorization: Bearer <key>`` against ``CHATGPTES_API_KEYS``.

With no key configured, the API is open only on a loopback address (127.0.0.1, ::1,
localhost), where just this machine can reach it; bound anywhere else it refuses every
request and says which setting to set. Keys are compared in constant time and never
logged or echoed back.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Sequence

from aiohttp import web

from producer.http.errors import ApiError

LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})


def is_loopback(host: str) -> bool:
    """Whether binding to ``host`` exposes the server to this machine only."""
    name = host.strip().strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # a host name, or '' / '0.0.0.0'-like: reachable from elsewhere


class Gate:
    """Decides whether a request may go on: a known key, or an open loopback server."""

    def __init__(self, keys: Sequence[str], *, open_without_keys: bool) -> None:
        self._keys = tuple(key.encode() for key in keys)
        self._open = not self._keys and open_without_keys

    def check(self, request: web.Request) -> None:
        if self._open:
            return
        if not self._keys:
            raise _refused(
                "This server has no API key configured and listens beyond this machine, so "
                "it refuses every request: set CHATGPTES_API_KEYS (comma-separated keys) on "
                "the server, or bind it to 127.0.0.1."
            )
        given = bearer_token(request)
        if given is None:
            raise _refused(
                "You didn't provide an API key. Send it as 'Authorization: Bearer <key>' "
                "(the OpenAI SDK does that with api_key=...)."
            )
        if not self.accepts(given):
            raise _refused("Incorrect API key provided.")

    def accepts(self, given: str) -> bool:
        candidate = given.encode()
        found = False
        for key in self._keys:  # every key compared: the time says nothing about which
            found |= hmac.compare_digest(candidate, key)
        return found


def bearer_token(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _refused(message: str) -> ApiError:
    return ApiError(401, message, code="invalid_api_key")
