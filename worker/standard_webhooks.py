"""What a webhook delivery looks like on the wire: Standard Webhooks, as OpenAI sends them.

Each delivery carries ``webhook-id`` (the event's ID, the same on every attempt, so a
receiver drops duplicates), ``webhook-timestamp`` (when this attempt was sent, in
epoch seconds) and ``webhook-signature`` (``v1,`` and the base64 HMAC-SHA256 of
``id.timestamp.body`` under the secret). The secret is given in OpenAI's form,
``whsec_`` then base64; OpenAI's SDKs check a delivery with
``client.webhooks.unwrap(body, headers, secret=...)``.

Endpoint URLs may carry credentials (``https://user:token@host/...``), and some
services put a token in the path: anything said about an endpoint (a log line, an
error kept in Redis, ``chatgptes config``) names it by ``endpoint_label`` only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import random
from urllib.parse import urlsplit

SECRET_PREFIX = "whsec_"
SCHEMES = ("http", "https")


def decode_secret(secret: str) -> bytes:
    """The signing key of a ``whsec_<base64>`` secret; ValueError (never quoting it) if it
    is not one."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("must start with 'whsec_' (then base64), as OpenAI's secrets do")
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the part after 'whsec_' is not base64") from None
    if len(key) < 16:
        raise ValueError("the key after 'whsec_' must be at least 16 bytes")
    return key


def signature(key: bytes, event_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of id.timestamp.body>``."""
    signed = f"{event_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def delivery_headers(key: bytes, event_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": "chatgptes-queue-webhooks",
        "webhook-id": event_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(key, event_id, timestamp, body),
    }


def check_url(url: str, place: int) -> None:
    """ValueError unless ``url`` is an http(s) URL with a host; it names the URL by its
    ``place`` among the endpoints and by its label only."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises for a port that is not one)
    except ValueError:
        raise ValueError(f"URL {place} is not a URL") from None
    if parts.scheme not in SCHEMES or not parts.hostname:
        raise ValueError(f"URL {place} ({endpoint_label(url)}) must be http(s)://host/...")


def endpoint_label(url: str) -> str:
    """``scheme://host[:port]``: what may be said about an endpoint (no credentials, no
    path or query, where tokens live)."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "?", parts.port
    except ValueError:
        return "(an invalid URL)"
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "")


def retry_delay(attempts: int, base: float, cap: float, rng: random.Random) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones: exponential from
    ``base``, capped at ``cap``, with jitter (between half and all of it), so that the
    deliveries a receiver's outage piled up do not all come back at the same moment."""
    delay = min(cap, base * 2 ** (attempts - 1))
    return delay * rng.uniform(0.5, 1.0)
