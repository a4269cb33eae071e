--[[
  A batch still running starts stopping: ``cancelling`` or ``expiring``.

  KEYS[1] meta
  ARGV[1] now (ISO), ARGV[2] the state to stop in (cancelling or expiring)

  Returns the batch's state after.
]]
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'in_progress' then
  redis.call('HSET', KEYS[1], 'state', ARGV[2], ARGV[2] .. '_at', ARGV[1])
  return ARGV[2]
end
return state
