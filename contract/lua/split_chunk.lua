--[[
  Splits a chunk whose holders died with it into chunks of one prompt each, so that a
  prompt that kills workers is found alone and ends alone: each new chunk inherits
  the deaths counted so far. Only the chunk's holder may split it; the old chunk
  leaves the queue in the same step.

  The new chunks go to the head of the queue (they are late already), in order.

  KEYS[1] queue, KEYS[2] its in-progress key, KEYS[3] its arq job key, KEYS[4] its arq
  retry key, KEYS[5] chunk run counters, KEYS[6] the batch's chunk IDs (set), then
  one arq job key per new chunk
  ARGV[1] chunk ID, ARGV[2] token, ARGV[3] deaths so far, ARGV[4] job keys' ttl (ms),
  then per new chunk: its ID, its arq job (JSON)

  Returns how many chunks it was split into (0 if the worker no longer held it).
]]
if redis.call('GET', KEYS[2]) ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[5], ARGV[1])
-- (A score of 0 or less is never due: the head's score, at least 1, is.)
local head = tonumber(redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2]) or 1
local score = math.max(head, 1)
local made = 0
for i = 5, #ARGV, 2 do
  made = made + 1
  redis.call('SET', KEYS[6 + made], ARGV[i + 1], 'PX', ARGV[4])
  redis.call('ZADD', KEYS[1], score, ARGV[i])
  redis.call('SADD', KEYS[6], ARGV[i])
  redis.call('HSET', KEYS[5], ARGV[i], ARGV[3])
end
return made
