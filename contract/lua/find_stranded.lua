--[[
  One step of the stranded sweep over a queue's active batches: which of these batches
  have unsettled prompts that no chunk of the queue carries (waiting or held). A batch
  that ended, or is gone, leaves the active set here.

  KEYS[1] the queue's active batches, KEYS[2] the queue, KEYS[3] its held chunks, then
  per batch: KEYS[3i+1] meta, KEYS[3i+2] counts, KEYS[3i+3] chunk IDs (set)
  ARGV[1..] the batch IDs

  Returns the IDs of the stranded batches.
]]
--- @include "prompt_states"
--- @include "queue"
local stranded = {}
for i, batch_id in ipairs(ARGV) do
  local meta, counts, chunks = KEYS[3 * i + 1], KEYS[3 * i + 2], KEYS[3 * i + 3]
  local state, total = unpack(redis.call('HMGET', meta, 'state', 'total'))
  if state ~= 'in_progress' and state ~= 'cancelling' and state ~= 'expiring' then
    redis.call('ZREM', KEYS[1], batch_id)
  elseif (tonumber(total) or 0) > settled(counts) then
    local carried = false
    for _, chunk in ipairs(redis.call('SMEMBERS', chunks)) do
      if in_queue(KEYS[2], KEYS[3], chunk) then carried = true; break end
    end
    if not carried then stranded[#stranded + 1] = batch_id end
  end
end
return stranded
