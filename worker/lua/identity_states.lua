--[[
  How many of this pool's identities are in each state, for the gauges: the counts kept
  as identities are filed, after filing again those found due (a cooldown that ended
  while nothing asked). Touches only those due, never the whole pool.

  KEYS: see policy.lua
  ARGV[1] burst

  Returns {state, count, ...}: ready, proxy_full, rate, cooling, probing.
]]
--- @include "policy"
local due = redis.call('ZRANGEBYSCORE', LATER, '-inf', now, 'LIMIT', 0, 500)
for _, name in ipairs(due) do file(name, tonumber(ARGV[1])) end
local out = {}
local counts = redis.call('HGETALL', COUNTS)
for i = 1, #counts, 2 do
  if tonumber(counts[i + 1]) > 0 then
    out[#out + 1], out[#out + 2] = counts[i], counts[i + 1]
  end
end
return out
