"""What the fleet's shared policy is doing, read from Redis for ``chatgptes status``.

Reads only the keys the workers write (``contract.keys``), so a producer host can
show it without importing the worker.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from contract import keys


@dataclass(frozen=True)
class IdentityHealth:
    name: str
    inflight: int
    penalty: float
    cooling_for: float
    reason: str
    successes: int
    failures: int


async def fleet_health(redis: Redis, *, limit: int = 200) -> list[IdentityHealth]:
    """Every identity the workers have reported on, with in-flight leases and cooldowns."""
    names: list[str] = []
    async for raw in redis.scan_iter(match=keys.health("*"), count=500):
        names.append(keys.decoded(raw)[len(keys.health("")) :])
        if len(names) >= limit:
            break
    names.sort()
    seconds, micros = await redis.time()
    now_ms = seconds * 1000 + micros // 1000
    async with redis.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.hgetall(keys.health(name))
            pipe.zcount(keys.lease_identity(name), now_ms, "+inf")
        replies = await pipe.execute()
    found = []
    for name, fields, inflight in zip(names, replies[::2], replies[1::2], strict=True):
        value = {keys.decoded(k): keys.decoded(v) for k, v in fields.items()}
        found.append(
            IdentityHealth(
                name=name,
                inflight=inflight,
                penalty=float(value.get("penalty", 0)),
                cooling_for=max(0.0, (float(value.get("cooldown_until", 0)) - now_ms) / 1000),
                reason=value.get("reason", ""),
                successes=int(value.get("successes", 0)),
                failures=int(value.get("failures", 0)),
            )
        )
    return found


async def policy_events(redis: Redis) -> dict[str, int]:
    """Fleet-wide counters: capacity waits, deferrals, cooldowns by reason."""
    raw = await redis.hgetall(keys.policy_events())
    return {keys.decoded(k): int(v) for k, v in sorted(raw.items())}
