--[[
  Ends a worker's hold on a chunk, only if it still holds it (its token is the
  in-progress key's value): a worker that lost a chunk changes nothing of it.

  done:      every prompt of the chunk has its result; it leaves the queue.
  hand_back: it goes back to the queue for any worker (drain); a clean end.
  lapse:     the worker could not run it (its job function crashed); it goes back to
             the queue and counts as a holder that died with it.

  KEYS[1] queue, KEYS[2] its in-progress key, KEYS[3] its arq job key, KEYS[4] its arq
  retry key, KEYS[5] chunk run counters
  ARGV[1] chunk ID, ARGV[2] token, ARGV[3] done, hand_back or lapse, ARGV[4] how far to
  move it back in the queue (arq's Retry defer; the queue's scores are places in the
  round-robin, not times)

  Returns 1 if the worker held it (and the end was recorded), else 0.
]]
if redis.call('GET', KEYS[2]) ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[2])
if ARGV[3] == 'done' then
  redis.call('DEL', KEYS[3], KEYS[4])
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[5], ARGV[1])
  return 1
end
if ARGV[3] == 'hand_back' and redis.call('HINCRBY', KEYS[5], ARGV[1], -1) <= 0 then
  redis.call('HDEL', KEYS[5], ARGV[1])
end
if tonumber(ARGV[4]) > 0 and redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZINCRBY', KEYS[1], ARGV[4], ARGV[1])
end
return 1
