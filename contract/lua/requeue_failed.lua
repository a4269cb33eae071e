--[[
  Puts failed prompts back to queued, forgetting their result and attempts, and the
  batch back in progress (``retry``).

  KEYS[1] meta, KEYS[2] states, KEYS[3] counts, KEYS[4] results, KEYS[5] attempts
  ARGV[1] now (ISO), ARGV[2..] indices

  Returns the indices moved.
]]
--- @include "prompt_states"
local moved = {}
for i = 2, #ARGV do
  local idx = ARGV[i]
  if state_of(KEYS[2], idx) == 4 then
    redis.call('HDEL', KEYS[4], idx)
    redis.call('HDEL', KEYS[5], idx)
    move(KEYS[2], KEYS[3], idx, 0)
    moved[#moved + 1] = idx
  end
end
if #moved > 0 then
  redis.call('HSET', KEYS[1], 'state', 'in_progress', 'retried_at', ARGV[1])
  redis.call('HDEL', KEYS[1], 'completed_at')
end
return moved
