"""Leases: the fleet-wide and per-identity in-flight caps, the per-identity rate and the
identity's health, checked and taken in one atomic Redis call for many prompts at once.

Identities are indexed by when they next have room, so a lease costs the same with
ten identities as with ten thousand:

- ``ready`` holds those with room now, scored by load (in flight / cap, penalty,
  latency, weight): the head is the best one;
- ``later`` holds the rest, scored by the moment (ms) they may have room again:
  the end of a cooldown, the next rate token (GCRA), the return of a probe.

Every call touches only the identities it takes, returns or finds due; nothing
visits the whole pool. The indexes belong to one pool (a worker's list of
identities), the identities' state (caps, in flight, rate, health) to the fleet,
so workers with the same proxies share everything and caps hold across pools.

A lease is a member of the fleet's lease set scored by its expiry; its holder
renews it while the request runs, and a lease whose holder died expires within
its TTL and gives its slot back. A new identity, or one back from a cooldown,
takes one request at a time until one succeeds (a probe), so a dead proxy costs
one request, not a whole in-flight cap of them.
"""

from __future__ import annotations

import hashlib
import random
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from contract import keys
from worker.proxies import Identity

ATTRIBUTES = (
    "cap", "interval", "weight", "inflight", "tat", "penalty",
    "cooldown", "reason", "probe", "latency", "ok", "failed",
)  # fmt: skip
POLICY_TTL_SECONDS = 7 * 24 * 3600
FULL_RECHECK_MS = 1000  # a full identity is looked at again then, or when a lease returns
REAP_PER_CALL = 200
PROMOTE_PER_CALL = 200

# KEYS (every script): leases, ready, later, known, stopped, then one hash per ATTRIBUTES.
_PRELUDE = """
local LEASES, READY, LATER, KNOWN, STOPPED = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local CAP, INTERVAL, WEIGHT, INFLIGHT, TAT = KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10]
local PENALTY, COOLDOWN, REASON, PROBE = KEYS[11], KEYS[12], KEYS[13], KEYS[14]
local LATENCY, OK, FAILED = KEYS[15], KEYS[16], KEYS[17]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function num(key, name) return tonumber(redis.call('HGET', key, name)) or 0 end
-- probe: 0 none needed; 1 needed, none out; > 1 a probe is out until then (ms).
local function probe_out(name)
  local probe = num(PROBE, name)
  return probe > 1 and probe > now, probe
end
-- (when it may have room or nil if now, why not, its load) of one identity.
local function classify(name, burst)
  local cap = tonumber(redis.call('HGET', CAP, name))
  if not cap then return now, 'gone', 0 end
  local inflight = num(INFLIGHT, name)
  local cooldown = num(COOLDOWN, name)
  if cooldown > now then return cooldown, 'cooling', 0 end
  local out, probe = probe_out(name)
  if out then return probe, 'probing', 0 end
  if inflight >= cap then return now + FULL_RECHECK, 'proxy_full', 0 end
  local interval = num(INTERVAL, name)
  if interval > 0 then
    local allow = math.max(num(TAT, name), now) - interval * (burst - 1)
    if allow > now then return allow, 'rate', 0 end
  end
  local weight = tonumber(redis.call('HGET', WEIGHT, name)) or 1
  -- How full it would be with one more, made worse by its penalty and latency.
  local load = ((inflight + 1) / cap + num(PENALTY, name)) * (1 + num(LATENCY, name) / 1000)
  return nil, 'ready', load / weight
end
-- Files an identity in ready or later; returns the reason it has no room, or 'ready'.
local function reindex(name, burst)
  local when, reason, load = classify(name, burst)
  if reason == 'gone' then
    redis.call('ZREM', READY, name)
    redis.call('ZREM', LATER, name)
  elseif when then
    redis.call('ZREM', READY, name)
    redis.call('ZADD', LATER, when, name)
  else
    redis.call('ZREM', LATER, name)
    redis.call('ZADD', READY, load, name)
  end
  return reason
end
local function identity_of(token) return string.match(token, '^(.*)|') end
local function free_slot(name)
  if redis.call('HINCRBY', INFLIGHT, name, -1) < 0 then redis.call('HSET', INFLIGHT, name, 0) end
end
"""

