--[[
  Deregisters identities no worker has announced for a while (dropped from every
  proxy file, or their workers gone): their attributes and site sessions go, and
  any pool still listing one drops it when it looks (classify says 'gone'). An
  identity with a request out is kept until its lease returns or is reaped.

  KEYS: see policy.lua (the pool's keys are not used), then KEYS[21] the site
  sessions, KEYS[22] the site sessions' uses
  ARGV[1] announced before this (ms) is forgotten, ARGV[2] at most this many per call

  Returns how many identities were forgotten.
]]
--- @include "policy"
local forgotten = 0
for _, name in ipairs(redis.call('ZRANGEBYSCORE', KNOWN, '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])) do
  if num(INFLIGHT, name) <= 0 then
    for i = 6, 17 do redis.call('HDEL', KEYS[i], name) end
    redis.call('HDEL', KEYS[21], name)
    redis.call('HDEL', KEYS[22], name)
    redis.call('ZREM', KNOWN, name)
    forgotten = forgotten + 1
  end
end
return forgotten
