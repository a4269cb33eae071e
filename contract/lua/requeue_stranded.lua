--[[
  Queues again the unsettled prompts of a batch that no chunk in its queue carries (a
  chunk that left the queue before its prompts settled: a bug, or data lost by Redis),
  as new chunks, and shows them queued. Checks again, in the same step, that the batch
  still runs and that none of its chunks is waiting or held: a chunk queued meanwhile
  leaves everything as it was.

  KEYS[1] queue, KEYS[2] held chunks, KEYS[3] the batch's chunk IDs (set), KEYS[4]
  states, KEYS[5] counts, KEYS[6] meta, KEYS[7] the work marker, KEYS[8] the queue's
  active batches, then one arq job key per new chunk
  ARGV[1] keys' ttl (s), ARGV[2] how many new chunks, ARGV[3] batch ID, then per new
  chunk: its ID, its arq job (JSON); then the prompt indices

  Returns how many prompts were queued again (0 if it was not stranded after all).
]]
--- @include "prompt_states"
--- @include "queue"
local state = redis.call('HGET', KEYS[6], 'state')
if state ~= 'in_progress' and state ~= 'cancelling' and state ~= 'expiring' then return 0 end
for _, chunk in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  if in_queue(KEYS[1], KEYS[2], chunk) then return 0 end
end
local ttl, chunks, first = tonumber(ARGV[1]), tonumber(ARGV[2]), queue_front(KEYS[1])
for n = 1, chunks do
  local id, job = ARGV[2 + 2 * n], ARGV[3 + 2 * n]
  redis.call('SET', KEYS[8 + n], job, 'EX', ttl)
  enqueue_chunk(KEYS[1], first + n - 1, id, ttl)
  redis.call('SADD', KEYS[3], id)
end
redis.call('EXPIRE', KEYS[3], ttl)
local moved = 0
for i = 4 + 2 * chunks, #ARGV do
  local idx = ARGV[i]
  local code = state_of(KEYS[4], idx)
  if code < FINAL then
    if code ~= 0 then move(KEYS[4], KEYS[5], idx, 0) end
    moved = moved + 1
  end
end
mark_active(KEYS[8], ARGV[3], now_ms(), ttl)
work_added(KEYS[7], chunks, ttl)
return moved
