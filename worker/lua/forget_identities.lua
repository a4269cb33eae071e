--[[
  Deregisters identities no worker has announced for a while (dropped from every
  proxy file, or their workers gone): their attributes and site sessions go, and
  any pool still listing one drops it when it looks (classify says 'gone'). An
  identity with a request out is kept until its lease returns or is reaped. Ages are
  read on Redis's clock, the one the announcements were dated by.

  KEYS: see policy.lua (the pool's keys are not used), then its extra keys: 1 the
  site sessions, 2 the site sessions' uses, 3 the registry of pools
  ARGV[1] announced longer ago than this (ms) is forgotten, ARGV[2] at most this many
  per call

  Returns {how many identities were forgotten, then the IDs of the pools no worker
  announced for as long (their indexes are the caller's to delete)}.
]]
--- @include "policy"
local before = now - tonumber(ARGV[1])
local forgotten = 0
for _, name in ipairs(redis.call('ZRANGEBYSCORE', KNOWN, '-inf', before, 'LIMIT', 0, ARGV[2])) do
  if num(INFLIGHT, name) <= 0 then
    for i = FIRST_ATTRIBUTE, LAST_ATTRIBUTE do redis.call('HDEL', KEYS[i], name) end
    redis.call('HDEL', extra_key(1), name)
    redis.call('HDEL', extra_key(2), name)
    redis.call('ZREM', KNOWN, name)
    forgotten = forgotten + 1
  end
end
local out = {forgotten}
for _, pool in ipairs(redis.call('ZRANGEBYSCORE', extra_key(3), '-inf', before, 'LIMIT', 0, ARGV[2])) do
  out[#out + 1] = pool
end
return out
