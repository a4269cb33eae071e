--[[
  Drops the stopped marks older than the batches they name (by Redis's clock: the marks
  were dated by it), a bounded number per call, oldest first.

  KEYS[1] the fleet's stopped batches (hash), KEYS[2] the stop marks by age
  ARGV[1] how old a mark may be (s), ARGV[2] at most this many per call

  Returns how many marks were dropped.
]]
--- @include "clock"
local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now_ms() - tonumber(ARGV[1]) * 1000,
                       'LIMIT', 0, tonumber(ARGV[2]))
for _, batch_id in ipairs(old) do
  redis.call('HDEL', KEYS[1], batch_id)
  redis.call('ZREM', KEYS[2], batch_id)
end
return #old
