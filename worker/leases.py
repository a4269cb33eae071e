"""Leases: the fleet-wide and per-identity in-flight caps, the per-identity rate and
the identity's health, checked and taken in one atomic Redis call.

A lease is a member of two sorted sets (the fleet's and the identity's) scored by
its expiry, so a worker that dies without returning it frees the slot when the
lease expires. The rate is GCRA (one stored "theoretical arrival time" per identity).
Health is a hash per identity: penalty, cooldown, the reason, and the probe flag
that lets a cooled identity back in through one request at a time. A new identity
starts the same way (slow start), so a dead proxy costs one request, not a
whole in-flight cap of them.
"""

from __future__ import annotations

import random
import secrets
import time
from dataclasses import dataclass

from redis.asyncio import Redis

from contract import keys
from worker.proxies import Identity

# ARGV: ttl_ms, token, fleet_cap, burst, start, n, then per identity:
# name, lease_key, rate_key, health_key, cap, interval_ms, weight.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl, token = tonumber(ARGV[1]), ARGV[2]
local fleet_cap, burst = tonumber(ARGV[3]), tonumber(ARGV[4])
local start, n = tonumber(ARGV[5]), tonumber(ARGV[6])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= fleet_cap then
  return {0, 'fleet_full', 25}
end
local best, best_score, min_wait, reasons = nil, -1, nil, {}
for k = 0, n - 1 do
  local b = 7 + ((k + start) % n) * 7
  local lkey, rkey, hkey = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  local cap, interval, weight = tonumber(ARGV[b + 4]), tonumber(ARGV[b + 5]), tonumber(ARGV[b + 6])
  local h = redis.call('HMGET', hkey,
    'cooldown_until', 'penalty', 'probe', 'probe_until', 'latency_ms', 'successes')
  local reason, wait = nil, 0
  local cooldown_until, probe_until = tonumber(h[1]) or 0, tonumber(h[4]) or 0
  -- Slow start: an identity that never succeeded, or came back from a cooldown,
  -- takes one request at a time until one succeeds.
  local probing = h[3] == '1' or not h[6]
  if cooldown_until > now then
    reason, wait = 'cooling', cooldown_until - now
  elseif probing and probe_until > now then
    reason, wait = 'probing', math.min(probe_until - now, 250)
  else
    redis.call('ZREMRANGEBYSCORE', lkey, '-inf', now)
    local inflight = redis.call('ZCARD', lkey)
    if inflight >= cap then
      reason, wait = 'proxy_full', 25
    elseif interval > 0 then
      local tat = math.max(tonumber(redis.call('GET', rkey)) or now, now)
      local allow_at = tat - interval * (burst - 1)
      if allow_at > now then reason, wait = 'rate', allow_at - now end
    end
    if not reason then
      local penalty, latency = tonumber(h[2]) or 0, tonumber(h[5]) or 0
      local score = (cap - inflight) / cap * weight / (1 + penalty) / (1 + latency / 1000)
      if score > best_score then best, best_score = b, score end
    end
  end
  if reason then
    reasons[reason] = (reasons[reason] or 0) + 1
    if min_wait == nil or wait < min_wait then min_wait = wait end
  end
