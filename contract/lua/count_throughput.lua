--[[
  Adds a worker's tallies of prompts finished to the fleet's, per interval, and drops
  the intervals older than the window (the hash stays small: some 120 intervals of a
  few fields each).

  KEYS[1] the throughput hash (field ``<interval start (s)>|<what>``)
  ARGV[1] the oldest interval start kept (s), ARGV[2] the hash's ttl (s), then
  (field, count) pairs

  Returns how many old fields were dropped.
]]
for i = 3, #ARGV, 2 do redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1]) end
local oldest, dropped = tonumber(ARGV[1]), 0
for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
  local start = tonumber(string.match(field, '^(%d+)|'))
  if start == nil or start < oldest then
    redis.call('HDEL', KEYS[1], field)
    dropped = dropped + 1
  end
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return dropped