# ARGV: burst, ttl_ms, fleet_cap, want, token prefix, then batch IDs asked about.
# Returns {n, name1, token1, probe1, ..., reason, wait_ms, then (batch, why) of stopped ones}.
_ACQUIRE = (
    _PRELUDE
    + """
local burst, ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
local fleet_cap, want = tonumber(ARGV[3]), tonumber(ARGV[4])
for _, token in ipairs(redis.call('ZRANGEBYSCORE', LEASES, '-inf', now, 'LIMIT', 0, REAP)) do
  redis.call('ZREM', LEASES, token)
  local name = identity_of(token)
  if name then free_slot(name); reindex(name, burst) end
end
local due = redis.call('ZRANGEBYSCORE', LATER, '-inf', now, 'LIMIT', 0, PROMOTE + want)
for _, name in ipairs(due) do
  reindex(name, burst)
end
local stopped = {}
for i = 6, #ARGV do
  local why = redis.call('HGET', STOPPED, ARGV[i])
  if why then
    stopped[#stopped + 1] = ARGV[i]
    stopped[#stopped + 1] = string.match(why, '^(%S+)')
  end
end
local room = fleet_cap - redis.call('ZCARD', LEASES)
redis.call('EXPIRE', LEASES, POLICY_TTL)  -- emptied and made again: never without a TTL
local out, granted, guard = {0}, 0, 0
while granted < math.min(want, room) and guard < want * 4 + 16 do
  guard = guard + 1
  local best = redis.call('ZRANGE', READY, 0, 0)[1]
  if not best then break end
  if reindex(best, burst) == 'ready' then
    granted = granted + 1
    local token = best .. '|' .. ARGV[5] .. granted
    redis.call('ZADD', LEASES, now + ttl, token)
    redis.call('HINCRBY', INFLIGHT, best, 1)
    local interval = num(INTERVAL, best)
    if interval > 0 then redis.call('HSET', TAT, best, math.max(num(TAT, best), now) + interval) end
    local out_now, probe = probe_out(best)
    local is_probe = 0
    if probe >= 1 and not out_now then
      redis.call('HSET', PROBE, best, now + ttl)
      is_probe = 1
    end
    out[#out + 1], out[#out + 2], out[#out + 3] = best, token, is_probe
    reindex(best, burst)
  end
end
out[1] = granted
local reason, wait = 'ready', 0
if granted < want then
  if room <= granted then
    reason, wait = 'fleet_full', 25
  else
    local nxt = redis.call('ZRANGE', LATER, 0, 0, 'WITHSCORES')
    if nxt[1] then
      local _
      _, reason = classify(nxt[1], burst)
      wait = math.max(tonumber(nxt[2]) - now, 1)
    else
      reason, wait = 'no_identity', 1000
    end
  end
end
out[#out + 1], out[#out + 2] = reason, wait
for _, item in ipairs(stopped) do out[#out + 1] = item end
return out
"""
)

# ARGV: burst, base_ms, cap_ms, then per lease: token, verdict, floor_ms, jitter (0..1),
# latency_ms, reason, probe (0/1). Returns the leases that were still held.
_RELEASE = (
    _PRELUDE
    + """
local burst, base, cap = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local held = 0
for i = 4, #ARGV, 7 do
  local token, verdict = ARGV[i], ARGV[i + 1]
  local name = identity_of(token)
  if name then
    if redis.call('ZREM', LEASES, token) == 1 then
      free_slot(name)
      held = held + 1
    end
    local penalty = num(PENALTY, name)
    if verdict == 'ok' then
      penalty = penalty * 0.5
      if penalty < 0.05 then penalty = 0 end
      local sample = tonumber(ARGV[i + 4])
      local latency = tonumber(redis.call('HGET', LATENCY, name)) or sample
      redis.call('HSET', PENALTY, name, penalty)
      redis.call('HSET', LATENCY, name, math.floor(latency * 0.8 + sample * 0.2))
      redis.call('HSET', PROBE, name, 0)
      redis.call('HINCRBY', OK, name, 1)
    elseif verdict == 'none' then
      if ARGV[i + 6] == '1' then redis.call('HSET', PROBE, name, 1) end
    else
      -- A suspect (an ambiguous failure) weighs half; the successes between failures halve
      -- the penalty, so only an identity that keeps failing reaches a cooldown.
      penalty = penalty + (verdict == 'suspect' and 0.5 or 1)
      redis.call('HSET', PENALTY, name, penalty)
      redis.call('HINCRBY', FAILED, name, 1)
      if penalty >= 1 then
        local backoff = tonumber(ARGV[i + 3]) * math.min(cap, base * 2 ^ penalty)
        local until_ms = now + math.max(tonumber(ARGV[i + 2]), backoff)
        redis.call('HSET', COOLDOWN, name, math.max(num(COOLDOWN, name), until_ms))
        redis.call('HSET', REASON, name, ARGV[i + 5])
        redis.call('HSET', PROBE, name, 1)
      elseif ARGV[i + 6] == '1' then
        redis.call('HSET', PROBE, name, 1)  -- the probe failed mildly: another probe next
      end
    end
    reindex(name, burst)
  end
end
return held
"""
)

