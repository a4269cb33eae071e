--[[
  Moves unsettled prompts between queued, running and waiting (what status shows).

  Writes nothing for a batch that is gone (its record expired, or Redis was emptied).

  KEYS[1] states, KEYS[2] counts, KEYS[3] meta
  ARGV[1] the target state code, ARGV[2] the codes it may move from (comma-separated),
  ARGV[3] ttl (s), ARGV[4..] indices

  Returns how many moved.
]]
--- @include "prompt_states"
if redis.call('EXISTS', KEYS[3]) == 0 then return 0 end
local allowed = {}
for code in string.gmatch(ARGV[2], '%d+') do allowed[tonumber(code)] = true end
local moved = 0
for i = 4, #ARGV do
  if allowed[state_of(KEYS[1], ARGV[i])] then
    move(KEYS[1], KEYS[2], ARGV[i], tonumber(ARGV[1]))
    moved = moved + 1
  end
end
keep(KEYS[1], ARGV[3])
return moved
