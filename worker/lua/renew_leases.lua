--[[
  Extends the leases a worker still holds, and says which it lost (see renewals.lua;
  the heartbeat renews them with everything else in beat.lua).

  KEYS: see policy.lua
  ARGV[1] lease ttl (ms), ARGV[2] policy keys' ttl (ms), ARGV[3] how many of the tokens
  are probes' (they come first), ARGV[4..] tokens

  Returns the tokens that were lost.
]]
--- @include "policy"
--- @include "renewals"
redis.call('PEXPIRE', LEASES, ARGV[2])
return renew_lease_tokens(tonumber(ARGV[1]), 4, tonumber(ARGV[3]), #ARGV - 3)
