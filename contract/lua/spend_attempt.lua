--[[
  Counts one failed attempt of a prompt; the start time is kept so that a re-run
  reports when the prompt first began.

  Counts nothing for a batch that is gone (its record expired, or Redis was emptied).

  KEYS[1] attempts, KEYS[2] meta
  ARGV[1] index, ARGV[2] error class, ARGV[3] when the prompt started (epoch s),
  ARGV[4] ttl (s)

  Returns {attempts spent of that class, attempts spent in all}.
]]
--- @include "prompt_states"
if redis.call('EXISTS', KEYS[2]) == 0 then return {1, 1} end
local raw = redis.call('HGET', KEYS[1], ARGV[1])
local a = raw and cjson.decode(raw) or {total = 0, kinds = {}}
if type(a.kinds) ~= 'table' then a.kinds = {} end
if not a.started_at then a.started_at = tonumber(ARGV[3]) end
a.total = (tonumber(a.total) or 0) + 1
a.kinds[ARGV[2]] = (tonumber(a.kinds[ARGV[2]]) or 0) + 1
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(a))
keep(KEYS[1], ARGV[4])
return {a.kinds[ARGV[2]], a.total}
