--[[
  Takes leases for prompts waiting, one per prompt at most, from this pool's identities
  with room, the best first, within the fleet's cap; first reaps the fleet's leases whose
  holders died. Every lease is checked against its prompt's batch here, in the step that
  grants it: a stopped batch (cancelled, or past its completion window) gets none.

  In a fleet of several sites the pool is one site's identities, and the site's health
  decides too (site_health.lua): a site that is down grants nothing, one coming back one
  lease at a time.

  KEYS: see policy.lua, then its extra keys: 1 the site health hash, 2 the site's failures
  ARGV[1] burst, ARGV[2] lease ttl (ms), ARGV[3] fleet cap, ARGV[4] token prefix,
  ARGV[5] policy keys' ttl (s), ARGV[6] the site ('' in a fleet of one), ARGV[7..] the
  batch ID of each prompt waiting, in the order the leases go to them (its slot: 1 for
  ARGV[7], ...)

  Returns {n, then n times (slot, identity, token, is_probe), then why not more, how long
  until that may change (ms; for a full fleet: until its first lease expires, unless a
  release frees a slot before), then (batch ID, why) for each batch asked about that
  was stopped}. Why not more: ready, fleet_full, cooling, probing, proxy_full, rate,
  no_identity (the pool is empty: its registration vanished), site_down or site_probing.
]]
--- @include "policy"
--- @include "site_health"
local REAP_PER_CALL, PROMOTE_PER_CALL, FIRST_SLOT = 200, 200, 7
local HEALTH, SITE = extra_key(1), ARGV[6]
local burst, ttl, fleet_cap = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local want = #ARGV - FIRST_SLOT + 1
local reaped = 0
for _, token in ipairs(redis.call('ZRANGEBYSCORE', LEASES, '-inf', now, 'LIMIT', 0, REAP_PER_CALL)) do
  redis.call('ZREM', LEASES, token)
  local name = identity_of(token)
  if name then free_slot(name); reindex(name, burst); reaped = reaped + 1 end
end
local due = redis.call('ZRANGEBYSCORE', LATER, '-inf', now, 'LIMIT', 0, PROMOTE_PER_CALL + want)
for _, name in ipairs(due) do
  file(name, burst)
end
-- Why a batch may send nothing more (false: it may), read once per batch per call.
local stops = {}
local function stopped(batch_id)
  if stops[batch_id] == nil then
    local why = redis.call('HGET', STOPPED, batch_id)
    stops[batch_id] = why and string.match(why, '^(%S+)') or false
  end
  return stops[batch_id]
end
-- The best identity with room now, or nil; those found without room are filed later.
local function best_identity(budget)
  for _ = 1, budget do
    local best = redis.call('ZRANGE', READY, 0, 0)[1]
    if not best then return nil end
    if file(best, burst) == 'ready' then return best end
  end
  return nil
end
local room = fleet_cap - redis.call('ZCARD', LEASES)
local site_cap, site_reason, site_until = site_room(HEALTH, SITE, ttl)
local out, granted = {0}, 0
for slot = FIRST_SLOT, #ARGV do
  if granted >= room or (site_cap and granted >= site_cap) then break end
  if not stopped(ARGV[slot]) then
    local best = best_identity(16)
    if not best then break end
    granted = granted + 1
    local token = best .. '|' .. ARGV[4] .. granted .. '.' .. redis.call('HINCRBY', GRANTED, best, 1)
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
    out[#out + 1], out[#out + 2] = slot - FIRST_SLOT + 1, best
    out[#out + 1], out[#out + 2] = token, is_probe
    file(best, burst)
  end
end
if granted > 0 then redis.call('EXPIRE', LEASES, ARGV[5]) end  -- never without a TTL
if site_cap and granted > 0 then site_probe_sent(HEALTH, SITE, site_until, ARGV[5]) end
room_freed(reaped - granted)  -- a dead worker's slots: the others waiting hear of them
keep_policy_keys(ARGV[5])
out[1] = granted
local reason, wait = 'ready', 0
local asked = 0
for slot = FIRST_SLOT, #ARGV do
  if not stopped(ARGV[slot]) then asked = asked + 1 end
end
if granted < asked then
  if site_cap and granted >= site_cap then
    reason, wait = site_reason, math.max(site_until - now, 1)
  elseif room <= granted then
    -- Until the first lease of the fleet expires: if its holder died, a call then reaps it.
    local first = redis.call('ZRANGE', LEASES, 0, 0, 'WITHSCORES')[2]
    reason, wait = 'fleet_full', math.max((tonumber(first) or now) - now + 5, 1)
  else
    local nxt = redis.call('ZRANGE', LATER, 0, 0, 'WITHSCORES')
    if nxt[1] then
      local _
      _, reason = classify(nxt[1], burst)
      wait = math.max(tonumber(nxt[2]) - now, 1)
    elseif redis.call('ZCARD', READY) == 0 then
      reason, wait = 'no_identity', 1000
    end
  end
end
out[#out + 1], out[#out + 2] = reason, wait
for batch_id, why in pairs(stops) do
  if why then out[#out + 1], out[#out + 2] = batch_id, why end
end
return out
