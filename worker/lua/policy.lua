--[[
  Shared by the lease scripts (included, not run alone): the fleet's policy keys, the
  clock, and how an identity is classified and filed in its pool's indexes.

  KEYS (every lease script, in this order): leases, ready, later, known, stopped,
  then one hash per identity attribute: cap, interval, weight, inflight, tat,
  penalty, cooldown, reason, probe, latency, ok, failed, incident, granted; then the pool's
  filed states (identity -> the state it was filed in), its state counts, and the room
  marker (a list a waiting worker blocks on: one item a slot freed). A script's own keys
  follow these: ``extra_key(1)``, ``extra_key(2)``, ...

  ``ready`` and ``later`` belong to the caller's pool (a worker's list of identities);
  the attributes to the fleet. An identity is a member of a pool when it is in one of
  that pool's indexes: only ``file`` (at registration) makes it one, and ``reindex``
  leaves the identities of other pools alone: their own pools find them when they
  look, since every decision reads the shared attributes.
]]
local LEASES, READY, LATER, KNOWN, STOPPED = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local CAP, INTERVAL, WEIGHT, INFLIGHT, TAT = KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10]
local PENALTY, COOLDOWN, REASON, PROBE = KEYS[11], KEYS[12], KEYS[13], KEYS[14]
local LATENCY, OK, FAILED, INCIDENT = KEYS[15], KEYS[16], KEYS[17], KEYS[18]
local GRANTED, FILED, COUNTS, ROOM = KEYS[19], KEYS[20], KEYS[21], KEYS[22]
local FIRST_ATTRIBUTE, LAST_ATTRIBUTE, POLICY_KEYS = 6, 19, 22
local function extra_key(n) return KEYS[POLICY_KEYS + n] end
local FULL_RECHECK_MS = 1000  -- a full identity is looked at again then, or when a lease returns
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
  if inflight >= cap then return now + FULL_RECHECK_MS, 'proxy_full', 0 end
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
-- The pool's count of identities per state follows each filing (as of its last filing: an
-- identity whose cooldown ended is counted cooling until a call finds it due).
local function count(name, reason)
  local was = redis.call('HGET', FILED, name)
  if was == reason then return end
  if was then redis.call('HINCRBY', COUNTS, was, -1) end
  if reason == 'gone' then
    redis.call('HDEL', FILED, name)
  else
    redis.call('HSET', FILED, name, reason)
    redis.call('HINCRBY', COUNTS, reason, 1)
  end
end
-- Files an identity in this pool's ready or later index; returns why it has no room, or
-- 'ready'. An identity that is gone (deregistered) leaves the pool.
local function file(name, burst)
  local when, reason, load = classify(name, burst)
  count(name, reason)
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
local function member(name)
  return redis.call('ZSCORE', READY, name) or redis.call('ZSCORE', LATER, name)
end
-- ``file`` for an identity of this pool; one of another pool is left to its own.
local function reindex(name, burst)
  if member(name) then return file(name, burst) end
  return 'elsewhere'
end
-- A key emptied and made again (a pool's index), or made after the registration gave every
-- key its TTL (an attribute first written by a grant, or after Redis restarted empty), has
-- none: every script that writes gives it back.
local function keep_policy_keys(ttl)
  for i = 1, POLICY_KEYS do
    if redis.call('TTL', KEYS[i]) == -1 then redis.call('EXPIRE', KEYS[i], ttl) end
  end
end
-- A lease token: ``identity|random.n``, n counting the leases granted on the identity.
local function identity_of(token) return string.match(token, '^(.*)|') end
local function grant_number(token) return tonumber(string.match(token, '%.(%d+)$')) or 0 end
local function free_slot(name)
  if redis.call('HINCRBY', INFLIGHT, name, -1) < 0 then redis.call('HSET', INFLIGHT, name, 0) end
end
-- Wakes a worker blocked on the room marker, once per slot freed (a few at most queued).
local function room_freed(slots)
  if slots <= 0 then return end
  for _ = 1, math.min(slots, 16) do redis.call('LPUSH', ROOM, 1) end
  redis.call('LTRIM', ROOM, 0, 15)
end
