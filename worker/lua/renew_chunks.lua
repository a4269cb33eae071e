--[[
  Extends the chunk claims a worker still holds, and says which it lost. A claim
  that lapsed while nobody took the chunk (a Redis outage, a pause) is taken back
  under the same token: the chunk is still queued and no other worker holds it.

  Runs when Redis is at maxmemory too: the first pass only extends (PEXPIRE does not
  grow memory), and Redis refuses a script under OOM only at its first write, never
  in the middle.

  KEYS[1] queue
  ARGV[1] claim ttl (ms), ARGV[2] arq's in-progress key prefix, then (chunk ID, token)
  pairs

  Returns the IDs of the chunks lost (another worker holds them, or they left the queue).
]]
local ttl, prefix = ARGV[1], ARGV[2]
local lapsed, lost = {}, {}
for i = 3, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local holder = redis.call('GET', prefix .. id)
  if holder == token then
    redis.call('PEXPIRE', prefix .. id, ttl)
  elseif holder == false and redis.call('ZSCORE', KEYS[1], id) then
    lapsed[#lapsed + 1] = i
  else
    lost[#lost + 1] = id
  end
end
for _, i in ipairs(lapsed) do
  redis.call('SET', prefix .. ARGV[i], ARGV[i + 1], 'PX', ttl)
end
return lost
