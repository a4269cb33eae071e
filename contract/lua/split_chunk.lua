--[[
  Splits a chunk whose holders lapsed with it into chunks of one prompt each, so that a
  prompt that kills workers is found alone and ends alone: each new chunk inherits the
  lapses counted so far. Only the chunk's holder may split it. In the same step the old
  chunk leaves the queue and its unsettled prompts show queued again (none is left
  ``running`` with nobody holding it, and a cancel meanwhile sees where they stand).

  The new chunks go to the head of the queue (they are late already), in order.

  KEYS[1] queue, KEYS[2] held chunks, KEYS[3] their places, KEYS[4] its in-progress key,
  KEYS[5] its arq job key, KEYS[6] its arq retry key, KEYS[7] chunk lapses, KEYS[8] the
  work marker, KEYS[9] the batch's chunk IDs (set), KEYS[10] the batch's states,
  KEYS[11] its counts, then one arq job key per new chunk
  ARGV[1] chunk ID, ARGV[2] token, ARGV[3] lapses so far, ARGV[4] keys' ttl (s), then per
  new chunk: its ID, its arq job (JSON), its prompt index

  Returns how many chunks it was split into (0 if the worker no longer held it).
]]
--- @include "prompt_states"
--- @include "queue"
if redis.call('GET', KEYS[4]) ~= ARGV[2] then return 0 end
local ttl = tonumber(ARGV[4])
redis.call('DEL', KEYS[4], KEYS[5], KEYS[6])
forget_chunk(KEYS[1], KEYS[2], KEYS[3], KEYS[7], ARGV[1])
local place = queue_front(KEYS[1])
local made = 0
for i = 5, #ARGV, 3 do
  made = made + 1
  local id, idx = ARGV[i], ARGV[i + 2]
  redis.call('SET', KEYS[11 + made], ARGV[i + 1], 'EX', ttl)
  enqueue_chunk(KEYS[1], place, id, ttl)
  redis.call('SADD', KEYS[9], id)
  redis.call('HSET', KEYS[7], id, ARGV[3])
  local code = state_of(KEYS[10], idx)
  if code < FINAL and code ~= 0 then move(KEYS[10], KEYS[11], idx, 0) end
end
redis.call('EXPIRE', KEYS[7], ttl)
redis.call('EXPIRE', KEYS[9], ttl)
work_added(KEYS[8], made, ttl)
return made