# ARGV: ttl_ms, then tokens; a probe's token also extends its identity's probe mark.
# Returns how many were still held (a lease already expired is not brought back).
_RENEW = (
    _PRELUDE
    + """
local ttl, renewed = tonumber(ARGV[1]), 0
for i = 2, #ARGV do
  local token = ARGV[i]
  if redis.call('ZSCORE', LEASES, token) then
    redis.call('ZADD', LEASES, now + ttl, token)
    renewed = renewed + 1
    local name = identity_of(token)
    local out = probe_out(name)
    if out then redis.call('HSET', PROBE, name, now + ttl) end
  end
end
return renewed
"""
)

# ARGV: burst, ttl_s, then per identity: name, cap, interval_ms, weight. New identities
# start with a probe (slow start). Every policy key gets its TTL back.
_REGISTER = (
    _PRELUDE
    + """
local burst = tonumber(ARGV[1])
for i = 3, #ARGV, 4 do
  local name = ARGV[i]
  redis.call('HSET', CAP, name, ARGV[i + 1])
  redis.call('HSET', INTERVAL, name, ARGV[i + 2])
  redis.call('HSET', WEIGHT, name, ARGV[i + 3])
  if redis.call('HEXISTS', OK, name) == 0 and redis.call('HEXISTS', PROBE, name) == 0 then
    redis.call('HSET', PROBE, name, 1)
  end
  redis.call('ZADD', KNOWN, now, name)
  reindex(name, burst)
end
for _, key in ipairs(KEYS) do redis.call('EXPIRE', key, ARGV[2]) end
return #ARGV
"""
)

# ARGV: burst. How many of this pool's identities are in each state, for the gauges.
_STATES = (
    _PRELUDE
    + """
local counts = {}
for _, index in ipairs({READY, LATER}) do
  for _, name in ipairs(redis.call('ZRANGE', index, 0, -1)) do
    local _, reason = classify(name, tonumber(ARGV[1]))
    counts[reason] = (counts[reason] or 0) + 1
  end
end
local out = {}
for reason, count in pairs(counts) do out[#out + 1] = reason; out[#out + 1] = count end
return out
"""
)

# ARGV: burst, name. One more request the identity sent (the handshake's page GET).
_CHARGE = (
    _PRELUDE
    + """
local interval = num(INTERVAL, ARGV[2])
if interval > 0 then
  redis.call('HSET', TAT, ARGV[2], math.max(num(TAT, ARGV[2]), now) + interval)
  reindex(ARGV[2], tonumber(ARGV[1]))
end
return interval
"""
)


def _constants(script: str) -> str:
    return (
        script.replace("FULL_RECHECK", str(FULL_RECHECK_MS))
        .replace("POLICY_TTL", str(POLICY_TTL_SECONDS))
        .replace("REAP", str(REAP_PER_CALL))
        .replace("PROMOTE", str(PROMOTE_PER_CALL))
    )


@dataclass(frozen=True)
class Lease:
    identity: Identity
    token: str
    is_probe: bool
    taken_at: float


@dataclass(frozen=True)
class Cooldown:
    """How hard an outcome cools an identity: at least ``floor`` seconds, else backoff."""

    verdict: str
    floor_seconds: float = 0.0
    reason: str = ""


@dataclass(frozen=True)
class Grants:
    """What one acquire call gave: leases, why not more (and for how long), stopped batches."""

    leases: list[Lease]
    reason: str
    wait_seconds: float
    stopped: dict[str, str]  # batch ID → "cancelled" or "expired"


