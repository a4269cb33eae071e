--[[
  A batch whose input was refused: nothing to run, its record kept as ``failed``, listed
  in the batch registry, and the event that tells the webhooks so written in the same
  step (``batch_events``). A batch already recorded failed is left as it is (no second
  event).

  KEYS[1] meta, KEYS[2] the batch registry, KEYS[3] the webhook outbox, KEYS[4] the
  event's key, KEYS[5..] every other key of the batch (emptied)
  ARGV[1] batch ID, ARGV[2] ttl (s), ARGV[3] now (ISO), ARGV[4] now (ms), ARGV[5] the
  event's ID, ARGV[6] how long an event is kept (s), then (field, value) pairs of the
  record (errors and metadata as JSON)

  Returns 1 if the batch was recorded failed now, 0 if it was already.
]]
--- @include "batch_events"
--- @include "queue"
if redis.call('HGET', KEYS[1], 'state') == 'failed' then return 0 end
redis.call('DEL', KEYS[1])
for i = 5, #KEYS do redis.call('DEL', KEYS[i]) end
for i = 7, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('HSET', KEYS[1], 'total', 0, 'state', 'failed', 'failed_at', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[2])
register_batch(KEYS[2], ARGV[1], tonumber(ARGV[4]), tonumber(ARGV[2]))
announce_end(KEYS[3], KEYS[4], ARGV[5], ARGV[1], 'failed', ARGV[4], tonumber(ARGV[6]))
return 1
