--[[
  Takes chunks out of the queue unless a worker holds them (a stopped batch's).

  KEYS[1] queue, then per chunk: KEYS[2i] its arq job key, KEYS[2i+1] its in-progress key
  ARGV[1..] the chunk IDs

  Returns the payloads (arq job JSON) of the chunks taken.
]]
local taken = {}
for i, chunk in ipairs(ARGV) do
  local job, running = KEYS[2 * i], KEYS[2 * i + 1]
  if redis.call('EXISTS', running) == 0 and redis.call('ZREM', KEYS[1], chunk) == 1 then
    taken[#taken + 1] = redis.call('GET', job) or false
    redis.call('DEL', job)
  end
end
return taken
