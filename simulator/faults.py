"""Injected upstream hiccups, drawn per request from a seedable random source.

One draw per admitted page GET or ajax POST picks at most one fault; the rates
are stacked (reset, then 5xx, then non-JSON, then slow, then 429, then stale
nonce), so they must add up to at most 1. "nonjson" and "stale_nonce" only
exist on the ajax endpoint; drawn for a page GET they mean no fault.

- reset: the connection is aborted (TCP RST) without any reply
- 5xx: HTTP 500, 502 or 503 with a WordPress/nginx-style HTML body
- nonjson: HTTP 200 with an HTML body on admin-ajax.php
- slow: the request sleeps ``slow_seconds`` longer, then proceeds normally
- 429: HTTP 429, ``Retry-After: 1``, body ``Too Many Requests``; the identity
  must then wait like after a real rate limit (sending sooner is a violation)
- stale_nonce: the ajax POST is refused as a failed nonce check, whatever it sent
"""

from __future__ import annotations

import random
from enum import Enum

from simulator.config import SimConfig


class Fault(Enum):
    RESET = "reset"
    SERVER_ERROR = "5xx"
    NON_JSON = "nonjson"
    SLOW = "slow"
    RATE_LIMITED = "429"
    STALE_NONCE = "stale_nonce"


AJAX_ONLY = frozenset({Fault.NON_JSON, Fault.STALE_NONCE})
FAULT_RETRY_AFTER = 1
"""The Retry-After (seconds) an injected 429 asks for."""


SERVER_ERROR_PAGES: dict[int, str] = {
    500: (
        "<!DOCTYPE html><html><head><title>WordPress &rsaquo; Error</title></head>"
        '<body id="error-page"><p>There has been a critical error on this website.</p>'
        "</body></html>"
    ),
    502: (
        "<html><head><title>502 Bad Gateway</title></head><body><center>"
        "<h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>"
    ),
    503: (
        "<html><head><title>503 Service Temporarily Unavailable</title></head><body><center>"
        "<h1>503 Service Temporarily Unavailable</h1></center><hr><center>nginx</center>"
        "</body></html>"
    ),
}

NON_JSON_BODY = (
    "<!DOCTYPE html><html><head><title>Maintenance</title></head><body>"
    "<h1>Briefly unavailable for scheduled maintenance. Check back in a minute.</h1>"
    "</body></html>"
)


class FaultPlan:
    def __init__(self, config: SimConfig, rng: random.Random) -> None:
        self._rng = rng
        self._thresholds: list[tuple[float, Fault]] = []
        total = 0.0
        for rate, fault in (
            (config.fault_reset_rate, Fault.RESET),
            (config.fault_5xx_rate, Fault.SERVER_ERROR),
            (config.fault_nonjson_rate, Fault.NON_JSON),
            (config.fault_slow_rate, Fault.SLOW),
            (config.fault_429_rate, Fault.RATE_LIMITED),
            (config.fault_stale_nonce_rate, Fault.STALE_NONCE),
        ):
            if rate > 0:
                total += rate
                self._thresholds.append((total, fault))

    def draw(self, *, ajax: bool) -> Fault | None:
        if not self._thresholds:
            return None
        roll = self._rng.random()
        for threshold, fault in self._thresholds:
            if roll < threshold:
                return None if fault in AJAX_ONLY and not ajax else fault
        return None

    def server_error_status(self) -> int:
        return self._rng.choice(sorted(SERVER_ERROR_PAGES))
