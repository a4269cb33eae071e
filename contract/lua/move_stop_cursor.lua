--[[
  Moves a stop's cursor (kept in the batch record) after a step, only while the batch is
  there (a record that expired meanwhile is not made again without its TTL). When the
  cursor reaches the stop's end, the stop leaves the unfinished ones.

  KEYS[1] meta, KEYS[2] the unfinished stops
  ARGV[1] batch ID, ARGV[2] the new cursor, ARGV[3] the cursor that ends a stop

  Returns 1 if moved, 0 if the batch is gone (and its stop no longer unfinished).
]]
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 0
end
redis.call('HSET', KEYS[1], 'stop_cursor', ARGV[2])
if ARGV[2] == ARGV[3] then redis.call('ZREM', KEYS[2], ARGV[1]) end
return 1
