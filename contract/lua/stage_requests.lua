--[[
  Stages one part of a batch's requests, if this enqueue still owns the batch. Staged
  requests run nothing: no chunk is queued until the batch is published.

  KEYS[1] meta, KEYS[2] requests
  ARGV[1] owner token, ARGV[2] staging TTL (s), ARGV[3] the index of the part's first
  request, ARGV[4] the part's requests, JSON, one a line (JSON text holds no raw
  newline; one argument instead of two per request is what makes the part cheap to send)

  Returns 1 when written, 0 when the claim was lost (nothing written).
]]
--- @include "staging"
if not still_owns(KEYS[1], ARGV[1]) then return 0 end
local text, index, at = ARGV[4], tonumber(ARGV[3]), 1
local fields = {}
while at <= #text do
  local stop = string.find(text, '\n', at, true) or (#text + 1)
  fields[#fields + 1] = index
  fields[#fields + 1] = string.sub(text, at, stop - 1)
  index = index + 1
  at = stop + 1
end
redis.call('HSET', KEYS[2], unpack(fields))
redis.call('HSET', KEYS[1], 'total', index)
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return 1
