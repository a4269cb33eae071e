--[[
  Lists among a queue's active batches those of these batches that may still run in it
  and are not listed (batches published before the active set existed, or by an older
  producer): the stranded sweep then looks at them too. A batch belongs to the queue its
  record names; one whose record names none (an older producer's) to the default queue.

  KEYS[1] the queue's active batches, then each batch's meta
  ARGV[1] the queue's name, ARGV[2] 1 if it is the default queue, ARGV[3] keys' ttl (s),
  ARGV[4..] the batch IDs

  Returns how many were listed.
]]
--- @include "queue"
local adopted, now = 0, now_ms()
for i = 4, #ARGV do
  local state, queue = unpack(redis.call('HMGET', KEYS[i - 2], 'state', 'queue'))
  local running = state == 'in_progress' or state == 'cancelling' or state == 'expiring'
  local ours = queue == ARGV[1] or (queue == false and ARGV[2] == '1')
  if running and ours and not redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    mark_active(KEYS[1], ARGV[i], now, tonumber(ARGV[3]))
    adopted = adopted + 1
  end
end
return adopted
