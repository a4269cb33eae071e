--[[
  Queues again the unsettled prompts of a batch that no queued chunk carries (a chunk
  that left the queue before its prompts settled: a bug, or data lost by Redis), as
  new chunks, and shows them queued. Checks again, in the same step, that none of the
  batch's chunks is queued: a chunk queued meanwhile leaves everything as it was.

  KEYS[1] queue, KEYS[2] the batch's chunk IDs (set), KEYS[3] states, KEYS[4] counts,
  KEYS[5] meta, then one arq job key per new chunk
  ARGV[1] job keys' ttl (ms), ARGV[2] how many new chunks, then per new chunk: its ID,
  its arq job (JSON); then the prompt indices

  Returns how many prompts were queued again (0 if it was not stranded after all).
]]
--- @include "prompt_states"
--- @include "queue"
for _, chunk in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if redis.call('ZSCORE', KEYS[1], chunk) then return 0 end
end
local chunks, first = tonumber(ARGV[2]), queue_front(KEYS[1])
for n = 1, chunks do
  local id, job = ARGV[1 + 2 * n], ARGV[2 + 2 * n]
  redis.call('SET', KEYS[5 + n], job, 'PX', ARGV[1])
  redis.call('ZADD', KEYS[1], first + n - 1, id)
  redis.call('SADD', KEYS[2], id)
end
local moved = 0
for i = 3 + 2 * chunks, #ARGV do
  local idx = ARGV[i]
  local code = state_of(KEYS[3], idx)
  if code < FINAL then
    if code ~= 0 then move(KEYS[3], KEYS[4], idx, 0) end
    moved = moved + 1
  end
end
return moved
