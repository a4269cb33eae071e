"""How each site of the fleet is doing, as ``sites``, ``status`` and ``top`` show it.

Reads what the lease scripts keep (``keys.site_health``: a site down, and until when,
and why; coming back one request at a time; its last answer), the identities' requests
in flight, and the answers of the last minute (``contract.throughput``): no keyspace
scan, one call for each.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

from contract import keys
from contract.throughput import INTERVAL_SECONDS, read_throughput


@dataclass(frozen=True)
class SiteHealth:
    name: str
    state: str  # up, down, probing (coming back one request at a time)
    reason: str = ""  # the error that took it down
    down_for: float = 0.0  # seconds it still rests
    answered_last_minute: int = 0
    in_flight: int = 0
    profile: str = ""  # what its page said: bot, type, post, stream (from a session)

    @property
    def line(self) -> str:
        """``es up, 312 answers in the last minute, 8 in flight``."""
        what = {
            "up": "up",
            "down": f"down for {self.down_for:.0f}s more after {self.reason}",
            "probing": f"coming back one request at a time (down after {self.reason})",
        }[self.state]
        return (f"{self.name} {what}, {self.answered_last_minute} answers in the last minute, "
                f"{self.in_flight} in flight")  # fmt: skip


async def site_health(redis: Redis, names: Sequence[str], now_ms: int) -> list[SiteHealth]:
    """Each named site's health (a fleet of one keeps none: it is shown up)."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.site_health())
        pipe.hgetall(keys.identity_field("inflight"))
        pipe.hgetall(keys.site_sessions())
        health, inflight, sessions = await pipe.execute()
    fields = {keys.decoded(k): keys.decoded(v) for k, v in health.items()}
    intervals = (await read_throughput(redis, now_ms / 1000))[-(60 // INTERVAL_SECONDS) :]
    several = len(names) > 1
    found = []
    for name in names:

        def field(what: str, name: str = name) -> str:
            return fields.get(f"{name}:{what}", "")

        down_until = float(field("down_until") or 0)
        state = "down" if down_until > now_ms else "probing" if field("probe") == "1" else "up"
        prefix = f"{name}/" if several else ""
        flying = sum(
            int(count) for identity, count in inflight.items()
            if keys.decoded(identity).startswith(prefix) and int(count) > 0
        )  # fmt: skip
        found.append(SiteHealth(
            name=name, state=state, reason=field("reason"),
            down_for=max(0.0, (down_until - now_ms) / 1000),
            answered_last_minute=sum(i.sites.get(name, 0) for i in intervals),
            in_flight=flying, profile=_profile(sessions, prefix),
        ))  # fmt: skip
    return found


def _profile(sessions: dict[bytes, bytes], prefix: str) -> str:
    """What a session of the site's says its chat is: ``bot 12, widget, post 106``."""
    for identity, raw in sessions.items():
        if not keys.decoded(identity).startswith(prefix):
            continue
        try:
            profile = json.loads(raw)["profile"]
        except (ValueError, KeyError, TypeError):
            continue
        bot = profile.get("bot_id", "0")
        parts = [f"bot {bot}" if str(bot) != "0" else "no bot", str(profile.get("chat_type", "")),
                 f"post {profile.get('post_id', '?')}"]  # fmt: skip
        if profile.get("stream"):
            parts.append("streaming")
        return ", ".join(part for part in parts if part)
    return ""


__all__ = ["SiteHealth", "site_health"]
