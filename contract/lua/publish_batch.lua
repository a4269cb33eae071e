--[[
  Publishes a staged batch in one step, if this enqueue still owns it: the batch goes
  ``in_progress`` with its counts, every key gets the batch's TTL, and its chunks (staged
  by ``stage_chunks``) join the queue beside those already waiting (round-robin: chunk
  n is scored just after the queue's head plus n). Until this runs, no worker sees any
  of it.

  KEYS[1] meta, KEYS[2] counts, KEYS[3] the arq queue, KEYS[4] the batch registry,
  KEYS[5] the deadlines, KEYS[6] the queue's work marker, KEYS[7] the queue's active
  batches, then the ARGV[4] keys of the batch, then the arq job key of each chunk, in
  chunk order
  ARGV[1] owner token, ARGV[2] batch ID, ARGV[3] prompts, ARGV[4] how many batch keys,
  ARGV[5] ttl (s), ARGV[6] now (ISO)

  Returns {1, chunks} when published, or {0, the batch's state} when the claim was lost.
]]
--- @include "prompt_states"
--- @include "staging"
--- @include "queue"
local state, owner = unpack(redis.call('HMGET', KEYS[1], 'state', 'owner'))
if state ~= 'validating' or owner ~= ARGV[1] then return {0, state or false} end
local ttl, batch_keys = tonumber(ARGV[5]), tonumber(ARGV[4])
local first_job = 8 + batch_keys
local chunks = #KEYS - first_job + 1
local first = queue_front(KEYS[3])
local members = {}
for n = 0, chunks - 1 do
  redis.call('EXPIRE', KEYS[first_job + n], ttl)
  members[#members + 1] = first + n
  members[#members + 1] = ARGV[2] .. ':' .. n
  if #members >= 1000 or n == chunks - 1 then
    redis.call('ZADD', KEYS[3], unpack(members))
    members = {}
  end
end
redis.call('EXPIRE', KEYS[3], ttl)
redis.call('HDEL', KEYS[1], 'owner', 'touched_ms')
redis.call('HSET', KEYS[1], 'state', 'in_progress', 'in_progress_at', ARGV[6],
           'chunks', chunks, 'total', ARGV[3])
for code = 0, #NAMES do redis.call('HSET', KEYS[2], NAMES[code], 0) end
redis.call('HSET', KEYS[2], 'queued', ARGV[3])
for i = 8, 7 + batch_keys do redis.call('EXPIRE', KEYS[i], ttl) end
local now = now_ms()
register_batch(KEYS[4], ARGV[2], now, ttl)
mark_active(KEYS[7], ARGV[2], now, ttl)
work_added(KEYS[6], chunks, ttl)
local expires = redis.call('HGET', KEYS[1], 'expires_ms')
if expires then
  redis.call('ZADD', KEYS[5], tonumber(expires), ARGV[2])
  redis.call('EXPIRE', KEYS[5], ttl)
end
return {1, chunks}
