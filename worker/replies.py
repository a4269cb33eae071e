"""One pure function from an ajax reply (HTTP status, headers, body) to its outcome.

The outcome is an :class:`Answer` or an :mod:`worker.errors` instance, never raised
here, so every row of the reply table is tested with plain strings.

A site words its own refusals (the consent check, a flagged message) in its language:
``REFUSALS`` holds what each language's say. A site's ``language`` setting picks one
(the plugin's English words for a flagged message are understood on every site); with
none, every language's are.
"""

from __future__ import annotations

import functools
import json
import operator
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

from worker.errors import (
    Blocked,
    ConsentMissing,
    ContentRefused,
    ProxyFault,
    QuotaExceeded,
    RateLimited,
    SessionStale,
    UpstreamError,
    UpstreamHiccup,
    UpstreamRejected,
)

_STALE_NONCE_WORDS = ("security check", "invalid nonce", "nonce verification failed")
_PLUGIN_REFUSAL_WORDS = ("prohibited words", "flagged")
_BLOCK_WORDS = ("you are not allowed to access this feature",)
_CHALLENGE_WORDS = ("just a moment", "cf-challenge", "challenge-platform", "attention required")
_EXCERPT = 200
_PROXY_MADE_HEADERS = {"proxy-status", "x-squid-error"}


@dataclass(frozen=True)
class Answer:
    text: str


Outcome = Answer | UpstreamError


@dataclass(frozen=True)
class Refusals:
    """Words (lower case) that mark a site's refusal: the consent check's, a flagged
    message's."""

    consent: tuple[str, ...]
    content: tuple[str, ...]

    def __add__(self, other: Refusals) -> Refusals:
        return Refusals(self.consent + other.consent, self.content + other.content)


REFUSALS: dict[str, Refusals] = {
    "de": Refusals(("kästchen anklicken", "kastchen anklicken"), ("verbotene wörter",)),
    "en": Refusals(("tick the box",), _PLUGIN_REFUSAL_WORDS),
    "es": Refusals(("marcar la casilla",), ("palabras prohibidas",)),
}
_PLUGIN = Refusals((), _PLUGIN_REFUSAL_WORDS)
_BY_LANGUAGE: dict[str | None, Refusals] = {
    None: functools.reduce(operator.add, REFUSALS.values()),
    **{language: words + _PLUGIN for language, words in REFUSALS.items()},
}


def refusals_in(language: str | None) -> Refusals:
    """The words a site in ``language`` refuses with (None: any known language's)."""
    words = _BY_LANGUAGE.get(language)
    if words is None:
        raise ValueError(f"no refusal words known for language {language!r}")
    return words


def classify_reply(
    status: int,
    headers: Mapping[str, str],
    body: str,
    *,
    via_proxy: bool = False,
    now: float | None = None,
    language: str | None = None,
) -> Outcome:
    """Maps one reply of ``admin-ajax.php`` (or of a proxy in front of it) to its outcome;
    ``language`` is the site's (see ``refusals_in``)."""
    lowered = {name.lower(): value for name, value in headers.items()}
    # A reply the proxy made itself says so (RFC 9209 Proxy-Status, Squid's X-Squid-Error);
    # a 5xx without that came from the site and is not the proxy's fault.
    if status == 407 or (via_proxy and _PROXY_MADE_HEADERS & lowered.keys()):
        return ProxyFault(f"proxy answered HTTP {status}")
    if status == 429:
        retry_after = parse_retry_after(lowered.get("retry-after"), now=now)
        message = f"rate limited (HTTP 429, Retry-After {retry_after})"
        return RateLimited(message, retry_after=retry_after)
    if status == 403:
        kind = "challenge page" if _contains(body, _CHALLENGE_WORDS) else _excerpt(body)
        return Blocked(f"blocked (HTTP {status}): {kind}")
    if status >= 500:
        return UpstreamHiccup(f"site answered HTTP {status}")
    if status != 200:
        return UpstreamRejected(f"site answered HTTP {status}: {_excerpt(body)}")
    words = refusals_in(language)
    if "text/event-stream" in lowered.get("content-type", ""):
        return _classify_stream(body, words)
    return _classify_json_body(body, words)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


def _classify_json_body(body: str, words: Refusals) -> Outcome:
    try:
        reply = json.loads(body)
    except ValueError:
        if _contains(body, _BLOCK_WORDS):
            return Blocked(f"blocked: {_excerpt(body)}")
        return UpstreamHiccup(f"reply is not JSON: {_excerpt(body)}")
    if not isinstance(reply, dict):
        return UpstreamHiccup(f"reply is not a JSON object: {_excerpt(body)}")
    return _classify_json(reply, words)


def _classify_json(reply: dict[str, Any], words: Refusals) -> Outcome:
    if reply.get("tokenLimitReached"):
        return QuotaExceeded(f"token limit reached: {_text(reply.get('msg'))}")
    texts = " ".join(_text(reply.get(field)) for field in ("msg", "data", "message"))
    # Key on status, not msg: the plugin leaves "Something went wrong" in msg on success.
    if reply.get("status") == "success":
        answer = reply.get("data")
        if isinstance(answer, str) and answer.strip():
            return Answer(answer)
        return UpstreamHiccup("site reported success with an empty answer")
    if _contains(texts, words.consent):
        return ConsentMissing(f"site asks for the consent checkbox: {texts.strip()}")
    if _contains(texts, _STALE_NONCE_WORDS):
        return SessionStale(f"nonce rejected: {texts.strip()}")
    if _contains(texts, _BLOCK_WORDS):
        return Blocked(f"blocked: {texts.strip()}")
    if _contains(texts, words.content):
        return ContentRefused(f"content refused: {_excerpt(texts.strip())}")
    if "status" not in reply:
        return UpstreamHiccup(f"reply has no status: {_excerpt(json.dumps(reply))}")
    return UpstreamRejected(f"site refused: {_excerpt(texts.strip()) or reply.get('status')}")


def _classify_stream(body: str, words: Refusals) -> Outcome:
    """Joins the deltas of an OpenAI-style event stream into one answer."""
    parts: list[str] = []
    for line in body.splitlines():
        if not line.startswith("data:"):
            continue
        payload = line[5:].strip()
        if not payload or payload == "[DONE]":
            continue
        try:
            event = json.loads(payload)
        except ValueError:
            return UpstreamHiccup(f"stream event is not JSON: {_excerpt(payload)}")
        if not isinstance(event, dict):
            continue
        if "choices" not in event:
            return _classify_json(event, words)
        for choice in event.get("choices") or ():
            delta = (choice or {}).get("delta") or {}
            content = delta.get("content")
            if isinstance(content, str):
                parts.append(content)
    answer = "".join(parts)
    if not answer.strip():
        return UpstreamHiccup("event stream carried no answer")
    return Answer(answer)


def _contains(text: str, words: tuple[str, ...]) -> bool:
    lowered = text.lower()
    return any(word in lowered for word in words)


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _excerpt(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _EXCERPT else text[:_EXCERPT] + "…"
