--[[
  How many of a batch's prompts are unsettled with no queued chunk to carry them:
  all of its unsettled prompts if none of its chunks is in the queue (held chunks
  stay queued until they end), else 0. Stops at the first queued chunk it finds.

  KEYS[1] queue, KEYS[2] the batch's chunk IDs (set), KEYS[3] meta, KEYS[4] counts

  Returns that count.
]]
--- @include "prompt_states"
local state, total = unpack(redis.call('HMGET', KEYS[3], 'state', 'total'))
if state ~= 'in_progress' and state ~= 'cancelling' and state ~= 'expiring' then return 0 end
local unsettled = (tonumber(total) or 0) - settled(KEYS[4])
if unsettled <= 0 then return 0 end
for _, chunk in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if redis.call('ZSCORE', KEYS[1], chunk) then return 0 end
end
return unsettled