end
if best == nil then
  local parts = {}
  for reason, count in pairs(reasons) do parts[#parts + 1] = reason .. '=' .. count end
  table.sort(parts)
  return {0, table.concat(parts, ','), math.ceil(min_wait or 25)}
end
local lkey, rkey, hkey = ARGV[best + 1], ARGV[best + 2], ARGV[best + 3]
local interval = tonumber(ARGV[best + 5])
redis.call('ZADD', lkey, now + ttl, token)
redis.call('PEXPIRE', lkey, ttl * 2)
redis.call('ZADD', KEYS[1], now + ttl, token)
redis.call('PEXPIRE', KEYS[1], ttl * 2)
if interval > 0 then
  local tat = math.max(tonumber(redis.call('GET', rkey)) or now, now) + interval
  redis.call('SET', rkey, tat, 'PX', math.ceil(tat - now + 1000))
end
local probe = 0
local state = redis.call('HMGET', hkey, 'probe', 'successes')
if state[1] == '1' or not state[2] then
  redis.call('HSET', hkey, 'probe_until', now + ttl)
  probe = 1
end
return {1, ARGV[best], probe}
"""

# KEYS: fleet, lease_key, health_key. ARGV: token, verdict, floor_ms, base_ms, cap_ms,
# jitter (0..1), latency_ms, reason, health_ttl_s.
_REPORT = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local verdict = ARGV[2]
local penalty = tonumber(redis.call('HGET', KEYS[3], 'penalty')) or 0
if verdict == 'ok' then
  penalty = penalty * 0.5
  if penalty < 0.05 then penalty = 0 end
  local latency = tonumber(redis.call('HGET', KEYS[3], 'latency_ms')) or tonumber(ARGV[7])
  redis.call('HSET', KEYS[3], 'penalty', penalty, 'probe', 0, 'probe_until', 0,
    'latency_ms', math.floor(latency * 0.8 + tonumber(ARGV[7]) * 0.2))
  redis.call('HINCRBY', KEYS[3], 'successes', 1)
elseif verdict == 'none' then
  redis.call('HSET', KEYS[3], 'probe_until', 0)
else
  penalty = penalty + 1
  local backoff = tonumber(ARGV[6]) * math.min(tonumber(ARGV[5]), tonumber(ARGV[4]) * 2 ^ penalty)
  local until_ms = now + math.max(tonumber(ARGV[3]), backoff)
  local current = tonumber(redis.call('HGET', KEYS[3], 'cooldown_until')) or 0
  redis.call('HSET', KEYS[3], 'penalty', penalty, 'cooldown_until', math.max(current, until_ms),
    'reason', ARGV[8], 'probe', 1, 'probe_until', 0)
  redis.call('HINCRBY', KEYS[3], 'failures', 1)
end
redis.call('EXPIRE', KEYS[3], tonumber(ARGV[9]))
return tostring(penalty)
"""


@dataclass(frozen=True)
class Lease:
    identity: Identity
    token: str
    is_probe: bool
    taken_at: float


@dataclass(frozen=True)
class NoCapacity:
    """Why no lease was free, and roughly how long until one may be."""

    reason: str
    wait_seconds: float


@dataclass(frozen=True)
class Cooldown:
    """How hard an outcome cools an identity: at least ``floor`` seconds, else backoff."""

    verdict: str
    floor_seconds: float = 0.0
    reason: str = ""


class LeaseBook:
    def __init__(
        self,
        redis: Redis,
        *,
        fleet_cap: int,
        burst: int,
        ttl_seconds: float,
        backoff_base_seconds: float,
        backoff_cap_seconds: float,
    ) -> None:
        self.redis = redis
        self.fleet_cap = fleet_cap
        self.burst = burst
        self.ttl_ms = int(ttl_seconds * 1000)
        self.base_ms = int(backoff_base_seconds * 1000)
        self.cap_ms = int(backoff_cap_seconds * 1000)
        self._acquire = redis.register_script(_ACQUIRE)
        self._report = redis.register_script(_REPORT)

    async def try_acquire(self, identities: list[Identity]) -> Lease | NoCapacity:
        """One atomic attempt at the best identity with room, rate and health."""
        token = secrets.token_hex(8)
        args: list[str | int | float] = [
            self.ttl_ms, token, self.fleet_cap, self.burst,
            random.randrange(len(identities)), len(identities),
        ]  # fmt: skip
        by_name = {identity.name: identity for identity in identities}
        for identity in identities:
            interval_ms = 1000 / identity.rate_per_second if identity.rate_per_second > 0 else 0
            args += [
                identity.name, keys.lease_identity(identity.name),
                keys.rate_identity(identity.name), keys.health(identity.name),
                identity.max_inflight, interval_ms, identity.weight,
            ]  # fmt: skip
        taken, detail, extra = await self._acquire(keys=[keys.lease_fleet()], args=args)
        detail = keys.decoded(detail)
        if not taken:
            return NoCapacity(reason=detail, wait_seconds=max(float(extra), 1.0) / 1000)
        return Lease(by_name[detail], token, bool(extra), time.monotonic())

    async def release(self, lease: Lease, cooldown: Cooldown) -> float:
        """Returns the lease and records what the request said about the identity."""
        latency_ms = int((time.monotonic() - lease.taken_at) * 1000)
        name = lease.identity.name
        penalty = await self._report(
            keys=[keys.lease_fleet(), keys.lease_identity(name), keys.health(name)],
            args=[
                lease.token, cooldown.verdict, int(cooldown.floor_seconds * 1000),
                self.base_ms, self.cap_ms, random.random(), latency_ms,
                cooldown.reason, 7 * 24 * 3600,
            ],
        )  # fmt: skip
        return float(penalty)