def pool_id(identities: Sequence[Identity]) -> str:
    """A short name for a list of identities: workers with the same list share indexes."""
    names = "\n".join(sorted(identity.name for identity in identities))
    return hashlib.sha256(names.encode()).hexdigest()[:12]


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
        self._acquire = redis.register_script(_constants(_ACQUIRE))
        self._release = redis.register_script(_constants(_RELEASE))
        self._renew = redis.register_script(_constants(_RENEW))
        self._register = redis.register_script(_constants(_REGISTER))
        self._charge = redis.register_script(_constants(_CHARGE))
        self._states = redis.register_script(_constants(_STATES))
        self._identities: dict[str, Identity] = {}
        self._keys: list[str] = []

    async def register(self, identities: Sequence[Identity]) -> None:
        """Announces this worker's identities (their caps, rates, weights) to the fleet."""
        pool = pool_id(identities)
        self._identities = {identity.name: identity for identity in identities}
        self._keys = [
            keys.lease_tokens(),
            keys.identities_ready(pool),
            keys.identities_later(pool),
            keys.identities_known(),
            keys.stopped_batches(),
            *(keys.identity_field(attribute) for attribute in ATTRIBUTES),
        ]
        args: list[str | int | float] = [self.burst, POLICY_TTL_SECONDS]
        for identity in identities:
            interval_ms = 1000 / identity.rate_per_second if identity.rate_per_second > 0 else 0
            args += [identity.name, identity.max_inflight, interval_ms, identity.weight]
        await self._register(keys=self._keys, args=args)

    async def exchange(
        self, returned: Sequence[tuple[Lease, Cooldown]], want: int, batches: Sequence[str] = ()
    ) -> Grants | None:
        """Returns leases and takes up to ``want`` new ones, in one round trip.

        ``batches`` are the batches the leases are for: those stopped (cancelled or
        expired) come back in ``Grants.stopped``. Returns None when ``want`` is 0.
        """
        for attempt in (1, 2):
            async with self.redis.pipeline(transaction=False) as pipe:
                if returned:
                    self._release_call(pipe, returned)
                if want > 0:
                    self._acquire_call(pipe, want, batches)
                try:
                    replies = await pipe.execute()
                except NoScriptError:
                    if attempt == 2:
                        raise
                    await self._load_scripts()  # Redis restarted and forgot them
                    continue
            return self._grants(replies[-1]) if want > 0 else None
        return None

    async def acquire(self, want: int, batches: Sequence[str] = ()) -> Grants:
        grants = await self.exchange((), want, batches)
        assert grants is not None
        return grants

    async def release(self, returned: Sequence[tuple[Lease, Cooldown]]) -> None:
        await self.exchange(returned, 0)

    def _acquire_call(self, pipe: Redis, want: int, batches: Sequence[str]) -> None:
        args = [self.burst, self.ttl_ms, self.fleet_cap, want, secrets.token_hex(6), *batches]
        pipe.evalsha(self._acquire.sha, len(self._keys), *self._keys, *args)

    def _grants(self, reply: list[bytes | int]) -> Grants:
        granted = int(reply[0])
        now = time.monotonic()
        leases = []
        for n in range(granted):
            name, token, probe = reply[1 + 3 * n : 4 + 3 * n]
            identity = self._identities.get(keys.decoded(name))
            if identity is not None:
                leases.append(Lease(identity, keys.decoded(token), bool(int(probe)), now))
        rest = reply[1 + 3 * granted :]
        return Grants(
            leases=leases,
            reason=keys.decoded(rest[0]),
            wait_seconds=max(float(rest[1]), 1.0) / 1000,
            stopped={
                keys.decoded(rest[i]): keys.decoded(rest[i + 1]) for i in range(2, len(rest), 2)
            },
        )

    def _release_call(self, pipe: Redis, returned: Sequence[tuple[Lease, Cooldown]]) -> None:
        now = time.monotonic()
        args: list[str | int | float] = [self.burst, self.base_ms, self.cap_ms]
        for lease, cooldown in returned:
            args += [
                lease.token, cooldown.verdict, int(cooldown.floor_seconds * 1000),
                random.random(), int((now - lease.taken_at) * 1000), cooldown.reason,
                int(lease.is_probe),
            ]  # fmt: skip
        pipe.evalsha(self._release.sha, len(self._keys), *self._keys, *args)

    async def _load_scripts(self) -> None:
        for script in (self._acquire, self._release):
            await self.redis.script_load(script.script)

    async def renew(self, leases: Sequence[Lease]) -> int:
        """Extends the leases still running; returns how many were still held."""
        if not leases:
            return 0
        tokens = [lease.token for lease in leases]
        return int(await self._renew(keys=self._keys, args=[self.ttl_ms, *tokens]))

    async def state_counts(self) -> dict[str, int]:
        """This pool's identities by state: ready, proxy_full, rate, cooling, probing.

        Visits every identity of the pool: for the heartbeat's gauges, not the hot path.
        """
        flat = await self._states(keys=self._keys, args=[self.burst])
        return {keys.decoded(flat[i]): int(flat[i + 1]) for i in range(0, len(flat), 2)}

    async def charge(self, identity: Identity) -> None:
        """Spends one rate token of ``identity`` for a request that took no lease of its own."""
        await self._charge(keys=self._keys, args=[self.burst, identity.name])
