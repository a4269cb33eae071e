--[[
  How many of this pool's identities are in each state, for the gauges. Visits
  every identity of the pool: never on a hot path or a heartbeat.

  KEYS: see policy.lua
  ARGV[1] burst

  Returns {state, count, ...}: ready, proxy_full, rate, cooling, probing.
]]
--- @include "policy"
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
