--[[
  Stores each prompt's one result and counts it; a prompt that already has its result
  keeps it (the first result wins). Ends the batch when its last prompt settles.

  KEYS[1] meta, KEYS[2] states, KEYS[3] counts, KEYS[4] results, KEYS[5] attempts,
  KEYS[6..] every key of the batch (their TTL is renewed when the batch ends)
  ARGV[1] ttl (s), ARGV[2] now (ISO), then (index, state code, result JSON) triples

  Returns {how many were stored, the batch's state after}.
]]
--- @include "prompt_states"
local saved = 0
for i = 3, #ARGV, 3 do
  local idx, code = ARGV[i], tonumber(ARGV[i + 1])
  if state_of(KEYS[2], idx) < FINAL then
    redis.call('HSET', KEYS[4], idx, ARGV[i + 2])
    redis.call('HDEL', KEYS[5], idx)
    move(KEYS[2], KEYS[3], idx, code)
    saved = saved + 1
  end
end
keep(KEYS[2], ARGV[1])
keep(KEYS[4], ARGV[1])
local batch_keys = {}
for i = 6, #KEYS do batch_keys[#batch_keys + 1] = KEYS[i] end
return {saved, finish_if_done(KEYS[1], KEYS[3], ARGV[2], ARGV[1], batch_keys)}
