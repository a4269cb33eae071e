--[[
  Starts a chunk: marks its unsettled prompts running (unless the batch stopped or its
  completion window ended) and hands back what the worker needs to run them.

  KEYS[1] meta, KEYS[2] states, KEYS[3] counts, KEYS[4] attempts, KEYS[5] requests
  ARGV[1] now (ms), ARGV[2] ttl (s), ARGV[3..] the chunk's prompt indices

  Returns {batch state, created_at, expires_ms, then per index: its state code
  before, its request JSON, its attempts JSON}; {false, false, false} when the
  batch is gone.
]]
--- @include "prompt_states"
local state, created_at, expires = unpack(
  redis.call('HMGET', KEYS[1], 'state', 'created_at', 'expires_ms'))
if not state then return {false, false, false} end
local out = {state, created_at, expires or false}
local running = state == 'in_progress' and (tonumber(expires) or math.huge) > tonumber(ARGV[1])
for i = 3, #ARGV do
  local idx = ARGV[i]
  local was = state_of(KEYS[2], idx)
  if was < FINAL and running then move(KEYS[2], KEYS[3], idx, 1) end
  out[#out + 1] = was
  out[#out + 1] = redis.call('HGET', KEYS[5], idx) or false
  out[#out + 1] = redis.call('HGET', KEYS[4], idx) or false
end
keep(KEYS[2], ARGV[2])
return out
