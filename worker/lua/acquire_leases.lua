--[[
  Takes up to ``want`` leases from this pool's identities with room, the best first,
  within the fleet's cap; first reaps the fleet's leases whose holders died.

  KEYS: see policy.lua
  ARGV[1] burst, ARGV[2] lease ttl (ms), ARGV[3] fleet cap, ARGV[4] want,
  ARGV[5] token prefix, ARGV[6] policy keys' ttl (s), ARGV[7..] batch IDs the
  leases are for

  Returns {n, then n times (identity, token, is_probe), then why not more, how long
  until that may change (ms; for a full fleet: until its first lease expires, unless a
  release frees a slot before), then (batch ID, why) for each batch asked about that
  was stopped}. Why not more: ready, fleet_full, cooling, probing, proxy_full, rate,
  or no_identity (the pool is empty: its registration vanished).
]]
--- @include "policy"
local REAP_PER_CALL, PROMOTE_PER_CALL = 200, 200
local burst, ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
local fleet_cap, want = tonumber(ARGV[3]), tonumber(ARGV[4])
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
local stopped = {}
for i = 7, #ARGV do
  local why = redis.call('HGET', STOPPED, ARGV[i])
  if why then
    stopped[#stopped + 1] = ARGV[i]
    stopped[#stopped + 1] = string.match(why, '^(%S+)')
  end
end
local room = fleet_cap - redis.call('ZCARD', LEASES)
local out, granted, guard = {0}, 0, 0
while granted < math.min(want, room) and guard < want * 4 + 16 do
  guard = guard + 1
  local best = redis.call('ZRANGE', READY, 0, 0)[1]
  if not best then break end
  if file(best, burst) == 'ready' then
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
    file(best, burst)
  end
end
if granted > 0 then redis.call('EXPIRE', LEASES, ARGV[6]) end  -- never without a TTL
room_freed(reaped - granted)  -- a dead worker's slots: the others waiting hear of them
keep_policy_keys(ARGV[6])
out[1] = granted
local reason, wait = 'ready', 0
if granted < want then
  if room <= granted then
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
for _, item in ipairs(stopped) do out[#out + 1] = item end
return out
