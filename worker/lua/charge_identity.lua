--[[
  Spends one rate token of an identity for a request that took no lease of its own
  (the handshake's page GET, sent under the lease of the prompt that needed it).

  KEYS: see policy.lua
  ARGV[1] burst, ARGV[2] the identity, ARGV[3] policy keys' ttl (s)

  Returns its interval between requests (ms; 0 = no rate limit).
]]
--- @include "policy"
local interval = num(INTERVAL, ARGV[2])
if interval > 0 then
  redis.call('HSET', TAT, ARGV[2], math.max(num(TAT, ARGV[2]), now) + interval)
  reindex(ARGV[2], tonumber(ARGV[1]))
  keep_policy_keys(ARGV[3])
end
return interval
