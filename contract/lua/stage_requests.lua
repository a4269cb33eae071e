--[[
  Stages one part of a batch's requests, if this enqueue still owns the batch. Staged
  requests run nothing: no chunk is queued until the batch is published.

  KEYS[1] meta, KEYS[2] requests
  ARGV[1] owner token, ARGV[2] staging TTL (s), ARGV[3] prompts staged with this part,
  ARGV[4..] index, request JSON pairs

  Returns 1 when written, 0 when the claim was lost (nothing written).
]]
--- @include "staging"
if not still_owns(KEYS[1], ARGV[1]) then return 0 end
redis.call('HSET', KEYS[2], unpack(ARGV, 4))
redis.call('HSET', KEYS[1], 'total', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return 1
