--[[
  A batch still running starts stopping (``cancelling`` or ``expiring``), and from the
  same moment no lease is granted for it: the lease script reads the stopped mark for
  every lease it grants. A batch already stopping for that reason is marked again (a
  second ``cancel`` finishes what a first one started). The stop is listed among the
  unfinished ones until its last step, and its mark among the marks by age.

  KEYS[1] meta, KEYS[2] the fleet's stopped batches (hash: batch ID -> "why ms"), KEYS[3]
  the unfinished stops, KEYS[4] the stop marks by age
  ARGV[1] batch ID, ARGV[2] now (ISO), ARGV[3] now (ms), ARGV[4] why (cancelled or
  expired), ARGV[5] the state to stop in (cancelling or expiring), ARGV[6] the stopped
  marks' ttl (s)

  Returns the batch's state after (false if there is no such batch).
]]
--- @include "clock"
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return false end
if state == 'in_progress' then
  redis.call('HSET', KEYS[1], 'state', ARGV[5], ARGV[5] .. '_at', ARGV[2], 'stop_cursor', 0)
  state = ARGV[5]
end
if state == ARGV[5] then
  local now = now_ms()
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[4] .. ' ' .. ARGV[3])
  redis.call('ZADD', KEYS[3], now, ARGV[1])
  redis.call('ZADD', KEYS[4], now, ARGV[1])
  for i = 2, 4 do redis.call('EXPIRE', KEYS[i], ARGV[6]) end
end
return state
