--[[
  Counts one failed attempt of a prompt; the start time is kept so that a re-run
  reports when the prompt first began. With KEYS[3] and ARGV[5], the attempt itself (a
  JSON object: when, error class, identity by its redacted name, site, a short message)
  is logged too, the last ATTEMPTS_KEPT of the prompt, for the console's page of the
  prompt: the log outlives the count (which goes when the prompt settles).

  Counts nothing for a batch that is gone (its record expired, or Redis was emptied).

  KEYS[1] attempts, KEYS[2] meta, KEYS[3] (optional) the attempt log
  ARGV[1] index, ARGV[2] error class, ARGV[3] when the prompt started (epoch s),
  ARGV[4] ttl (s), ARGV[5] (optional) the attempt, as JSON

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
local ATTEMPTS_KEPT = 5
if KEYS[3] and ARGV[5] and ARGV[5] ~= '' then
  local ok, attempt = pcall(cjson.decode, ARGV[5])
  local found = redis.call('HGET', KEYS[3], ARGV[1])
  local okay, log = pcall(cjson.decode, found or '[]')
  if ok and type(attempt) == 'table' then
    if not okay or type(log) ~= 'table' then log = {} end
    log[#log + 1] = attempt
    while #log > ATTEMPTS_KEPT do table.remove(log, 1) end
    redis.call('HSET', KEYS[3], ARGV[1], cjson.encode(log))
    keep(KEYS[3], ARGV[4])
  end
end
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(a))
keep(KEYS[1], ARGV[4])
return {a.kinds[ARGV[2]], a.total}
