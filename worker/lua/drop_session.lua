--[[
  Drops an identity's site session only if it is still the one that failed (not a
  fresh replacement another worker just made).

  KEYS[1] site sessions, KEYS[2] site sessions' uses
  ARGV[1] identity, ARGV[2] the failed session's ID

  Returns 1 if it was dropped, else 0.
]]
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if raw and cjson.decode(raw)['id'] == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
  return 1
end
return 0
