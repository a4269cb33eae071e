"""How each site of the fleet is doing, as ``sites``, ``status``, ``top`` and the console show it.

Reads what the lease scripts keep (``keys.site_health``: a site down, and until when,
and why; coming back one request at a time; its last answer), the identities' requests
in flight, and the answers of the last minute (``contract.throughput``): no keyspace
scan, one pipeline (``site_health``). The console, which reads the identities and the
throughput for its own sake, adds only the health hash (``site_marks``) and builds the
same rows from what it read (``sites_from``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

from contract import keys
from contract.throughput import INTERVAL_SECONDS, Interval, intervals_of

ANSWERS_WINDOW = 60  # seconds: "answers in the last minute"


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


async def site_health(
    redis: Redis, names: Sequence[str], now_ms: int | None = None, *, profiles: bool = True
) -> list[SiteHealth]:
    """Each named site's health (a fleet of one keeps none: it is shown up), in one round
    trip; ``now_ms``: Redis's clock, read in the same pipeline when not given; without
    ``profiles`` the sessions (one per identity, the largest of these hashes) are not read."""
    async with redis.pipeline(transaction=False) as pipe:
        if now_ms is None:
            pipe.time()
        pipe.hgetall(keys.site_health())
        pipe.hgetall(keys.identity_field("inflight"))
        pipe.hgetall(keys.throughput())
        if profiles:
            pipe.hgetall(keys.site_sessions())
        replies = await pipe.execute()
    if now_ms is None:
        (seconds, micros), *replies = replies
        now_ms = int(seconds) * 1000 + int(micros) // 1000
    health, inflight, throughput, *sessions = replies
    return sites_from(
        names, now_ms, marks_of(health),
        {keys.decoded(identity): int(count) for identity, count in inflight.items()},
        intervals_of(throughput, now_ms / 1000), sessions[0] if sessions else None,
    )  # fmt: skip


async def site_marks(redis: Redis) -> dict[str, str]:
    """What the lease scripts keep of each site's health (``<site>:<field>`` → value)."""
    return marks_of(await redis.hgetall(keys.site_health()))


def marks_of(raw: Mapping[bytes, bytes]) -> dict[str, str]:
    return {keys.decoded(k): keys.decoded(v) for k, v in raw.items()}


def sites_from(
    names: Sequence[str],
    now_ms: int,
    marks: Mapping[str, str],
    inflight: Mapping[str, int],
    intervals: Sequence[Interval],
    sessions: Mapping[bytes, bytes] | None = None,
) -> list[SiteHealth]:
    """Each named site's health from what was read: its marks (``site_marks``), each
    identity's requests in flight, the throughput's intervals (the last minute's answers
    are counted) and the identities' sessions (its profile, if given)."""
    last_minute = intervals[-(ANSWERS_WINDOW // INTERVAL_SECONDS) :]
    several = len(names) > 1
    found = []
    for name in names:

        def field(what: str, name: str = name) -> str:
            return marks.get(f"{name}:{what}", "")

        down_until = float(field("down_until") or 0)
        state = "down" if down_until > now_ms else "probing" if field("probe") == "1" else "up"
        prefix = f"{name}/" if several else ""
        flying = sum(count for identity, count in inflight.items()
                     if identity.startswith(prefix) and count > 0)  # fmt: skip
        found.append(SiteHealth(
            name=name, state=state, reason=field("reason"),
            down_for=max(0.0, (down_until - now_ms) / 1000),
            answered_last_minute=sum(i.sites.get(name, 0) for i in last_minute),
            in_flight=flying, profile=_profile(sessions or {}, prefix),
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


__all__ = ["SiteHealth", "site_health", "site_marks", "sites_from"]
