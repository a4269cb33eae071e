--[[
  Extends the chunk claims a worker still holds, and says which it lost (see
  renewals.lua; the heartbeat renews them with everything else in beat.lua).

  KEYS[1] queue
  ARGV[1] claim ttl (ms), ARGV[2] arq's in-progress key prefix, then (chunk ID, token)
  pairs

  Returns the IDs of the chunks lost.
]]
--- @include "renewals"
local first = 3
if #ARGV >= first then redis.call('PEXPIRE', ARGV[2] .. ARGV[first], ARGV[1]) end
return renew_chunk_claims(KEYS[1], ARGV[1], ARGV[2], first, (#ARGV - 2) / 2)
