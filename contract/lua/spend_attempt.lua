--[[
  Counts one failed attempt of a prompt; the start time is kept so that a re-run
  reports when the prompt first began.

  KEYS[1] attempts
  ARGV[1] index, ARGV[2] error class, ARGV[3] when the prompt started (epoch s),
  ARGV[4] ttl (s)

  Returns {attempts spent of that class, attempts spent in all}.
]]
--- @include "prompt_states"
local raw = redis.call('HGET', KEYS[1], ARGV[1])
local a = raw and cjson.decode(raw) or {total = 0, kinds = {}}
if type(a.kinds) ~= 'table' then a.kinds = {} end
if not a.started_at then a.started_at = tonumber(ARGV[3]) end
a.total = (tonumber(a.total) or 0) + 1
a.kinds[ARGV[2]] = (tonumber(a.kinds[ARGV[2]]) or 0) + 1
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(a))
keep(KEYS[1], ARGV[4])
return {a.kinds[ARGV[2]], a.total}
