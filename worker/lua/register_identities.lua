--[[
  Announces a pool's identities (their caps, rates and weights) to the fleet and
  files them in the pool's indexes. A new identity starts with a probe (slow start).
  Every policy key gets its TTL back.

  KEYS: see policy.lua, then its extra key 1: the registry of pools
  ARGV[1] burst, ARGV[2] policy keys' ttl (s), ARGV[3] this pool's ID, then per
  identity: name, cap, interval (ms), weight

  Returns how many identities were announced.
]]
--- @include "policy"
local burst = tonumber(ARGV[1])
local count = 0
for i = 4, #ARGV, 4 do
  local name = ARGV[i]
  redis.call('HSET', CAP, name, ARGV[i + 1])
  redis.call('HSET', INTERVAL, name, ARGV[i + 2])
  redis.call('HSET', WEIGHT, name, ARGV[i + 3])
  if redis.call('HEXISTS', OK, name) == 0 and redis.call('HEXISTS', PROBE, name) == 0 then
    redis.call('HSET', PROBE, name, 1)
  end
  redis.call('ZADD', KNOWN, now, name)
  file(name, burst)
  count = count + 1
end
redis.call('ZADD', extra_key(1), now, ARGV[3])
for _, key in ipairs(KEYS) do redis.call('EXPIRE', key, ARGV[2]) end
return count
