--[[
  Takes a stopped batch's chunks out of its queue: those no worker holds and whose
  prompts all have their results. A chunk with a prompt still unsettled stays (a worker
  that died held it: the next holder ends its prompts), so nothing is left without a
  chunk to settle it.

  KEYS[1] queue, KEYS[2] held chunks, KEYS[3] their places, KEYS[4] chunk lapses,
  KEYS[5] the batch's states, then per chunk: KEYS[2i+4] its arq job key, KEYS[2i+5]
  its in-progress key
  ARGV[1..] the chunk IDs

  Returns how many chunks were taken out.
]]
--- @include "prompt_states"
--- @include "queue"
local taken = 0
for i, chunk in ipairs(ARGV) do
  local job, running = KEYS[2 * i + 4], KEYS[2 * i + 5]
  if redis.call('EXISTS', running) == 0 and in_queue(KEYS[1], KEYS[2], chunk) then
    local raw = redis.call('GET', job)
    local settled = true
    if raw then
      local indices = chunk_indices(raw)
      if indices == nil then
        settled = false  -- not a chunk this script can read: left for a worker to refuse
      else
        for _, idx in ipairs(indices) do
          if state_of(KEYS[5], idx) < FINAL then settled = false; break end
        end
      end
    end
    if settled then
      redis.call('DEL', job)
      forget_chunk(KEYS[1], KEYS[2], KEYS[3], KEYS[4], chunk)
      taken = taken + 1
    end
  end
end
return taken
