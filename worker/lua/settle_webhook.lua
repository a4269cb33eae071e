--[[
  Records how a claimed event's delivery went, only for the worker that holds its
  claim (a worker whose claim lapsed and was taken changes nothing).

  delivered: every URL took it; the event leaves the outbox.
  retry:     some URL did not; the next attempt is due at ARGV[4].
  give_up:   72 hours of attempts are over; it is listed among the failed ones.

  KEYS[1] the outbox, KEYS[2] the event's key, KEYS[3] the failed events
  ARGV[1] event ID, ARGV[2] the claim's token, ARGV[3] delivered, retry or give_up,
  ARGV[4] next attempt (ms), ARGV[5] the URLs delivered to so far (space-separated
  keys), ARGV[6] the last error, ARGV[7] now (ms), ARGV[8] how long a given-up event is
  kept (s), ARGV[9] how many given-up events are kept

  Returns 1 if recorded, 0 if the claim was no longer this worker's.
]]
if redis.call('HGET', KEYS[2], 'claim') ~= ARGV[2] then return 0 end
if ARGV[3] == 'delivered' then
  redis.call('DEL', KEYS[2])
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 1
end
redis.call('HINCRBY', KEYS[2], 'attempts', 1)
redis.call('HSET', KEYS[2], 'delivered', ARGV[5], 'last_error', ARGV[6])
redis.call('HDEL', KEYS[2], 'claim')
if ARGV[3] == 'retry' then
  redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
  return 1
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], 'failed_ms', ARGV[7])
redis.call('EXPIRE', KEYS[2], ARGV[8])
redis.call('ZADD', KEYS[3], ARGV[7], ARGV[1])
redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -tonumber(ARGV[9]) - 1)
redis.call('EXPIRE', KEYS[3], ARGV[8])
return 1
