--[[
  Stages one part of a batch's chunks as arq jobs, if this enqueue still owns the
  batch. They are not in the queue (no worker sees them) until ``publish_batch``, and
  expire with the staging if it never comes.

  KEYS[1] meta, KEYS[2] the batch's chunks set, KEYS[3..] the arq job key of each chunk
  ARGV[1] owner token, ARGV[2] staging TTL (s), then per chunk: its ID, its arq job

  Returns 1 when written, 0 when the claim was lost (nothing written).
]]
--- @include "staging"
if not still_owns(KEYS[1], ARGV[1]) then return 0 end
local ttl = tonumber(ARGV[2])
local ids = {}
for i = 3, #KEYS do
  local id, job = ARGV[2 * i - 3], ARGV[2 * i - 2]
  redis.call('SET', KEYS[i], job, 'EX', ttl)
  ids[#ids + 1] = id
end
redis.call('SADD', KEYS[2], unpack(ids))
redis.call('EXPIRE', KEYS[2], ttl)
redis.call('EXPIRE', KEYS[1], ttl)
return 1
