"""Counters the simulator keeps, served as JSON at ``GET /__sim/stats``.

Shape (every listed key is always present; counts are integers)::

    {
      "requests": {"page": N, "ajax": N},
      "replies": {
        "success": N,          # answered (JSON or stream)
        "nonce_failed": N,     # one of the three nonce wordings (stale_nonce faults included)
        "consent_missing": N,  # the consent field missing or not 1
        "form_mismatch": N,    # a form not this chat's (post, action, bot, identity, client
                               # ID, history); by field under "mismatches"
        "bad_request": N,      # empty message
        "prohibited": N,       # message contained a prohibited word
        "unknown_action": N,   # body "0", HTTP 400
        "token_limited": N,    # {"tokenLimitReached": true, ...}
        "rate_limited": N,     # HTTP 429 (violations and 429 faults included)
        "refused": N,          # HTTP 403 because the identity is banned
        "banned": N,           # ban events (an identity just got banned)
        "fault": N             # injected faults of any kind
      },
      "mismatches": {FIELD: N},  # only the fields seen: post_id, action, bot_id,
                                 # chatbot_identity, wpaicg_chat_client_id, wpaicg_chat_history
      "faults": {"5xx": N, "reset": N, "nonjson": N, "slow": N, "429": N, "stale_nonce": N},
      "proxy": {"bad_gateway": N, "auth_required": N, "wrong_target": N,
                "not_absolute": N, "connect_refused": N,
                "plain_502": N},       # 502s of the plain-502 ports (no Proxy-Status)
      "inflight": N, "inflight_max": N,
      "answered_messages": N,    # distinct message texts answered with success
      "answered_duplicates": N,  # successes for a message text answered before
      "received_messages": N,    # distinct message texts that reached the site
      "received_duplicates": N,  # arrivals of a message text that had arrived before
      "identities": {
        "direct" | "proxy1" | "badgw1" | "authproxy1" | "plain502_1"
        | "gateway" | "gw:USER" | ...: {
          "page": N, "ajax": N, <every "replies" key>: N, <every "proxy" key>: N,
          "violations": N,       # requests sent before their Retry-After elapsed
          "bans": N,             # ban events (same as "banned" under replies)
          "banned": bool,        # banned right now
          "banned_until": float | null,  # epoch seconds of the clock in use
          "inflight": N, "inflight_max": N
        }
      }
    }

``gw:USER`` is a request through the gateway port with proxy user name USER;
``gateway`` counts the gateway's own refusals (407) before any user is known.
The message ledger keeps an 8-byte hash per distinct message, not the text.

``POST /__sim/reset`` zeroes all of it (and the per-identity limit state).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from simulator.clock import Clock

REQUEST_KINDS = ("page", "ajax")
REPLY_KINDS = (
    "success",
    "nonce_failed",
    "consent_missing",
    "form_mismatch",
    "bad_request",
    "prohibited",
    "unknown_action",
    "token_limited",
    "rate_limited",
    "refused",
    "banned",
    "fault",
)
FAULT_KINDS = ("5xx", "reset", "nonjson", "slow", "429", "stale_nonce")
PROXY_KINDS = (
    "bad_gateway",
    "auth_required",
    "wrong_target",
    "not_absolute",
    "connect_refused",
    "plain_502",
)


@dataclass
class IdentityStats:
    counts: Counter[str] = field(default_factory=Counter)
    inflight: int = 0
    inflight_max: int = 0
    banned_until: float = 0.0

    def snapshot(self, now: float) -> dict[str, Any]:
        keys = (*REQUEST_KINDS, *REPLY_KINDS, *PROXY_KINDS, "violations")
        out: dict[str, Any] = {key: self.counts[key] for key in keys}
        out["bans"] = self.counts["banned"]
        out["banned"] = now < self.banned_until
        out["banned_until"] = self.banned_until or None
        out["inflight"] = self.inflight
        out["inflight_max"] = self.inflight_max
        return out


class Stats:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.reset()

    def reset(self) -> None:
        """Zero every counter; requests still in flight stay counted so the gauges stay true."""
        self.requests: Counter[str] = Counter()
        self.replies: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.proxy: Counter[str] = Counter()
        self.mismatches: Counter[str] = Counter()
        self.answered: set[bytes] = set()
        self.answered_duplicates = 0
        self.received: set[bytes] = set()
        self.received_duplicates = 0
        self.inflight: int = getattr(self, "inflight", 0)
        self.inflight_max = self.inflight
        old: dict[str, IdentityStats] = getattr(self, "identities", {})
        self.identities: dict[str, IdentityStats] = {
            name: IdentityStats(inflight=s.inflight, inflight_max=s.inflight)
            for name, s in old.items()
            if s.inflight
        }

    def identity(self, name: str) -> IdentityStats:
        stats = self.identities.get(name)
        if stats is None:
            stats = self.identities[name] = IdentityStats()
        return stats

    def request(self, identity: str, kind: str) -> None:
        self.requests[kind] += 1
        self.identity(identity).counts[kind] += 1

    def reply(self, identity: str, kind: str) -> None:
        self.replies[kind] += 1
        self.identity(identity).counts[kind] += 1

    def fault(self, identity: str, kind: str) -> None:
        self.faults[kind] += 1
        self.reply(identity, "fault")

    def proxy_error(self, identity: str, kind: str) -> None:
        self.proxy[kind] += 1
        self.identity(identity).counts[kind] += 1

    def mismatch(self, field_name: str) -> None:
        """Which field made a form not this chat's (its reply is counted by ``reply``)."""
        self.mismatches[field_name] += 1

    def answer(self, message: str) -> None:
        """Enter one successful answer in the ledger of message texts."""
        key = _key(message)
        if key in self.answered:
            self.answered_duplicates += 1
        else:
            self.answered.add(key)

    def receive(self, message: str) -> None:
        """Enter one arrival in the ledger of message texts, before any answer."""
        key = _key(message)
        if key in self.received:
            self.received_duplicates += 1
        else:
            self.received.add(key)

    def violation(self, identity: str) -> None:
        self.identity(identity).counts["violations"] += 1

    def ban(self, identity: str, until: float) -> None:
        self.reply(identity, "banned")
        self.identity(identity).banned_until = until

    @contextmanager
    def inflight_request(self, identity: str) -> Iterator[None]:
        """Count a request as in flight, overall and for its identity, while the block runs."""
        per_identity = self.identity(identity)
        self.inflight += 1
        per_identity.inflight += 1
        self.inflight_max = max(self.inflight_max, self.inflight)
        per_identity.inflight_max = max(per_identity.inflight_max, per_identity.inflight)
        try:
            yield
        finally:
            self.inflight -= 1
            self.identity(identity).inflight -= 1  # looked up again: a reset may have replaced it

    def snapshot(self) -> dict[str, Any]:
        now = self._clock.now()
        return {
            "requests": {key: self.requests[key] for key in REQUEST_KINDS},
            "replies": {key: self.replies[key] for key in REPLY_KINDS},
            "mismatches": dict(sorted(self.mismatches.items())),
            "faults": {key: self.faults[key] for key in FAULT_KINDS},
            "proxy": {key: self.proxy[key] for key in PROXY_KINDS},
            "inflight": self.inflight,
            "inflight_max": self.inflight_max,
            "answered_messages": len(self.answered),
            "answered_duplicates": self.answered_duplicates,
            "received_messages": len(self.received),
            "received_duplicates": self.received_duplicates,
            "identities": {
                name: stats.snapshot(now) for name, stats in sorted(self.identities.items())
            },
        }


def _key(message: str) -> bytes:
    return hashlib.blake2b(message.encode(), digest_size=8).digest()
